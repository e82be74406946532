"""linux.userns.limits.v1: the workload takes at most a share of its user's kernel objects.

inotify instances and watches and fanotify groups and marks are counted per user, and a
user namespace's own limit starts unlimited, so a workload could exhaust what its user has
and starve the user's other programs until the run ends. The launcher reads each limit of
its own user namespace (``/proc/sys/user/max_*``, the one the workload's objects are also
charged against), takes ``share_percent`` of it (at least 1), and the child writes those
into its new user namespace (``userlimits.c``) before anything else runs there. A limit
this kernel does not have is left out and said so in the notes.

The same holds for the resource limits the kernel counts per user across namespaces
(:data:`RLIMITS`: processes, queued signals, POSIX message queue bytes, locked shared
memory): each is charged at every level up to the host's, where the user's other programs
are checked against their own limit, so a workload queueing signals until refused left its
user (root included) unable to queue a signal or create a POSIX timer anywhere on the host.
The child sets each of these limits (soft and hard) to ``share_percent`` of the launcher's
soft limit; one the launcher has unlimited stays so (nothing of the user's to exhaust).
Hook ``skip_userlimits`` leaves the workload's namespace and limits as they were.
"""

from __future__ import annotations

import errno
import os
import resource

from bvisor.contract import mechanisms as mech
from bvisor.contract import notes
from bvisor.contract.lowering import Phase
from bvisor.contract.mechanisms import UserLimits
from bvisor.launcher.process.program import Fault, Program

__all__ = ["LIMITS", "prepare"]

# The per-user kernel objects a workload could otherwise take all of (/proc/sys/user/).
LIMITS = (
    "max_inotify_instances",
    "max_inotify_watches",
    "max_fanotify_groups",
    "max_fanotify_marks",
)
_SYSCTL = "/proc/sys/user"
# The resource limits charged per user at every user-namespace level (kernel ucounts).
RLIMITS = (
    ("NPROC", resource.RLIMIT_NPROC),
    ("SIGPENDING", resource.RLIMIT_SIGPENDING),
    ("MSGQUEUE", resource.RLIMIT_MSGQUEUE),
    ("MEMLOCK", resource.RLIMIT_MEMLOCK),
)


def _own_limit(name: str) -> int | None:
    try:
        with open(os.path.join(_SYSCTL, name), encoding="ascii") as handle:
            return int(handle.read().strip())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise Fault("userlimits", errno.EIO, f"read {name}: {exc}") from None


def prepare(program: Program, phase: Phase, params: UserLimits) -> None:
    if program.skipped("skip_userlimits"):
        program.note(phase, notes.USER_LIMITS_SKIPPED)
        return
    chosen: list[tuple[str, int, int]] = []
    absent: list[str] = []
    for name in LIMITS:
        own = _own_limit(name)
        if own is None:
            absent.append(name)
            continue
        chosen.append((name, max(1, own * params.share_percent // 100), own))
    args = program.new("struct bv_userlimits_args *")
    args.launcher_userns_ino = os.stat("/proc/self/ns/user").st_ino
    args.n_limits = len(chosen)
    names = [program.cstr(name) for name, _, _ in chosen]
    args.names = program.new("const char *[]", names)
    args.values = program.new("long long[]", [value for _, value, _ in chosen])
    capped, unlimited = _rlimit_shares(params.share_percent)
    args.n_rlimits = len(capped)
    args.rlimits = program.new("int[]", [number for _, number, _, _ in capped])
    args.rlimit_values = program.new("unsigned long long[]", [share for _, _, share, _ in capped])
    program.add_op("userlimits", args, phase, mech.USER_LIMITS.id)
    shares = ", ".join(
        f"{name.removeprefix('max_')}={value} of {own}" for name, value, own in chosen
    )
    program.note(phase, notes.user_limits_note(params.share_percent, shares))
    rlimits = ", ".join(f"{name}={share} of {own}" for name, _, share, own in capped)
    program.note(
        phase,
        f"user rlimits ({params.share_percent}% of this user's soft limit): {rlimits or 'none'}"
        + (f"; unlimited, left so: {', '.join(unlimited)}" if unlimited else ""),
    )
    if absent:
        program.note(phase, f"user limits this kernel does not have: {', '.join(absent)}")


def _rlimit_shares(percent: int) -> tuple[list[tuple[str, int, int, int]], list[str]]:
    """(name, resource, share, own soft limit) for each of :data:`RLIMITS` the launcher has
    a finite soft limit for; the names of those it has unlimited."""
    capped: list[tuple[str, int, int, int]] = []
    unlimited: list[str] = []
    for name, number in RLIMITS:
        soft, _hard = resource.getrlimit(number)
        if soft == resource.RLIM_INFINITY:
            unlimited.append(name)
        else:
            capped.append((name, number, max(1, soft * percent // 100), soft))
    return capped, unlimited
