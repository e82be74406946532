"""A strict, typed view of an admitted plan's lowering parameters.

Both sides read parameters through this one parser: the host to build the launch body,
and the launcher to check that the body's target is what those parameters say (see
``bvisor.launcher.process.verify``). It therefore imports nothing but the mechanism catalogue.

The plan carries each primitive's parameters as canonical values (so they can be hashed
and recorded); the host side needs them as typed fields. Reading them through one parser
means a malformed or unexpected parameter stops the run before anything is opened or
spawned (``LoweringParamsError``), instead of surfacing as a stray ``KeyError`` halfway
through a launch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bvisor.contract import mechanisms as mech

if TYPE_CHECKING:  # the launcher process imports this module; it never sees a plan
    from bvisor.contract.plan import BoundaryPlan

__all__ = [
    "CgroupParams",
    "EnvSource",
    "LandlockParams",
    "LimitParams",
    "LoweredParams",
    "LoweringParamsError",
    "StreamParams",
    "lowered_params",
    "parse_lowering_params",
]


class LoweringParamsError(ValueError):
    """A plan's lowering parameters are not what this host side understands."""


@dataclass(frozen=True, slots=True)
class EnvSource:
    """One environment entry: a literal value, or a lease reference resolved at launch."""

    name: str
    literal: str | None
    lease: str | None


@dataclass(frozen=True, slots=True)
class LandlockParams:
    abi_floor: int
    rules: tuple[tuple[str, str], ...]  # (path, access) the spec asked for
    system_read_roots: tuple[str, ...]
    device_rw: tuple[str, ...]
    device_read: tuple[str, ...]
    scope: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class LimitParams:
    limit: int
    hierarchy: str  # "v1" or "v2"


@dataclass(frozen=True, slots=True)
class CgroupParams:
    v2_base: str | None
    v1_bases: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class StreamParams:
    stdout: bool
    stderr: bool
    stdin: bool
    cap_bytes: int


@dataclass(frozen=True, slots=True)
class LoweredParams:
    """Everything the host side reads from the plan's lowering, typed."""

    exe: str
    argv: tuple[str, ...]
    env: tuple[EnvSource, ...]
    keep_fds: tuple[int, ...]
    userns: tuple[int, int] | None
    netns: bool
    seccomp: tuple[bool, bool] | None  # (deny_new_tasks, deny_sockets)
    landlock: LandlockParams | None
    cgroup: CgroupParams | None
    pids: LimitParams | None
    memory: LimitParams | None
    wall_micros: int | None
    streams: StreamParams | None
    kill_guarantee: str | None
    caps_drop: bool
    landlock_scope_only: tuple[str, ...] | None


def _map(value: object, where: str) -> Mapping[str, object]:
    if not isinstance(value, Mapping):
        raise LoweringParamsError(f"{where}: parameters must be a map")
    return value


