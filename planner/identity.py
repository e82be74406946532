"""Plan identity: compute h_p, h_a, h_l and plan_id and assemble the :class:`BoundaryPlan`.

The digest definitions live in the contract (``bvisor.contract.plan`` and friends) so the
replayer shares them; this module only applies them in the right order. Everything here
is a pure function of its inputs, so the same spec and snapshot always produce a
byte-identical plan.
"""

from __future__ import annotations

from bvisor.contract.admission import AdmissionRecord, admission_digest
from bvisor.contract.lowering import lowering_digest
from bvisor.contract.plan import PLAN_SCHEMA_VERSION, BoundaryPlan, PlannedPrimitive, plan_identity
from bvisor.contract.profile import ProfileSnapshot, profile_digest
from bvisor.contract.spec import BoundarySpec

__all__ = ["build_plan"]


def build_plan(
    spec: BoundarySpec,
    snapshot: ProfileSnapshot,
    record: AdmissionRecord,
    lowering: tuple[PlannedPrimitive, ...],
) -> BoundaryPlan:
    """Digest every part and return the plan (its constructor re-checks the digests)."""
    h_p = profile_digest(snapshot)
    h_a = admission_digest(record)
    h_l = lowering_digest(p.entry for p in lowering)
    plan_id = plan_identity(PLAN_SCHEMA_VERSION, snapshot.backend, spec, h_p, h_a, h_l, record)
    return BoundaryPlan(
        schema_version=PLAN_SCHEMA_VERSION,
        backend=snapshot.backend,
        spec=spec,
        profile=snapshot,
        admission=record,
        lowering=lowering,
        h_p=h_p,
        h_a=h_a,
        h_l=h_l,
        plan_id=plan_id,
    )
