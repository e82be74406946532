"""Re-derive a plan from recorded inputs with the pure planner, and adapters to the contract.

Admission, primitive selection, the lowering compiler and the identity digests are pure
functions of (spec, profile snapshot) — that is what makes replay possible. This module
runs them in three steps rather than through ``bvisor.planner.planning.plan_boundary`` so that a
refusal can be attributed: a refusal by *admission* means the recorded admission record
cannot be reproduced (the ``h_a`` check), a refusal by the *lowering compiler* after a
reproduced admission means the recorded lowering cannot be (the ``h_l`` check).

Each run is re-derived with the planner rules version it recorded (``bvisor.planner.rules``
keeps every released version), so an upgrade never turns an old run into a failed one. It
imports only the pure planner — never the launcher, whose probe reads the host.
"""

from __future__ import annotations

from dataclasses import dataclass

from bvisor import canonical
from bvisor.contract.admission import AdmissionRecord
from bvisor.contract.errors import ContractError
from bvisor.contract.lowering import LoweringError
from bvisor.contract.plan import BoundaryPlan
from bvisor.contract.profile import ProfileSnapshot
from bvisor.contract.report import AdmittedRequirement
from bvisor.contract.report_inputs import admitted_requirements, filesystem_grants, lowering_facts
from bvisor.contract.spec import BoundarySpec
from bvisor.planner.errors import PlanRefusal
from bvisor.planner.identity import build_plan
from bvisor.planner.rules import Rules, UnknownRulesVersion, rules_for
from bvisor.replay.memo import Memo

__all__ = ["Rederived", "rederive", "rederive_memo"]

_STEP_ERRORS = (ContractError, LoweringError, ValueError, TypeError)


@dataclass(frozen=True, slots=True)
class Rederived:
    """What the pure planner makes of recorded inputs.

    Exactly one of: ``plan`` (admitted and lowered), ``admission_refusal`` (admission
    refused), ``lowering_refusal`` (admission gave ``record`` but lowering refused), or
    ``error`` (the planner rejected its input outright, e.g. a contract violation), or
    ``unknown_rules`` (the run names planner rules this build does not have: nothing could
    be re-derived, which says nothing against the run).
    """

    record: AdmissionRecord | None = None
    record_bytes: bytes = b""
    plan: BoundaryPlan | None = None
    admission_refusal: PlanRefusal | None = None
    lowering_refusal: PlanRefusal | None = None
    error: str | None = None
    unknown_rules: str | None = None
    # What a report must say that follows from the re-derivation alone
    # (bvisor.contract.report_inputs), computed once with it: the report's admitted list
    # for ``record`` (None: it cannot be derived, the report check says why), and for
    # ``plan`` its lowering facts as (kind, detail) and its filesystem grants.
    admitted: tuple[AdmittedRequirement, ...] | None = None
    lowering_facts: tuple[tuple[str, str], ...] = ()
    grants: frozenset[str] = frozenset()

    @property
    def refusal(self) -> PlanRefusal | None:
        return self.admission_refusal or self.lowering_refusal


def rederive(spec: BoundarySpec, profile: ProfileSnapshot, rules_version: int) -> Rederived:
    """Admit, lower and digest with the rules ``rules_version`` (pure; never raises on data)."""
    try:
        rules = rules_for(rules_version)
    except UnknownRulesVersion as unknown:
        return Rederived(unknown_rules=str(unknown))
    return _rederive(spec, profile, rules)


def _rederive(spec: BoundarySpec, profile: ProfileSnapshot, rules: Rules) -> Rederived:
    try:
        record = rules.admit(spec, profile)
    except PlanRefusal as refusal:
        return Rederived(admission_refusal=refusal)
    except _STEP_ERRORS as exc:
        return Rederived(error=f"admission rejected its input: {exc}")
    try:
        schedule = rules.lower(spec, profile.facts, record)
    except PlanRefusal as refusal:
        return Rederived(
            record=record,
            record_bytes=_enc(record),
            lowering_refusal=refusal,
            admitted=_admitted(record),
        )
    except _STEP_ERRORS as exc:
        return Rederived(
            record=record,
            record_bytes=_enc(record),
            error=f"the lowering compiler rejected its input: {exc}",
            admitted=_admitted(record),
        )
    try:
        plan = build_plan(spec, profile, record, schedule)
    except _STEP_ERRORS as exc:
        return Rederived(
            record=record,
            record_bytes=_enc(record),
            error=f"the plan could not be assembled: {exc}",
            admitted=_admitted(record),
        )
    return Rederived(
        record=record,
        record_bytes=_enc(record),
        plan=plan,
        admitted=_admitted(record),
        lowering_facts=tuple((fact.kind, fact.detail) for fact in lowering_facts(plan)),
        grants=filesystem_grants(plan),
    )


def _admitted(record: AdmissionRecord) -> tuple[AdmittedRequirement, ...] | None:
    try:
        return admitted_requirements(record)
    except ValueError:  # the report check derives it again and says what is wrong
        return None


def _enc(record: AdmissionRecord) -> bytes:
    return canonical.encode(record.to_value())


# Re-derivations by the exact canonical bytes of (rules version, spec, profile): the
# planner is a pure function of them, and one host's ledger repeats both constantly
# (bvisor.replay.memo). A real spec and profile are a few KiB.
_MEMO: Memo[tuple[int, bytes, bytes], Rederived] = Memo(256, 128 * 1024)


def rederive_memo(
    spec: BoundarySpec,
    profile: ProfileSnapshot,
    rules_version: int,
    spec_bytes: bytes,
    profile_bytes: bytes,
) -> Rederived:
    """:func:`rederive`, remembered by the canonical bytes the caller decoded from.

    ``spec_bytes``/``profile_bytes`` must be the canonical encodings of ``spec`` and
    ``profile`` (replay.events guarantees it for what it decodes).
    """
    key = (rules_version, spec_bytes, profile_bytes)
    hit = _MEMO.table.get(key)
    if hit is None:
        hit = _MEMO.put(
            key, rederive(spec, profile, rules_version), len(spec_bytes) + len(profile_bytes)
        )
    return hit