def _text(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise LoweringParamsError(f"{where}: expected text, got {type(value).__name__}")
    return value


def _int(value: object, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise LoweringParamsError(f"{where}: expected an integer")
    return value


def _bool(value: object, where: str) -> bool:
    if not isinstance(value, bool):
        raise LoweringParamsError(f"{where}: expected a boolean")
    return value


def _list(value: object, where: str) -> list[object]:
    if not isinstance(value, list | tuple):
        raise LoweringParamsError(f"{where}: expected an array")
    return list(value)


def _texts(value: object, where: str) -> tuple[str, ...]:
    return tuple(_text(item, f"{where}[{i}]") for i, item in enumerate(_list(value, where)))


def _env(value: object) -> tuple[EnvSource, ...]:
    where = f"{mech.AMBIENT_SCRUB.id}.env"
    entries = []
    for index, item in enumerate(_list(value, where)):
        pair = _list(item, f"{where}[{index}]")
        if len(pair) != 2:
            raise LoweringParamsError(f"{where}[{index}]: expected [name, source]")
        name = _text(pair[0], f"{where}[{index}][0]")
        source = _map(pair[1], f"{where}[{index}][1]")
        if set(source) == {"literal"}:
            entries.append(EnvSource(name, _text(source["literal"], name), None))
        elif set(source) == {"lease"}:
            entries.append(EnvSource(name, None, _text(source["lease"], name)))
        else:
            raise LoweringParamsError(f"{where}[{index}]: source must be literal or lease")
    return tuple(entries)


def _limit(params: Mapping[str, object], key: str, where: str) -> LimitParams:
    hierarchy = _text(params["hierarchy"], f"{where}.hierarchy")
    if hierarchy not in {"v1", "v2"}:
        raise LoweringParamsError(f"{where}.hierarchy: expected v1 or v2")
    return LimitParams(_int(params[key], f"{where}.{key}"), hierarchy)


def lowered_params(plan: BoundaryPlan) -> LoweredParams:
    """Parse every parameter the host side uses; unknown shapes fail closed."""
    return parse_lowering_params((p.entry.id, p.params) for p in plan.lowering)


def parse_lowering_params(pairs: Iterable[tuple[str, object]]) -> LoweredParams:
    """The typed view of ``(entry id, params)`` pairs: the host's, and the launcher's check."""
    raw: dict[str, Mapping[str, object]] = {}
    for entry_id, params in pairs:
        raw[entry_id] = _map(params, entry_id)
    try:
        return _parse(raw)
    except KeyError as missing:
        raise LoweringParamsError(f"lowering parameter {missing} is missing") from None


def _parse(raw: Mapping[str, Mapping[str, object]]) -> LoweredParams:
    if mech.EXEC.id not in raw:
        raise LoweringParamsError(f"the plan has no {mech.EXEC.id} entry")
    exec_params = raw[mech.EXEC.id]
    scrub = raw.get(mech.AMBIENT_SCRUB.id, {"env": [], "keep_fds": [0, 1, 2]})
    userns = raw.get(mech.USERNS.id)
    seccomp = raw.get(mech.SECCOMP.id)
    landlock = raw.get(mech.LANDLOCK.id)
    cgroup = raw.get(mech.CGROUP_LEAF.id)
    pids = raw.get(mech.BUDGET_PIDS.id)
    memory = raw.get(mech.BUDGET_MEMORY.id)
    wall = raw.get(mech.BUDGET_WALL.id)
    streams = raw.get(mech.STREAMS.id)
    kill = raw.get(mech.CGROUP_KILL.id)
    scope_only = raw.get(mech.LANDLOCK_SCOPE.id)
    return LoweredParams(
        exe=_text(exec_params["exe"], "exec.exe"),
        argv=_texts(exec_params["argv"], "exec.argv"),
        env=_env(scrub["env"]),
        keep_fds=tuple(
            sorted(_int(fd, "ambient.keep_fds") for fd in _list(scrub["keep_fds"], "keep_fds"))
        ),
        userns=None
        if userns is None
        else (_int(userns["uid"], "userns.uid"), _int(userns["gid"], "userns.gid")),
        netns=mech.NETNS.id in raw,
        seccomp=None
        if seccomp is None
        else (
            _bool(seccomp["deny_new_tasks"], "seccomp.deny_new_tasks"),
            _bool(seccomp["deny_sockets"], "seccomp.deny_sockets"),
        ),
        landlock=None if landlock is None else _landlock(landlock),
        cgroup=None
        if cgroup is None
        else CgroupParams(
            v2_base=None if cgroup["v2_base"] is None else _text(cgroup["v2_base"], "v2_base"),
            v1_bases=tuple(
                sorted(
                    (name, _text(base, f"v1_bases.{name}"))
                    for name, base in _map(cgroup["v1_bases"], "v1_bases").items()
                )
            ),
        ),
        pids=None if pids is None else _limit(pids, "limit", mech.BUDGET_PIDS.id),
        memory=None if memory is None else _limit(memory, "limit_bytes", mech.BUDGET_MEMORY.id),
        wall_micros=None if wall is None else _int(wall["limit_micros"], "wall.limit_micros"),
        streams=None
        if streams is None
        else StreamParams(
            stdout=_bool(streams["stdout"], "streams.stdout"),
            stderr=_bool(streams["stderr"], "streams.stderr"),
            stdin=_bool(streams["stdin"], "streams.stdin"),
            cap_bytes=_int(streams["cap_bytes"], "streams.cap_bytes"),
        ),
        kill_guarantee=None if kill is None else _text(kill["guarantee"], "kill.guarantee"),
        caps_drop=mech.CAPS_DROP.id in raw,
        landlock_scope_only=None
        if scope_only is None
        else _texts(scope_only["scope"], f"{mech.LANDLOCK_SCOPE.id}.scope"),
    )


def _landlock(params: Mapping[str, object]) -> LandlockParams:
    where = mech.LANDLOCK.id
    rules = []
    for index, rule in enumerate(_list(params["rules"], f"{where}.rules")):
        body = _map(rule, f"{where}.rules[{index}]")
        access = _text(body["access"], f"{where}.rules[{index}].access")
        if access not in {"read", "write", "read_write"}:
            raise LoweringParamsError(f"{where}.rules[{index}].access: unknown {access!r}")
        rules.append((_text(body["path"], f"{where}.rules[{index}].path"), access))
    return LandlockParams(
        abi_floor=_int(params["abi_floor"], f"{where}.abi_floor"),
        rules=tuple(rules),
        system_read_roots=_texts(params["system_read_roots"], f"{where}.system_read_roots"),
        device_rw=_texts(params["device_rw"], f"{where}.device_rw"),
        device_read=_texts(params["device_read"], f"{where}.device_read"),
        scope=_texts(params["scope"], f"{where}.scope"),
    )
