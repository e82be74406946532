"""Evidence that every mechanism the plan scheduled was applied before the workload ran.

The launcher writes a mechanism's note (:mod:`bvisor.contract.notes`) only once the child
said every op of its phase was done: right after the phase state that covers it
(:func:`bvisor.contract.transcript.state_of`), before ``ReadyToExec``. A transcript that
reached ``ExecSucceeded`` therefore holds, for each launcher-side lowering entry, its
notes in that window. A launcher that skipped the private root, Landlock or seccomp (or a
forger who removed the notes and re-chained the ledger) leaves a run whose digests all
re-derive, so the notes are required here: one missing, outside its window, or saying
something its entry's parameters contradict fails the ``transcript`` check, naming the
entry. A run that never reached exec (refused, faulted) is required nothing: its launcher
stopped before it could write them.

Requirements are keyed by the entry id the run recorded (an id names its parameters and
what its mechanism notes) and, where a released launcher worded one differently, by the
planner rules version the run recorded: runs of rules v1 named no controller in a cgroup
v1 note. Every released launcher wrote every note required here (the compatibility
ledgers of rules v1 to v4 prove it; ``linux.utsns.v1``, whose note names the plan's
hostname and domain name, is in plans of rules v4 on only). Notes no released launcher
always wrote (the user rlimits) and those written once the workload ended (outputs) are
not required. A test hook that replaces a note (its own DANGER note says so) requires the
replacement.

A note is judged by the kernel's values, not only by its shape: a Landlock note by the
rights its ABI restricts and the scope bits (:mod:`bvisor.contract.landlock`), a seccomp
note by its flags, its architecture (the machine the run's profile was probed on) and its
denied list, which must be exactly what a filter of those flags denies
(:mod:`bvisor.contract.seccomp`, the labels the launcher's basement writes).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bvisor.contract import landlock as landlock_facts
from bvisor.contract import mechanisms as mech
from bvisor.contract import notes as wire
from bvisor.contract import seccomp as seccomp_labels
from bvisor.contract.errors import ContractError
from bvisor.contract.lowering import Phase
from bvisor.contract.transcript import NOTE_PREFIX, READY_TO_EXEC, state_of
from bvisor.replay.events import LoweringRecord

__all__ = ["applied_problems", "required_ids"]

# A judge says of one note: None, not this mechanism's; "", it fits; else what contradicts.
Judge = Callable[[str], str | None]

# Entry ids of the rules-v1 catalogue, which later rules replaced (same notes, fewer
# parameters): each is judged like its successor, from its recorded parameters.
_AMBIENT_V1 = "linux.ambient.scrub.v1"
_LANDLOCK_V1 = "linux.landlock.apply.v1"
_SECCOMP_V1 = "linux.seccomp.apply.v1"


@dataclass(frozen=True, slots=True)
class _Need:
    """One note an entry requires: what it is (for the finding) and who judges a note;
    ``exact``, when only that very text fits (found by lookup before any judging)."""

    what: str
    judge: Judge
    exact: str | None = None


@dataclass(frozen=True, slots=True)
class _Context:
    """What the requirements depend on besides an entry's parameters."""

    hooks: frozenset[str]
    rules_version: int
    entry_ids: frozenset[str]
    arch: str  # the machine the run's profile was probed on


def _exact(text: str) -> _Need:
    return _Need(repr(text), lambda note: "" if note == text else None, exact=text)


def _fields(params: object) -> Mapping[str, Any]:
    if not isinstance(params, Mapping):
        raise ValueError("its parameters are not a table")
    return params


# -- the requirements, one function per mechanism ---------------------------------------


def _userns(params: object, ctx: _Context) -> list[_Need]:
    p = _fields(params)
    return [_exact(wire.userns_note(int(p["uid"]), int(p["gid"])))]


def _pidns(params: object, ctx: _Context) -> list[_Need]:
    skipped = "skip_pidns" in ctx.hooks
    return [_exact(wire.PIDNS_SKIPPED if skipped else wire.PIDNS_CREATED)]


def _placed(hierarchy: str, controller: str | None, ctx: _Context) -> Judge:
    def judge(note: str) -> str | None:
        placed = wire.parse_cgroup_placed(note)
        if placed is None or placed[0] != hierarchy:
            return None
        named = placed[2]
        if hierarchy == "v1" and named is None and ctx.rules_version > 1:
            return f"it names no controller (the plan places the run in {controller}'s leaf)"
        if named is not None and named != controller:
            return None  # another controller's leaf: its own requirement judges it
        return ""

    return judge


