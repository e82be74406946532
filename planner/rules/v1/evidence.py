"""The evidence membrane: can the report carry every claim the spec requires?

A claim needs a producible ``evidence:<claim>`` cell, and some claims also need a
requirement in the spec (captured streams cannot be reported unless the streams are
captured). Either failure refuses ``evidence-unsatisfiable``: a report that silently
lacked a required claim would be worse than no run.
"""

from __future__ import annotations

from collections.abc import Mapping

from bvisor.contract.admission import EvidenceDecision
from bvisor.contract.enforcement import Enforcement
from bvisor.contract.evidence import EvidenceClaim
from bvisor.contract.profile import ProfileSnapshot
from bvisor.contract.requirements import RequirementKind
from bvisor.planner.errors import PlanRefusal
from bvisor.planner.rules.v1.ceiling import evidence_key, missing_fact_of, require_cell

__all__ = ["EVIDENCE_NEEDS", "judge_evidence"]

# Evidence membrane: claim -> requirement kinds the spec must also hold.
EVIDENCE_NEEDS: Mapping[EvidenceClaim, tuple[RequirementKind, ...]] = {
    EvidenceClaim.CAPTURED_STREAMS: (RequirementKind.CAPTURE_STREAMS,),
}


def judge_evidence(
    claim: EvidenceClaim,
    kinds: frozenset[RequirementKind],
    snapshot: ProfileSnapshot,
    evidence_needs: Mapping[EvidenceClaim, tuple[RequirementKind, ...]] = EVIDENCE_NEEDS,
) -> EvidenceDecision:
    """Judge one claim; ``evidence_needs`` is this version's table (a later one passes its
    own)."""
    key = evidence_key(claim)
    cell = require_cell(snapshot, key, key)
    if cell.enforcement is Enforcement.UNSUPPORTED:
        raise PlanRefusal(
            "evidence-unsatisfiable",
            f"the report cannot carry {claim.value}: {cell.reason}",
            requirement=key,
            missing_fact=missing_fact_of(cell),
        )
    needs = evidence_needs.get(claim, ())
    for kind in needs:
        if kind not in kinds:
            raise PlanRefusal(
                "evidence-unsatisfiable",
                f"{claim.value} needs the spec to include {kind.value}",
                requirement=key,
            )
    return EvidenceDecision(
        claim=claim.value, cell=cell, needs=tuple(k.value for k in needs), verdict=cell.enforcement
    )
