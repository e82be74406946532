"""A plan's lowering parameters as the host and the launcher read them: typed, strictly.

Each entry's parameters are decoded with the parameter class the mechanism catalogue
declares for it (``bvisor.contract.mechanisms``): unknown or missing keys, wrong types and
unknown entries stop the run before anything is opened or spawned
(:class:`LoweringParamsError`). :class:`LoweredParams` then gathers what the host side
needs across entries (the executable, the cgroup leaf and its limits, the deadline, the
streams, which host paths the workload can reach); the launcher process works from the
per-entry typed values directly.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from bvisor.contract import mechanisms as mech
from bvisor.contract.errors import ContractError

if TYPE_CHECKING:  # the launcher process imports this module; it never sees a plan
    from bvisor.contract.plan import BoundaryPlan

__all__ = [
    "LimitParams",
    "LoweredParams",
    "LoweringParamsError",
    "lowered_params",
    "parse_lowering_params",
    "typed_params",
]

P = TypeVar("P", bound=mech.Params)


class LoweringParamsError(ValueError):
    """A plan's lowering parameters are not what this build understands."""


@dataclass(frozen=True, slots=True)
class LimitParams:
    """A cgroup limit: its value and the hierarchy (``v1``/``v2``) that carries it."""

    limit: int
    hierarchy: str


def typed_params(pairs: Iterable[tuple[str, object]]) -> dict[str, mech.Params]:
    """``{entry id: typed parameters}`` for ``(entry id, canonical params)`` pairs."""
    typed: dict[str, mech.Params] = {}
    for entry_id, value in pairs:
        if entry_id in typed:
            raise LoweringParamsError(f"{entry_id} is scheduled twice")
        try:
            typed[entry_id] = mech.params_of(entry_id, value)
        except ContractError as exc:
            raise LoweringParamsError(str(exc)) from None
    return typed