def _cgroup(params: object, ctx: _Context) -> list[_Need]:
    p = _fields(params)
    needs = []
    if p["v2_base"] is not None:
        needs.append(_Need("a 'cgroup placed v2' note", _placed("v2", None, ctx)))
    for controller in sorted(_fields(p["v1_bases"])):
        what = f"a 'cgroup placed v1 ... ({controller})' note"
        needs.append(_Need(what, _placed("v1", controller, ctx)))
    if mech.ROOTFS.id not in ctx.entry_ids:  # no private root: the cgroupfs is covered
        prefix = wire.CGROUPFS_HIDDEN_PREFIX
        needs.append(_Need(repr(prefix + "..."), lambda n: "" if n.startswith(prefix) else None))
    return needs


def _user_limits(params: object, ctx: _Context) -> list[_Need]:
    if "skip_userlimits" in ctx.hooks:
        return [_exact(wire.USER_LIMITS_SKIPPED)]
    percent = int(_fields(params)["share_percent"])

    def judge(note: str) -> str | None:
        noted = wire.user_limits_percent(note)
        if noted is None:
            return None
        return "" if noted == percent else f"it takes {noted}%, the plan {percent}%"

    return [_Need(repr(wire.user_limits_note(percent, "...")), judge)]


def _rootfs(params: object, ctx: _Context) -> list[_Need]:
    if "skip_rootfs" in ctx.hooks:
        return [_exact(wire.ROOTFS_SKIPPED)]
    rootfs: mech.Rootfs = mech.params_of(mech.ROOTFS.id, params)

    def judge(note: str) -> str | None:
        fits = wire.private_root_fits(note, rootfs.mounts)
        if fits is None:
            return None
        return "" if fits else f"it does not show the plan's {len(rootfs.mounts)} mounts in order"

    shown = wire.private_root_note([wire.mount_shown(m) for m in rootfs.mounts])
    return [_Need(repr(shown), judge), _exact(wire.pivot_root_note(rootfs.cwd))]


def _ambient(params: object, ctx: _Context) -> list[_Need]:
    p = _fields(params)
    kept = [0, 1, 2, *sorted(int(fd) for fd in p["keep_fds"] if int(fd) > 2)]
    return [
        _exact(wire.fds_kept_note(kept)),
        _exact(wire.session_note(bool(p.get("tty", False)))),
        _exact(wire.environment_note(len(p["env"]))),
    ]


def _abi_problem(abi: int, floor: int) -> str | None:
    return None if abi >= floor else f"ABI {abi} is below the plan's floor {floor}"


def _scope_problem(scoped: int, scope: Sequence[object]) -> str | None:
    """The domain scopes exactly what the plan scopes (each scope is its own bit)."""
    planned = landlock_facts.scope_bits([str(name) for name in scope])
    if scoped == planned:
        return None
    return f"scoped={scoped:#x}, but the plan scopes {list(scope) or 'nothing'} ({planned:#x})"


def _handled_problem(abi: int, handled: int) -> str | None:
    """A filesystem domain handles every right its ABI can restrict: a narrower mask
    leaves the rest unrestricted (``handled=0x1`` confines execution only)."""
    every = landlock_facts.fs_rights_for_abi(abi)
    if handled == every:
        return None
    return f"handled={handled:#x}, but ABI {abi} restricts {every:#x} and the launcher handles all"


def _landlock(params: object, ctx: _Context, *, v1: bool = False) -> list[_Need]:
    p = _fields(params)
    floor = max(int(p["abi_floor"]), mech.LANDLOCK_ABI_FLOOR)
    planned, inside = len(p["rules"]), len(p.get("inside", ()))

    def judge(note: str) -> str | None:
        domain = wire.parse_landlock(note)
        if domain is None or domain[2] == 0:  # none, or a scope-only domain's
            return None
        abi, rules, handled, scoped = domain
        problem = (
            _abi_problem(abi, floor)
            or _handled_problem(abi, handled)
            or _scope_problem(scoped, p["scope"])
        )
        # One rule per granted path this host has, plus the new root's own (``inside``);
        # rules-v1 launchers counted theirs otherwise (device rules), so only v2 is bound.
        if problem is None and not v1 and not inside <= rules <= planned + inside:
            problem = f"{rules} rules, the plan grants {inside}..{planned + inside}"
        return problem or ""

    return [_Need("a 'landlock abi=... rules=...' filesystem domain note", judge)]


