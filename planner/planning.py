"""The planner facade: spec + profile snapshot -> :class:`BoundaryPlan`, or a refusal.

``plan_boundary`` is the pure pipeline (admission -> mechanism selection -> lowering
compiler -> identity digests) of one rules version (``bvisor.planner.rules``). ``BoundaryPlanner``
adds the one impure step, the probe: exactly one ``backend.probe()`` per planning
attempt, unless the caller passes the snapshot it already holds (so that what is
recorded in the ledger is exactly what was admitted against).
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque

from bvisor import canonical
from bvisor.contract.plan import BoundaryPlan
from bvisor.contract.profile import ProfileSnapshot
from bvisor.contract.spec import BoundarySpec
from bvisor.planner.errors import PlanRefusal
from bvisor.planner.identity import build_plan
from bvisor.planner.registry import BackendRegistry
from bvisor.planner.rules import CURRENT, Rules

__all__ = ["BoundaryPlanner", "plan_boundary", "take_fresh_specs"]


def plan_boundary(
    spec: BoundarySpec, snapshot: ProfileSnapshot, rules: Rules = CURRENT
) -> BoundaryPlan:
    """Admit, lower and digest ``spec`` against ``snapshot`` (pure; raises PlanRefusal).

    Plans are made with the newest released rules; ``rules`` is a parameter for replay and
    for the golden vectors of older versions.
    """
    key = (id(rules), id(snapshot), canonical.encode(spec.to_value()))
    with _memo_lock:
        held = _memo.get(key)
        if held is not None and held[0] is snapshot and held[1] is rules:
            _memo.move_to_end(key)
            return held[2]
    record = rules.admit(spec, snapshot)
    schedule = rules.lower(spec, snapshot.facts, record)
    plan = build_plan(spec, snapshot, record, schedule)
    with _memo_lock:
        _memo[key] = (snapshot, rules, plan)
        while len(_memo) > _MEMO_SIZE:
            _memo.popitem(last=False)
        if rules is CURRENT:
            _fresh.append(key[2])
    return plan


def take_fresh_specs() -> list[bytes]:
    """The canonical bytes of the specs this process planned anew (not from its memo) with
    the current rules since the last call, oldest first, at most the last
    :data:`_FRESH_KEPT`; ``bvisor serve`` plans them again in the service (whose copies
    inherit its memo), so the next command with the same spec finds its plan made."""
    with _memo_lock:
        taken = list(_fresh)
        _fresh.clear()
    return taken


# plan_boundary is pure, so a plan made once for a spec (by its canonical bytes) against a
# snapshot *object* (a process reuses its probed snapshot while the host is unchanged) is
# the plan it would make again; refusals are not kept. Entries hold their snapshot and
# rules, so an id is never reused while its entry lives.
_MEMO_SIZE = 64
_memo_lock = threading.Lock()
_memo: OrderedDict[tuple[int, int, bytes], tuple[ProfileSnapshot, Rules, BoundaryPlan]] = (
    OrderedDict()
)
_FRESH_KEPT = 8
_fresh: deque[bytes] = deque(maxlen=_FRESH_KEPT)


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
