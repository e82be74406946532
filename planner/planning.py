"""The planner facade: spec + profile snapshot -> :class:`BoundaryPlan`, or a refusal.

``plan_boundary`` is the pure pipeline (admission -> mechanism selection -> lowering
compiler -> identity digests) of one rules version (``bvisor.planner.rules``). ``BoundaryPlanner``
adds the one impure step, the probe: exactly one ``backend.probe()`` per planning
attempt, unless the caller passes the snapshot it already holds (so that what is
recorded in the ledger is exactly what was admitted against).
"""

from __future__ import annotations

from bvisor.contract.plan import BoundaryPlan
from bvisor.contract.profile import ProfileSnapshot
from bvisor.contract.spec import BoundarySpec
from bvisor.planner.errors import PlanRefusal
from bvisor.planner.identity import build_plan
from bvisor.planner.registry import BackendRegistry
from bvisor.planner.rules import CURRENT, Rules

__all__ = ["BoundaryPlanner", "plan_boundary"]


def plan_boundary(
    spec: BoundarySpec, snapshot: ProfileSnapshot, rules: Rules = CURRENT
) -> BoundaryPlan:
    """Admit, lower and digest ``spec`` against ``snapshot`` (pure; raises PlanRefusal).

    Plans are made with the newest released rules; ``rules`` is a parameter for replay and
    for the golden vectors of older versions.
    """
    record = rules.admit(spec, snapshot)
    schedule = rules.lower(spec, snapshot.facts, record)
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
