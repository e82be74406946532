"""The lowering compiler: requested primitives -> a checked, ordered schedule.

Admission decides *what* must hold; this module turns the chosen primitives (each an id
from the mechanism catalogue plus its parameters) into the schedule the launcher runs and
h_l is taken over. It trusts nothing about its input, because a wrong schedule would
silently weaken a boundary (a seccomp filter before no_new_privs fails; a netns without
its userns cannot be created unprivileged). Checks, in order, each a :class:`PlanRefusal`
with a stable code:

* ``lowering-unknown-primitive`` — the id is not in the catalogue;
* ``lowering-bad-params``        — parameters are not a map with exactly the keys the
  primitive takes (``PARAM_KEYS``) or are not canonically encodable;
* ``lowering-duplicate``         — the same primitive requested twice with equal params;
* ``lowering-conflict``          — the same primitive requested twice with different params;
* ``lowering-missing-prerequisite`` — a ``requires`` entry is not scheduled;
* ``lowering-phase-order``       — a prerequisite sits in a *later* phase than its dependant;
* ``lowering-cycle``             — prerequisites form a cycle (possible only within a phase).

Output order is topological, ties broken by (phase, id, version): deterministic, so the
same admitted spec always yields the same h_l. ``decl_digest`` binds each entry to its
catalogue declaration (id, version, phase, prerequisites), ``param_digest`` to its params.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence

from bvisor import canonical
from bvisor.contract.lowering import LoweringEntry, param_digest
from bvisor.contract.plan import PlannedPrimitive
from bvisor.planner.errors import PlanRefusal
from bvisor.planner.rules.v1.catalogue import BY_ID, Primitive, decl_digest, decl_value

__all__ = ["PARAM_KEYS", "compile_schedule", "decl_digest", "decl_value", "param_digest"]

# The exact parameter keys each catalogue primitive takes (the runner reads these).
PARAM_KEYS: dict[str, frozenset[str]] = {
    "linux.userns.create.v1": frozenset({"uid", "gid"}),
    "linux.netns.create.v1": frozenset(),
    "linux.cgroup.leaf.v1": frozenset({"v2_base", "v1_bases"}),
    "linux.budget.pids.v1": frozenset({"limit", "hierarchy"}),
    "linux.budget.memory.v1": frozenset({"limit_bytes", "hierarchy"}),
    "linux.nonewprivs.v1": frozenset(),
    "linux.caps.drop.v1": frozenset(),
    "linux.ambient.scrub.v1": frozenset({"env", "keep_fds"}),
    "linux.landlock.apply.v1": frozenset(
        {"abi_floor", "rules", "system_read_roots", "device_rw", "device_read", "scope"}
    ),
    "linux.seccomp.apply.v1": frozenset({"deny_new_tasks", "deny_sockets"}),
    "linux.landlock.scope.v1": frozenset({"scope"}),
    "linux.exec.v1": frozenset({"exe", "argv"}),
    "linux.streams.capture.v1": frozenset({"stdout", "stderr", "stdin", "cap_bytes"}),
    "linux.budget.wall.v1": frozenset({"limit_micros"}),
    "linux.cgroup.kill.v1": frozenset({"guarantee"}),
}


def _check_params(
    prim_id: str, params: object, keys: Mapping[str, frozenset[str]]
) -> canonical.Value:
    if not isinstance(params, Mapping):
        raise PlanRefusal("lowering-bad-params", "parameters must be a map", requirement=prim_id)
    expected = keys.get(prim_id)
    if expected is not None and set(params) != expected:
        raise PlanRefusal(
            "lowering-bad-params",
            f"parameter keys {sorted(params)} differ from {sorted(expected)}",
            requirement=prim_id,
        )
    try:
        canonical.check_value(params)
    except canonical.CanonicalError as exc:
        raise PlanRefusal("lowering-bad-params", str(exc), requirement=prim_id) from None
    return dict(params)


def compile_schedule(
    requests: Sequence[tuple[str, canonical.Value]],
    catalogue: Mapping[str, Primitive] = BY_ID,
    param_keys: Mapping[str, frozenset[str]] = PARAM_KEYS,
) -> tuple[PlannedPrimitive, ...]:
    """Check ``requests`` ((primitive id, params) pairs) and return the ordered schedule.

    ``catalogue`` and ``param_keys`` are parameters only so tests can hand-build bad
    catalogues (cycles, phase inversions); production always uses the shared catalogue.
    """
    chosen: dict[str, tuple[Primitive, canonical.Value]] = {}
    for prim_id, raw in requests:
        primitive = catalogue.get(prim_id)
        if primitive is None:
            raise PlanRefusal(
                "lowering-unknown-primitive",
                f"{prim_id!r} is not in the mechanism catalogue",
                requirement=prim_id,
            )
        params = _check_params(prim_id, raw, param_keys)
        if prim_id in chosen:
            same = canonical.encode(chosen[prim_id][1]) == canonical.encode(params)
            raise PlanRefusal(
                "lowering-duplicate" if same else "lowering-conflict",
                "scheduled twice" + ("" if same else " with different parameters"),
                requirement=prim_id,
            )
        chosen[prim_id] = (primitive, params)

    for prim_id, (primitive, _) in chosen.items():
        for need in primitive.requires:
            if need not in chosen:
                raise PlanRefusal(
                    "lowering-missing-prerequisite",
                    f"requires {need}, which is not scheduled",
                    requirement=prim_id,
                )
            if chosen[need][0].phase > primitive.phase:
                raise PlanRefusal(
                    "lowering-phase-order",
                    f"prerequisite {need} runs in phase {chosen[need][0].phase.name}, "
                    f"after this entry's phase {primitive.phase.name}",
                    requirement=prim_id,
                )

    return tuple(_topological(chosen))


def _sort_key(primitive: Primitive) -> tuple[int, str, int]:
    return (int(primitive.phase), primitive.id, primitive.version)


def _topological(
    chosen: Mapping[str, tuple[Primitive, canonical.Value]],
) -> list[PlannedPrimitive]:
    """Kahn's algorithm with a (phase, id, version) heap: the least ready entry goes next."""
    waiting = {pid: set(p.requires) for pid, (p, _) in chosen.items()}
    dependants: dict[str, list[str]] = {pid: [] for pid in chosen}
    for pid, needs in waiting.items():
        for need in needs:
            dependants[need].append(pid)
    ready = [(_sort_key(chosen[pid][0]), pid) for pid, needs in waiting.items() if not needs]
    heapq.heapify(ready)
    out: list[PlannedPrimitive] = []
    while ready:
        _, pid = heapq.heappop(ready)
        primitive, params = chosen[pid]
        entry = LoweringEntry(
            primitive.id,
            primitive.version,
            int(primitive.phase),
            param_digest(params),
            decl_digest(primitive),
        )
        out.append(PlannedPrimitive(entry, params))
        for dependant in dependants[pid]:
            waiting[dependant].discard(pid)
            if not waiting[dependant]:
                heapq.heappush(ready, (_sort_key(chosen[dependant][0]), dependant))
    if len(out) != len(chosen):
        stuck = sorted(pid for pid, needs in waiting.items() if needs)
        raise PlanRefusal(
            "lowering-cycle",
            f"prerequisites form a cycle among {', '.join(stuck)}",
            requirement=stuck[0],
        )
    return out
