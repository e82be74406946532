"""The launcher's notes that another process reads: one writer and one reader per note.

The launcher writes ``# `` notes on its control channel (:mod:`bvisor.contract.transcript`);
the host reads some of them while the run goes on (the workload's pid, its exit status and
rusage, the launcher's identity, a refusal's code, a fault on a missing kernel feature, the
PID namespace's init to kill at a deadline), replay reads some from the ledger (the exit
status, a test hook's DANGER mark, a SIGSYS kill), and ``bvisor run`` explains a refusal or a
fault from them. The format of each such note was written by the launcher and parsed again
by every reader; a changed word on one side would have silently turned a fact into
"unknown". Here each has one formatter (the launcher's) and the readers' parsers, side by
side, in the pure bottom layer every side may import. The text is the wire: a note's
wording recorded in a ledger stays as it was, so a formatter here is never reworded.

The notes that say a mechanism was applied (the private root, Landlock, seccomp, the
namespaces, the cgroup placement, the privilege drops, the scrub) are read too: replay
requires, for a run that reached exec, the note of every mechanism its plan scheduled
(:mod:`bvisor.replay.applied`), so their formatters and parsers are here as well. Notes
that only a person reads (the user rlimits, a file mount read back) stay with their
mechanism; denial notes live in :mod:`bvisor.contract.denials`, output notes in
:mod:`bvisor.contract.outputs`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from bvisor.contract import mechanisms as mech

__all__ = [
    "CAPS_DROPPED",
    "CGROUPFS_HIDDEN_PREFIX",
    "CORE_LIMIT_SET",
    "DANGER_PREFIX",
    "EXIT_PREFIX",
    "INIT_KILLED",
    "IPCNS_CREATED",
    "NETNS_CREATED",
    "NO_NEW_PRIVS_SET",
    "PIDNS_CREATED",
    "PIDNS_SKIPPED",
    "ROOTFS_SKIPPED",
    "RUSAGE_PREFIX",
    "UNAVAILABLE_MECHANISMS",
    "USER_LIMITS_SKIPPED",
    "UTSNS_CHILD_GONE",
    "cgroup_placed_note",
    "cgroupfs_hidden_note",
    "confinement_unavailable",
    "danger_note",
    "environment_note",
    "exit_note",
    "fault_note",
    "fds_kept_note",
    "id_map",
    "identity_note",
    "init_pid",
    "internal_fault_note",
    "is_refusal",
    "landlock_net_note",
    "landlock_note",
    "mount_shown",
    "netdns_note",
    "netproxy_note",
    "noted_exit",
    "noted_workload_pid",
    "oom_note",
    "parse_cgroup_placed",
    "parse_fault",
    "parse_identity",
    "parse_int_note",
    "parse_landlock",
    "parse_landlock_net",
    "parse_seccomp_flags",
    "pid_note",
    "pivot_root_note",
    "private_root_fits",
    "private_root_note",
    "refusal_code",
    "refused_note",
    "rusage_note",
    "rusage_text",
    "seccomp_arch",
    "seccomp_denied",
    "seccomp_filter_problem",
    "seccomp_note",
    "session_note",
    "user_limits_note",
    "user_limits_percent",
    "userns_note",
    "utsns_note",
]

# -- the workload's pid, exit status and rusage (launcher -> host, replay) --------------

EXIT_PREFIX: Final = "workload exit "
RUSAGE_PREFIX: Final = "workload rusage "
INIT_KILLED: Final = "workload ended with its PID namespace: init was killed"
_INIT_PID: Final = "init pid="
_WORKLOAD_PID: Final = "workload pid="
_INT_NOTE: Final = re.compile(r"^workload (pid|exit code|exit signal)=(-?\d+)\Z")


def pid_note(pid: int, *, init: bool) -> str:
    """The child's pid: the PID namespace's init, or (without one) the workload itself."""
    return f"{_INIT_PID if init else _WORKLOAD_PID}{pid}"


def exit_note(*, code: int | None = None, signal: int | None = None) -> str:
    """How the workload ended: ``workload exit signal=N`` or ``workload exit code=N``."""
    if (code is None) == (signal is None):
        raise ValueError("exit_note: exactly one of code and signal")
    return f"{EXIT_PREFIX}signal={signal}" if signal is not None else f"{EXIT_PREFIX}code={code}"


def rusage_note(utime_us: int, stime_us: int, maxrss_kb: int) -> str:
    """The workload's resource usage as ``wait4`` gave it."""
    return f"{RUSAGE_PREFIX}utime_us={utime_us} stime_us={stime_us} maxrss_kb={maxrss_kb}"