def _landlock_scope(params: object, ctx: _Context) -> list[_Need]:
    scope = _fields(params)["scope"]

    def judge(note: str) -> str | None:
        domain = wire.parse_landlock(note)
        if domain is None or domain[1:3] != (0, 0):
            return None
        return _scope_problem(domain[3], scope) or _abi_problem(domain[0], 1) or ""

    return [_Need("a 'landlock abi=... rules=0 handled=0x0' scope-only domain note", judge)]


def _landlock_net(params: object, ctx: _Context) -> list[_Need]:
    ports = tuple(int(port) for port in _fields(params)["connect_ports"])

    def judge(note: str) -> str | None:
        domain = wire.parse_landlock_net(note)
        if domain is None:
            return None
        return "" if domain[1] == ports else f"ports {domain[1]}, the plan allows {ports}"

    return [_Need(f"a 'landlock abi=... net' note allowing ports {ports}", judge)]


def _seccomp(params: object, ctx: _Context) -> list[_Need]:
    planned = {name: value for name, value in _fields(params).items() if isinstance(value, bool)}

    def judge(note: str) -> str | None:
        flags = wire.parse_seccomp_flags(note)
        if flags is None:
            return None
        if flags != planned:
            return f"its flags {flags}, the plan's {planned}"
        arch = wire.seccomp_arch(note)
        if arch != ctx.arch:
            return f"its filter is for {arch!r}, the run's profile was probed on {ctx.arch!r}"
        weak = wire.seccomp_filter_problem(note)
        if weak is not None:
            return weak
        return seccomp_labels.denial_problem(flags, wire.seccomp_denied(note)) or ""

    return [_Need(f"a seccomp 'denylist installed' note with the flags {planned}", _kept(judge))]


def _kept(judge: Judge) -> Judge:
    """``judge``, remembering its verdict per note: the runs of one plan share their
    requirements (:func:`_requirements`) and mostly their notes' very words, so a judge
    that reads a note's parts runs once per wording, not once per run."""
    verdicts: dict[str, str | None] = {}

    def kept(note: str) -> str | None:
        if note not in verdicts:
            if len(verdicts) >= _KNOWN_MAX:
                verdicts.clear()
            verdicts[note] = judge(note)
        return verdicts[note]

    return kept


Requirement = Callable[[object, _Context], list[_Need]]

_REQUIRED: Mapping[str, Requirement] = {
    mech.USERNS.id: _userns,
    mech.NETNS.id: lambda params, ctx: [_exact(wire.NETNS_CREATED)],
    mech.IPCNS.id: lambda params, ctx: [_exact(wire.IPCNS_CREATED)],
    mech.UTSNS.id: lambda p, ctx: [
        _exact(wire.utsns_note(str(_fields(p)["hostname"]), str(_fields(p)["domainname"])))
    ],
    mech.PIDNS.id: _pidns,
    mech.CGROUP_LEAF.id: _cgroup,
    mech.USER_LIMITS.id: _user_limits,
    mech.NETPROXY.id: lambda p, ctx: [
        _exact(wire.netproxy_note(int(_fields(p)["port"]), len(_fields(p)["allow"])))
    ],
    mech.NETDNS.id: lambda p, ctx: [_exact(wire.netdns_note(int(_fields(p)["port"])))],
    mech.ROOTFS.id: _rootfs,
    mech.OOM_SCORE.id: lambda p, ctx: [_exact(wire.oom_note(int(_fields(p)["score"])))],
    mech.CAPS_DROP.id: lambda params, ctx: [_exact(wire.CAPS_DROPPED)],
    mech.NO_NEW_PRIVS.id: lambda params, ctx: [_exact(wire.NO_NEW_PRIVS_SET)],
    mech.AMBIENT_SCRUB.id: _ambient,
    _AMBIENT_V1: _ambient,
    mech.LANDLOCK.id: _landlock,
    _LANDLOCK_V1: lambda params, ctx: _landlock(params, ctx, v1=True),
    mech.LANDLOCK_SCOPE.id: _landlock_scope,
    mech.LANDLOCK_NET.id: _landlock_net,
    mech.SECCOMP.id: _seccomp,
    _SECCOMP_V1: _seccomp,
}
_POLICY = frozenset({mech.SECCOMP.id, _SECCOMP_V1})  # reported with PolicyPhaseResolved


