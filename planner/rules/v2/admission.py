"""Admission of rules v2: v1's admission body, judged against the v2 ceiling.

Four things change: the ceiling (:mod:`bvisor.planner.rules.v2.ceiling`); the spec
checks before any requirement is judged — the private root must be buildable
(:func:`bvisor.planner.rules.v2.rootfs.check_mounts`: a temp root or exposed path needs a
filesystem capability; no two mounts at one destination; nothing at or under ``/dev`` or
``/proc``), the network allow list's own checks
(:func:`bvisor.planner.rules.v2.network.check_network`: entries the proxy cannot enforce,
proxy variables the spec would override, a network budget or claim without a network
capability) and the outputs controls must be holdable
(:func:`bvisor.planner.rules.v2.outputs.check_outputs`); the evidence membrane's needs
(:data:`EVIDENCE_NEEDS`): a filesystem delta needs ``ListOutputs``, artifact lineage
``CommitArtifact``, on top of v1's; and one check after: denied attempts with a
filesystem capability need the filesystem denial cell as well
(:func:`bvisor.planner.rules.v2.denials.check_denial_evidence`).
"""

from __future__ import annotations

from collections.abc import Mapping

from bvisor.contract.admission import AdmissionRecord
from bvisor.contract.evidence import EvidenceClaim
from bvisor.contract.profile import ProfileSnapshot
from bvisor.contract.requirements import RequirementKind
from bvisor.contract.spec import BoundarySpec
from bvisor.planner.rules.v1 import evidence as v1_evidence
from bvisor.planner.rules.v1.admission import admit_with
from bvisor.planner.rules.v2.ceiling import linux_ceiling
from bvisor.planner.rules.v2.denials import check_denial_evidence
from bvisor.planner.rules.v2.network import check_network
from bvisor.planner.rules.v2.outputs import check_outputs
from bvisor.planner.rules.v2.rootfs import check_mounts

__all__ = ["EVIDENCE_NEEDS", "RULES_VERSION", "admit", "check_spec"]

RULES_VERSION = 2
_DERIVATIONS = {"linux": linux_ceiling}

EVIDENCE_NEEDS: Mapping[EvidenceClaim, tuple[RequirementKind, ...]] = {
    **v1_evidence.EVIDENCE_NEEDS,
    EvidenceClaim.FILESYSTEM_DELTA: (RequirementKind.LIST_OUTPUTS,),
    EvidenceClaim.ARTIFACT_LINEAGE: (RequirementKind.COMMIT_ARTIFACT,),
}


def check_spec(spec: BoundarySpec) -> None:
    """The spec checks made before any requirement is judged (see the module docstring)."""
    check_mounts(spec)
    check_network(spec)
    check_outputs(spec)


def admit(spec: BoundarySpec, snapshot: ProfileSnapshot) -> AdmissionRecord:
    """Admit ``spec`` against ``snapshot`` under rules v2, or raise PlanRefusal (pure)."""
    record = admit_with(spec, snapshot, _DERIVATIONS, RULES_VERSION, check_spec, EVIDENCE_NEEDS)
    check_denial_evidence(snapshot, record)
    return record