def parse_int_note(note: str) -> tuple[str, int] | None:
    """``("pid" | "exit code" | "exit signal", N)`` for a workload pid or exit note."""
    match = _INT_NOTE.match(note)
    return None if match is None else (match.group(1), int(match.group(2)))


def rusage_text(note: str) -> str | None:
    """The ``key=value ...`` text of a rusage note, or None for any other note."""
    return note[len(RUSAGE_PREFIX) :] if note.startswith(RUSAGE_PREFIX) else None


def noted_workload_pid(note: str) -> str | None:
    """The text after ``workload pid=``, as written (replay compares it exactly)."""
    return note[len(_WORKLOAD_PID) :] if note.startswith(_WORKLOAD_PID) else None


def noted_exit(note: str) -> str | None:
    """``code=N`` or ``signal=N`` from an exit note, or None for any other note."""
    return note[len(EXIT_PREFIX) :] if note.startswith(EXIT_PREFIX) else None


def init_pid(note: str) -> int | None:
    """The PID namespace init's pid from its note, or None for any other note."""
    if not note.startswith(_INIT_PID):
        return None
    digits = note[len(_INIT_PID) :]
    return int(digits) if digits.isascii() and digits.isdigit() else None


# -- the launcher's identity (launcher -> host) ------------------------------------------

_IDENTITY: Final = re.compile(r"^identity code=([0-9a-f]+) entry=([0-9a-f]+|unknown)\Z")


def identity_note(code: str, entry: str) -> str:
    """The digests the launcher measured: its code and its entry file (or ``unknown``)."""
    return f"identity code={code} entry={entry}"


def parse_identity(note: str) -> tuple[str, str] | None:
    """``(code, entry)`` from an identity note, or None for any other note."""
    match = _IDENTITY.match(note)
    return None if match is None else (match.group(1), match.group(2))


# -- refusals and faults (launcher -> host, bvisor run) ----------------------------------

_REFUSED: Final = "refused code="
_FAULT: Final = re.compile(r"^fault mechanism=(\w+) errno=(\d+) name=(\w+)")
# A fault with one of these errnos on one of these mechanisms means the kernel lacks the
# primitive (the host then says "unavailable", not "failed").
UNAVAILABLE_MECHANISMS: Final = (
    "landlock", "seccomp", "userns", "netns", "namespace", "cgroup", "clone3",
    "no_new_privs", "pdeathsig",
)  # fmt: skip
_UNAVAILABLE_ERRNOS: Final = ("ENOSYS", "EOPNOTSUPP", "ENOTSUP")


def refused_note(code: str, detail: str) -> str:
    """The launcher refused the plan or a handle (nothing was created)."""
    return f"{_REFUSED}{code}: {detail}"


def refusal_code(note: str) -> str | None:
    """The code of a refusal note, or None for any other note."""
    return note[len(_REFUSED) :].split(":", 1)[0] if note.startswith(_REFUSED) else None


def is_refusal(note: str) -> bool:
    """Whether ``note`` is the launcher's refusal note."""
    return note.startswith(_REFUSED)


def fault_note(mechanism: str, errno: int, name: str, detail: str) -> str:
    """An OS operation of ``mechanism`` failed with ``errno`` (``name``: its symbol)."""
    return f"fault mechanism={mechanism} errno={errno} name={name}: {detail}"


def internal_fault_note(exc: BaseException) -> str:
    """The launcher met something it did not foresee (it fails closed)."""
    return f"fault mechanism=launcher internal error: {exc!r}"


