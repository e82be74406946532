"""The mount table, read once from /proc/self/mountinfo: where cgroup filesystems live.

Two users: the host, to find which mounted hierarchy a run's cgroup base belongs to, and
the launcher, to find what to cover so the child cannot see any cgroup filesystem. The
cover is the smallest set of mount points that hides every cgroup and cgroup2 mount: the
usual ``/sys/fs/cgroup`` tmpfs when all of them live beneath it, else each mount point.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ["Mount", "cgroup_mount_cover", "mount_table"]

_CGROUP_TYPES = frozenset({"cgroup", "cgroup2"})
_USUAL_PARENT = "/sys/fs/cgroup"


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


@dataclass(frozen=True, slots=True)
class Mount:
    """One mountinfo line: where, which filesystem type, its super options."""

    point: str
    fstype: str
    options: frozenset[str]


def mount_table() -> list[Mount]:
    """This process's mounts, mount points unescaped."""
    result = []
    with open("/proc/self/mountinfo", encoding="utf-8") as handle:
        for line in handle:
            left, _, right = line.partition(" - ")
            fields = left.split(" ")
            if len(fields) < 5 or not right:
                continue
            fstype, _, rest = right.rstrip("\n").partition(" ")
            options = frozenset(rest.partition(" ")[2].split(","))
            result.append(Mount(_unescape(fields[4]), fstype, options))
    return result


def cgroup_mount_cover() -> list[str]:
    """Mount points to cover so that no cgroup filesystem stays visible."""
    mounts = [(m.point, m.fstype) for m in mount_table()]
    cgroup_points = sorted({point for point, fstype in mounts if fstype in _CGROUP_TYPES})
    parent_is_mount = any(point == _USUAL_PARENT for point, _ in mounts)
    if (
        cgroup_points
        and parent_is_mount
        and all(
            point == _USUAL_PARENT or point.startswith(_USUAL_PARENT + os.sep)
            for point in cgroup_points
        )
    ):
        return [_USUAL_PARENT]
    cover: list[str] = []
    for point in cgroup_points:
        if not any(point == c or point.startswith(c.rstrip("/") + "/") for c in cover):
            cover.append(point)
    return cover
