"""The planner facade: spec + profile snapshot -> :class:`BoundaryPlan`, or a refusal.

``plan_boundary`` is the pure pipeline (admission -> mechanism selection -> lowering
compiler -> identity digests); replay calls it on recorded inputs. ``BoundaryPlanner``
adds the one impure step, the probe: exactly one ``backend.probe()`` per planning
attempt, unless the caller passes the snapshot it already holds (so that what is
recorded in the ledger is exactly what was admitted against).
"""

from __future__ import annotations

from bvisor.contract.plan import BoundaryPlan
from bvisor.contract.profile import ProfileSnapshot
from bvisor.contract.spec import BoundarySpec
from bvisor.planner.admission import admit
from bvisor.planner.errors import PlanRefusal
from bvisor.planner.identity import build_plan
from bvisor.planner.lowering import compile_schedule
from bvisor.planner.registry import BackendRegistry
from bvisor.planner.selection import select_primitives

__all__ = ["BoundaryPlanner", "plan_boundary"]


def plan_boundary(spec: BoundarySpec, snapshot: ProfileSnapshot) -> BoundaryPlan:
    """Admit, lower and digest ``spec`` against ``snapshot`` (pure; raises PlanRefusal)."""
    record = admit(spec, snapshot)
    schedule = compile_schedule(select_primitives(spec, snapshot.facts, record))
    return build_plan(spec, snapshot, record, schedule)


class BoundaryPlanner:
    """Plans specs for the backends in a registry."""

    def __init__(self, registry: BackendRegistry) -> None:
        self._registry = registry

    def plan(
        self, spec: BoundarySpec, backend_id: str, snapshot: ProfileSnapshot | None = None
    ) -> BoundaryPlan:
        """Plan ``spec`` on ``backend_id``, probing once unless ``snapshot`` is given."""
        backend = self._registry.get(backend_id)
        profile = backend.probe() if snapshot is None else snapshot
        if profile.backend != backend_id:
            raise PlanRefusal(
                "profile-insufficient",
                f"the profile snapshot is for backend {profile.backend!r}, not {backend_id!r}",
            )
        return plan_boundary(spec, profile)
