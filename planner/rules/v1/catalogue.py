"""The catalogue of Linux lowering primitives both the planner and the launcher know.

The planner schedules these entries and the launcher refuses any entry it does not know,
so the ids, versions and phases are fixed here, once. ``LANDLOCK_ABI_FLOOR`` is the single
Landlock ABI floor: the planner admits Filesystem only at or above it and the launcher
refuses to restrict below it (ABI 3 adds LANDLOCK_ACCESS_FS_TRUNCATE; below it a
"read-only" root could still be truncated, so the confinement would be a lie).
"""

from __future__ import annotations

from dataclasses import dataclass

from bvisor import canonical
from bvisor.contract.lowering import Phase
from bvisor.digest import Purpose, digest_value

__all__ = ["BY_ID", "CATALOGUE", "LANDLOCK_ABI_FLOOR", "Primitive", "decl_digest", "decl_value"]

LANDLOCK_ABI_FLOOR = 3


@dataclass(frozen=True, slots=True)
class Primitive:
    """A mechanism the Linux backend can lower a requirement to."""

    id: str
    version: int
    phase: Phase
    requires: tuple[str, ...] = ()
    launcher_side: bool = True  # False: carried out by the host (budgets, capture, teardown)


USERNS = Primitive("linux.userns.create.v1", 1, Phase.NAMESPACE_CREATE)
NETNS = Primitive("linux.netns.create.v1", 1, Phase.NAMESPACE_CREATE, (USERNS.id,))
CGROUP_LEAF = Primitive("linux.cgroup.leaf.v1", 1, Phase.NAMESPACE_CREATE)
BUDGET_PIDS = Primitive(
    "linux.budget.pids.v1", 1, Phase.NAMESPACE_CREATE, (CGROUP_LEAF.id,), launcher_side=False
)
BUDGET_MEMORY = Primitive(
    "linux.budget.memory.v1", 1, Phase.NAMESPACE_CREATE, (CGROUP_LEAF.id,), launcher_side=False
)
NO_NEW_PRIVS = Primitive("linux.nonewprivs.v1", 1, Phase.PRIVILEGE_DROP)
CAPS_DROP = Primitive("linux.caps.drop.v1", 1, Phase.PRIVILEGE_DROP)
AMBIENT_SCRUB = Primitive("linux.ambient.scrub.v1", 1, Phase.FD_HYGIENE)
LANDLOCK = Primitive("linux.landlock.apply.v1", 1, Phase.POLICY_INSTALL, (NO_NEW_PRIVS.id,))
SECCOMP = Primitive("linux.seccomp.apply.v1", 1, Phase.POLICY_INSTALL, (NO_NEW_PRIVS.id,))
# A Landlock domain that handles no filesystem right, only IPC scopes (ABI >= 6): used when
# a spec has no filesystem capability, so signals and abstract sockets are still scoped.
LANDLOCK_SCOPE = Primitive("linux.landlock.scope.v1", 1, Phase.POLICY_INSTALL, (NO_NEW_PRIVS.id,))
EXEC = Primitive("linux.exec.v1", 1, Phase.LAUNCH)
STREAMS = Primitive("linux.streams.capture.v1", 1, Phase.OBSERVE, launcher_side=False)
BUDGET_WALL = Primitive(
    "linux.budget.wall.v1", 1, Phase.OBSERVE, (CGROUP_LEAF.id,), launcher_side=False
)
CGROUP_KILL = Primitive(
    "linux.cgroup.kill.v1", 1, Phase.TEARDOWN, (CGROUP_LEAF.id,), launcher_side=False
)

CATALOGUE: tuple[Primitive, ...] = (
    USERNS,
    NETNS,
    CGROUP_LEAF,
    BUDGET_PIDS,
    BUDGET_MEMORY,
    NO_NEW_PRIVS,
    CAPS_DROP,
    AMBIENT_SCRUB,
    LANDLOCK,
    LANDLOCK_SCOPE,
    SECCOMP,
    EXEC,
    STREAMS,
    BUDGET_WALL,
    CGROUP_KILL,
)
BY_ID: dict[str, Primitive] = {p.id: p for p in CATALOGUE}


def decl_value(primitive: Primitive) -> dict[str, canonical.Value]:
    """The declaration a schedule entry is bound to (everything but its parameters)."""
    return {
        "id": primitive.id,
        "version": primitive.version,
        "phase_code": int(primitive.phase),
        "requires": sorted(primitive.requires),
    }


def decl_digest(primitive: Primitive) -> bytes:
    """What a lowering entry's ``decl_digest`` must be; planner and launcher both check it."""
    return digest_value(Purpose.PRIMITIVE_DECL, decl_value(primitive))