@dataclass(frozen=True, slots=True)
class LoweredParams:
    """Everything the host side reads from the plan's lowering, typed."""

    by_id: Mapping[str, mech.Params]

    def get(self, primitive: mech.Primitive, cls: type[P]) -> P | None:
        value = self.by_id.get(primitive.id)
        if value is not None and not isinstance(value, cls):  # pragma: no cover - catalogue bug
            raise LoweringParamsError(f"{primitive.id}: parameters are not {cls.__name__}")
        return value

    def has(self, primitive: mech.Primitive) -> bool:
        return primitive.id in self.by_id

    @property
    def exec(self) -> mech.Exec:
        value = self.get(mech.EXEC, mech.Exec)
        if value is None:
            raise LoweringParamsError(f"the plan has no {mech.EXEC.id} entry")
        return value

    @property
    def exe(self) -> str:
        return self.exec.exe

    @property
    def argv(self) -> tuple[str, ...]:
        return self.exec.argv

    @property
    def ambient(self) -> mech.AmbientScrub:
        value = self.get(mech.AMBIENT_SCRUB, mech.AmbientScrub)
        return value if value is not None else mech.AmbientScrub((), (0, 1, 2), False)

    @property
    def env(self) -> tuple[mech.EnvSource, ...]:
        return self.ambient.env

    @property
    def keep_fds(self) -> tuple[int, ...]:
        return tuple(sorted(self.ambient.keep_fds))

    @property
    def tty(self) -> bool:
        return self.ambient.tty

    @property
    def rootfs(self) -> mech.Rootfs | None:
        return self.get(mech.ROOTFS, mech.Rootfs)

    @property
    def landlock(self) -> mech.LandlockApply | None:
        return self.get(mech.LANDLOCK, mech.LandlockApply)

    @property
    def cgroup(self) -> mech.CgroupLeaf | None:
        return self.get(mech.CGROUP_LEAF, mech.CgroupLeaf)

    @property
    def pids(self) -> LimitParams | None:
        value = self.get(mech.BUDGET_PIDS, mech.PidsLimit)
        return None if value is None else LimitParams(value.limit, value.hierarchy)

    @property
    def memory(self) -> LimitParams | None:
        value = self.get(mech.BUDGET_MEMORY, mech.MemoryLimit)
        return None if value is None else LimitParams(value.limit_bytes, value.hierarchy)

    @property
    def wall_micros(self) -> int | None:
        value = self.get(mech.BUDGET_WALL, mech.WallBudget)
        return None if value is None else value.limit_micros

    @property
    def streams(self) -> mech.StreamCapture | None:
        return self.get(mech.STREAMS, mech.StreamCapture)

    @property
    def outputs(self) -> mech.Outputs | None:
        return self.get(mech.OUTPUTS, mech.Outputs)

    @property
    def commits(self) -> bool:
        """Does the plan commit the run's outputs to a host directory?"""
        return self.outputs is not None and self.outputs.commit is not None

    @property
    def kill_guarantee(self) -> str | None:
        value = self.get(mech.CGROUP_KILL, mech.KillGuarantee)
        return None if value is None else value.guarantee

    @property
    def netproxy(self) -> mech.NetProxy | None:
        return self.get(mech.NETPROXY, mech.NetProxy)

    @property
    def netdns(self) -> mech.NetDns | None:
        return self.get(mech.NETDNS, mech.NetDns)

    @property
    def network_budget(self) -> int | None:
        value = self.get(mech.BUDGET_NETWORK, mech.NetworkBudget)
        return None if value is None else value.limit_bytes

    @property
    def pidns(self) -> bool:
        return self.has(mech.PIDNS)

    @property
    def netns(self) -> bool:
        return self.has(mech.NETNS)

    def writable_paths(self) -> tuple[str, ...]:
        """Every host path the workload can write: read-write binds and Landlock rules."""
        paths: list[str] = []
        if self.rootfs is not None:
            paths += [bind.source for bind in self.rootfs.binds() if bind.access == "write"]
        if self.landlock is not None:
            paths += [rule.path for rule in self.landlock.rules if rule.access == "write"]
        return tuple(dict.fromkeys(paths))

    @property
    def seccomp(self) -> mech.Seccomp | None:
        return self.get(mech.SECCOMP, mech.Seccomp)

    @property
    def filesystem_confined(self) -> bool:
        """Whether the workload's files are confined at all: a private root, or Landlock
        rules (none is a domain that reaches nothing). Without either it reaches every
        file its uid may, which no list of paths says (:meth:`reachable_paths` is empty)."""
        return self.rootfs is not None or self.landlock is not None

    def reachable_paths(self) -> tuple[str, ...]:
        """Every host path the workload can reach through its root or its Landlock rules."""
        paths: list[str] = []
        if self.rootfs is not None:
            paths += [bind.source for bind in self.rootfs.binds()]
        if self.landlock is not None:
            paths += [rule.path for rule in self.landlock.rules]
        return tuple(dict.fromkeys(paths))


# The last plan parsed and its typed view. One run reads its plan's lowering in the API,
# the runner, three reach checks and the backend; a plan is a frozen value, so the view of
# the very same object is the same. Kept by identity (and holding the plan, so its id
# cannot be reused); a tuple is replaced whole, so threads see one pair or the other.
_last: tuple[BoundaryPlan, LoweredParams] | None = None


def lowered_params(plan: BoundaryPlan) -> LoweredParams:
    """Parse every parameter of ``plan``'s lowering; unknown shapes fail closed."""
    global _last
    last = _last
    if last is not None and last[0] is plan:
        return last[1]
    lowered = parse_lowering_params((p.entry.id, p.params) for p in plan.lowering)
    _last = (plan, lowered)
    return lowered


def parse_lowering_params(pairs: Iterable[tuple[str, object]]) -> LoweredParams:
    """The typed view of ``(entry id, params)`` pairs."""
    lowered = LoweredParams(typed_params(pairs))
    lowered.exec  # noqa: B018 - every plan must execute something
    return lowered