def parse_fault(note: str) -> tuple[str, int, str] | None:
    """``(mechanism, errno, name)`` of a fault note, or None for any other note."""
    match = _FAULT.match(note)
    return None if match is None else (match.group(1), int(match.group(2)), match.group(3))


def confinement_unavailable(note: str) -> bool:
    """A fault note saying the kernel lacks a confinement primitive (ENOSYS/EOPNOTSUPP)."""
    fault = parse_fault(note)
    return (
        fault is not None and fault[0] in UNAVAILABLE_MECHANISMS and fault[2] in _UNAVAILABLE_ERRNOS
    )


# -- test hooks (launcher -> replay) -----------------------------------------------------

DANGER_PREFIX: Final = "DANGER test hook active: "


def danger_note(hook: str) -> str:
    """The launcher honours ``hook`` (a test that skips a mechanism): said before anything."""
    return f"{DANGER_PREFIX}{hook}"


# -- what a mechanism applied (launcher -> replay) ---------------------------------------
# Each is written by the mechanism's module under ``launcher/process/mechanisms/`` once
# its phase's ops are done, reported after the phase state that covers it
# (:func:`bvisor.contract.transcript.state_of`); replay requires them for a run that
# reached exec. A parser accepts the wording every released launcher wrote.

NETNS_CREATED: Final = "netns created"
IPCNS_CREATED: Final = "ipc namespace created"
PIDNS_CREATED: Final = "pid namespace created: a C init is pid 1, the workload pid 2"
PIDNS_SKIPPED: Final = "pid namespace skipped"  # hook skip_pidns
ROOTFS_SKIPPED: Final = "private root skipped"  # hook skip_rootfs
USER_LIMITS_SKIPPED: Final = "user limits skipped"  # hook skip_userlimits
NO_NEW_PRIVS_SET: Final = "no_new_privs set"
CAPS_DROPPED: Final = (
    "capabilities dropped: bounding, ambient, effective, permitted, inheritable; "
    "securebits noroot+no_setuid_fixup+no_ambient_raise locked"
)
CGROUPFS_HIDDEN_PREFIX: Final = "cgroupfs hidden: "
_PRIVATE_ROOT: Final = "private root: "
_ABSENT: Final = "(absent here)"
_CGROUP: Final = re.compile(r"^cgroup placed (v1|v2) slot=(\d+)(?: \((\w+)\))?\Z")
_LANDLOCK: Final = re.compile(
    r"^landlock abi=(\d+) rules=(\d+) handled=0x([0-9a-f]+) scoped=0x([0-9a-f]+)\Z"
)
_LANDLOCK_NET: Final = re.compile(r"^landlock abi=(\d+) net: tcp connect only to port ([\d,]*)\Z")
_SECCOMP: Final = "seccomp denylist installed "
_SECCOMP_FLAG: Final = re.compile(r"(\w+)=([01])\Z")
_USER_LIMITS: Final = re.compile(r"^user limits \((\d+)% of this user's\): ")


def id_map(outside: int) -> str:
    """One line of a user namespace's id map: id 0 inside is ``outside``."""
    return f"0 {outside} 1"


def userns_note(uid: int, gid: int) -> str:
    """The maps the launcher writes into the child's user namespace."""
    return f"userns uid_map={id_map(uid)!r} gid_map={id_map(gid)!r} setgroups=deny"


# The child had run and ended before the launcher could look at its UTS namespace from
# outside (no PID namespace's init holds it): the window's own check stands alone.
UTSNS_CHILD_GONE: Final = "uts namespace: the child ended before it was looked at from outside"


def utsns_note(hostname: str, domainname: str) -> str:
    """The workload's own UTS namespace and the names the child set there (and read back)."""
    return f"uts namespace created: hostname={hostname} domainname={domainname}"


def cgroup_placed_note(hierarchy: str, slot: int, controller: str | None = None) -> str:
    """The child is born in (v2) or joins (v1, one per ``controller``) the run's leaf."""
    return f"cgroup placed {hierarchy} slot={slot}" + (f" ({controller})" if controller else "")