# -- the check -------------------------------------------------------------------------


def required_ids() -> frozenset[str]:
    """The entry ids that require a note (for the tests and the docs)."""
    return frozenset(_REQUIRED)


def applied_problems(
    lowering: Sequence[LoweringRecord], lines: Sequence[str], rules_version: int, arch: str
) -> list[str]:
    """What is missing from (or contradicted in) a transcript that reached exec."""
    notes = [
        (index, line[len(NOTE_PREFIX) :])
        for index, line in enumerate(lines)
        if line.startswith(NOTE_PREFIX)
    ]
    ctx = _Context(
        frozenset(
            n.removeprefix(wire.DANGER_PREFIX) for _, n in notes if n.startswith(wire.DANGER_PREFIX)
        ),
        rules_version,
        frozenset(record.entry.id for record in lowering),
        arch,
    )
    ready = lines.index(READY_TO_EXEC) if READY_TO_EXEC in lines else len(lines)
    by_text: dict[str, list[int]] = {}
    for index, note in notes:
        by_text.setdefault(note, []).append(index)
    used: set[int] = set()
    problems: list[str] = []
    for entry, after, needs in _requirements(lowering, ctx):
        if isinstance(needs, str):
            problems.append(f"{entry}: its parameters cannot be read ({needs})")
            continue
        start = lines.index(after) if after in lines else ready
        window = range(start + 1, ready)
        for need in needs:
            if need.exact is not None:
                found = [i for i in by_text.get(need.exact, ()) if i in window and i not in used]
                if found:
                    used.add(found[0])
                    continue  # the very text, in its window: nothing to judge
            problem = _judged(need, notes, window, used)
            if problem is not None:
                problems.append(
                    f"{entry}: {problem} (expected after {after}, before {READY_TO_EXEC})"
                )
    return problems


_Requirements = list[tuple[str, str, "list[_Need] | str"]]
_KNOWN: dict[tuple[object, ...], _Requirements] = {}  # runs of one plan need the same notes
_KNOWN_MAX = 256


def _requirements(lowering: Sequence[LoweringRecord], ctx: _Context) -> _Requirements:
    """Each launcher-side entry's id, the state after which its notes come, and its needs
    (or why its parameters cannot be read). A function of the lowering and the context
    alone, so runs of one plan share it (a replay of many runs of few plans builds each
    once); the key is the entries' ids, phases and parameters as written."""
    key = (
        ctx.hooks,
        ctx.rules_version,
        ctx.arch,
        tuple((r.entry.id, r.entry.phase_code, repr(r.params)) for r in lowering),
    )
    known = _KNOWN.get(key)
    if known is not None:
        return known
    built: _Requirements = []
    for record in lowering:
        requirement = _REQUIRED.get(record.entry.id)
        if requirement is None:
            continue  # host-side, or a mechanism that notes nothing before exec
        entry = record.entry.id
        after = state_of(Phase(record.entry.phase_code), policy=entry in _POLICY)
        try:
            built.append((entry, after, requirement(record.params, ctx)))
        except (ContractError, KeyError, TypeError, ValueError) as exc:
            built.append((entry, after, str(exc)))
    if len(_KNOWN) >= _KNOWN_MAX:
        _KNOWN.clear()
    _KNOWN[key] = built
    return built


def _judged(
    need: _Need, notes: Sequence[tuple[int, str]], window: range, used: set[int]
) -> str | None:
    """None when a note in ``window`` fits ``need`` (it is then used); else the problem."""
    contradicted: str | None = None
    for index, note in notes:
        if index not in window or index in used:
            continue
        verdict = need.judge(note)
        if verdict == "":
            used.add(index)
            return None
        if verdict is not None and contradicted is None:
            contradicted = f"the launcher noted {note[:160]!r}, but {verdict}"
    if contradicted is not None:
        return contradicted
    elsewhere = [i for i, note in notes if i not in window and need.judge(note) == ""]
    if elsewhere:
        return f"{need.what} is at line {elsewhere[0]}, outside the phase that applies it"
    return f"no note says it was applied: missing {need.what}"
