"""Where the cgroup filesystems are mounted, so the child can cover them.

Read from the launcher's own /proc/self/mountinfo before clone3. The cover is the
smallest set of mount points that hides every cgroup and cgroup2 mount: the usual
``/sys/fs/cgroup`` tmpfs when all of them live beneath it, else each mount point itself.
"""

from __future__ import annotations

import os

__all__ = ["cgroup_mount_cover"]

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


def _mounts() -> list[tuple[str, str]]:
    result = []
    with open("/proc/self/mountinfo", encoding="utf-8") as handle:
        for line in handle:
            left, _, right = line.partition(" - ")
            fields = left.split(" ")
            if len(fields) < 5 or not right:
                continue
            result.append((_unescape(fields[4]), right.split(" ", 1)[0]))
    return result


def cgroup_mount_cover() -> list[str]:
    """Mount points to cover so that no cgroup filesystem stays visible."""
    mounts = _mounts()
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