def parse_cgroup_placed(note: str) -> tuple[str, int, str | None] | None:
    """``(hierarchy, slot, controller)``; rules-v1 launchers named no v1 controller."""
    match = _CGROUP.match(note)
    return None if match is None else (match.group(1), int(match.group(2)), match.group(3))


def cgroupfs_hidden_note(paths: Sequence[str]) -> str:
    """Without a private root: the host's cgroup filesystems covered in the child."""
    return (
        f"{CGROUPFS_HIDDEN_PREFIX}private mount namespace, empty read-only tmpfs over "
        + ", ".join(paths)
    )


def user_limits_note(percent: int, shares: str) -> str:
    """The per-user kernel object limits written into the workload's user namespace."""
    return f"user limits ({percent}% of this user's): {shares}"


def user_limits_percent(note: str) -> int | None:
    """The share a user limits note names, or None for any other note."""
    match = _USER_LIMITS.match(note)
    return None if match is None else int(match.group(1))


def mount_shown(mount: mech.Mount, *, present: bool = True) -> str:
    """How the private root note shows one mount (a bind this host lacks: ``present``
    false)."""
    if isinstance(mount, mech.BindMount):
        return f"{mount.dest}={mount.source if present else _ABSENT}" + (
            f":{mount.access}" if present else ""
        )
    if isinstance(mount, mech.DevMount):
        return f"{mount.dest}=dev({','.join(mount.devices)}{',pts' if mount.pts else ''})"
    if isinstance(mount, mech.TmpfsMount):
        return f"{mount.dest}=tmpfs({mount.size_bytes})"
    if isinstance(mount, mech.DirMount):
        return f"{mount.dest}=dir"
    if isinstance(mount, mech.FileMount):
        return f"{mount.dest}=file({len(mount.content.encode())} bytes)"
    return f"{mount.dest}=proc"


def private_root_note(shown: Sequence[str]) -> str:
    """The mounts of the private root, in the order they were made."""
    return _PRIVATE_ROOT + " ".join(shown)


def private_root_fits(note: str, mounts: Sequence[mech.Mount]) -> bool | None:
    """Whether a private root note shows exactly ``mounts`` in order (each bind as bound
    or as absent here); None when ``note`` is no private root note."""
    if not note.startswith(_PRIVATE_ROOT):
        return None
    rest = note[len(_PRIVATE_ROOT) :]
    for position, mount in enumerate(mounts):
        tail = "" if position == len(mounts) - 1 else " "
        ways = [mount_shown(mount)]
        if isinstance(mount, mech.BindMount):
            ways.append(mount_shown(mount, present=False))
        way = next((w + tail for w in ways if rest.startswith(w + tail)), None)
        if way is None:
            return False
        rest = rest[len(way) :]
    return rest == ""


def pivot_root_note(cwd: str) -> str:
    """The child pivoted into the private root and detached the host's tree."""
    return f"pivot_root: the old root detached; cwd {cwd}"


def oom_note(score: int) -> str:
    """The child's ``oom_score_adj``, written at the rendezvous."""
    return f"oom_score_adj={score}"


def fds_kept_note(kept: Sequence[int]) -> str:
    """The fds that survive the scrub (stdio first)."""
    return "fds kept " + ",".join(str(fd) for fd in kept)


def session_note(tty: bool) -> str:
    """The workload's session: a new one, with its own pty as terminal when ``tty``."""
    return (
        "controlling terminal: the workload's own pty"
        if tty
        else "new session: no controlling terminal"
    )


def environment_note(count: int) -> str:
    """The workload's environment is exactly the planned ``count`` entries."""
    return f"environment exact: {count} entries"


def landlock_note(abi: int, rules: int, handled: int, scoped: int) -> str:
    """A filesystem (or scope-only: no rules, nothing handled) Landlock domain."""
    return f"landlock abi={abi} rules={rules} handled={handled:#x} scoped={scoped:#x}"


