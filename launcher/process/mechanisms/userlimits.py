"""linux.userns.limits.v1: the workload takes at most a share of its user's kernel objects.

inotify instances and watches and fanotify groups and marks are counted per user, and a
user namespace's own limit starts unlimited, so a workload could exhaust what its user has
and starve the user's other programs until the run ends. The launcher reads each limit of
its own user namespace (``/proc/sys/user/max_*``, the one the workload's objects are also
charged against), takes ``share_percent`` of it (at least 1), and the child writes those
into its new user namespace (``userlimits.c``) before anything else runs there. A limit
this kernel does not have is left out and said so in the notes. Hook ``skip_userlimits``
leaves the workload's namespace unlimited.
"""

from __future__ import annotations

import errno
import os

from bvisor.contract import mechanisms as mech
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
        program.note(phase, "user limits skipped")
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
    program.add_op("userlimits", args, phase, mech.USER_LIMITS.id)
    shares = ", ".join(
        f"{name.removeprefix('max_')}={value} of {own}" for name, value, own in chosen
    )
    program.note(phase, f"user limits ({params.share_percent}% of this user's): {shares}")
    if absent:
        program.note(phase, f"user limits this kernel does not have: {', '.join(absent)}")