def parse_landlock(note: str) -> tuple[int, int, int, int] | None:
    """``(abi, rules, handled, scoped)`` of a Landlock domain note, or None."""
    match = _LANDLOCK.match(note)
    if match is None:
        return None
    abi, rules, handled, scoped = match.groups()
    return int(abi), int(rules), int(handled, 16), int(scoped, 16)


def landlock_net_note(abi: int, ports: Sequence[int]) -> str:
    """The network Landlock domain: TCP connect handled, only ``ports`` allowed."""
    return f"landlock abi={abi} net: tcp connect only to port {','.join(map(str, ports))}"


def parse_landlock_net(note: str) -> tuple[int, tuple[int, ...]] | None:
    """``(abi, ports)`` of a network Landlock note, or None."""
    match = _LANDLOCK_NET.match(note)
    if match is None:
        return None
    ports = tuple(int(p) for p in match.group(2).split(",") if p)
    return int(match.group(1)), ports


# The launcher's note that the run's core dump limit is 1 (no core_pattern helper runs).
CORE_LIMIT_SET: Final = "core dump limit 1: no core file, no core_pattern helper"


def seccomp_note(
    flags: Sequence[tuple[str, bool]], arch: str, instructions: int, denied: Sequence[str]
) -> str:
    """The filter the child installs last: its parameters' flags, then what it is."""
    shown = " ".join(f"{name}={int(value)}" for name, value in flags)
    return (
        f"{_SECCOMP}{shown} arch={arch} badarch=kill_process instructions={instructions} "
        f"denied={','.join(denied) or 'none'}"
    )


def _seccomp_parts(note: str) -> tuple[dict[str, str], str | None]:
    """A seccomp note's ``name=value`` words before its list, and the list (None: none)."""
    head, denies, denied = note.partition(" denied=")
    words = dict(word.split("=", 1) for word in head.split(" ") if "=" in word)
    return words, denied if denies else None


def seccomp_filter_problem(note: str) -> str | None:
    """What in a seccomp note says its filter is weaker than every launcher installs: a
    foreign architecture let through (``badarch`` other than ``kill_process``), no
    instructions, or nothing denied. None when it says none of that."""
    words, denied = _seccomp_parts(note)
    if words.get("badarch") != "kill_process":
        return f"badarch={words.get('badarch')!r}: another architecture's calls are let through"
    if not words.get("instructions", "").isdigit() or int(words["instructions"]) <= 0:
        return "it installed no instructions"
    if denied in (None, "", "none"):
        return "it denies nothing"
    return None


def seccomp_arch(note: str) -> str | None:
    """The architecture a seccomp note's filter was built for (its ``arch=``), or None."""
    return _seccomp_parts(note)[0].get("arch")


def seccomp_denied(note: str) -> str:
    """A seccomp note's ``denied=`` list as written (``""`` when it has none)."""
    return _seccomp_parts(note)[1] or ""


def parse_seccomp_flags(note: str) -> dict[str, bool] | None:
    """The flags a seccomp note states (every ``name=0|1`` before ``arch=``), or None.

    Rules-v1 launchers stated two (``deny_new_tasks``, ``deny_sockets``), later ones five:
    each is its entry's parameters, so the flags are compared with those, whatever they are.
    """
    if not note.startswith(_SECCOMP):
        return None
    flags: dict[str, bool] = {}
    for word in note[len(_SECCOMP) :].split(" "):
        if word.startswith("arch="):
            return flags
        match = _SECCOMP_FLAG.match(word)
        if match is None or match.group(1) in flags:
            return None
        flags[match.group(1)] = match.group(2) == "1"
    return None


def netproxy_note(port: int, allowed: int) -> str:
    """The allow list's listener the child makes for the host's proxy."""
    return (
        f"netproxy: loopback up, listener 127.0.0.1:{port} for the host's proxy; "
        f"{allowed} allow list entries"
    )


def netdns_note(port: int) -> str:
    """The allow list's resolver socket the child makes for the host."""
    return f"netdns: resolver socket udp 127.0.0.1:{port} for the host"
