"""Where a path lives by filesystem, not by name: ``/proc/self/mountinfo`` read in full.

A bind mount shows one directory of a filesystem at a second place; two names for the
same bytes. To tell whether one path lies inside another whatever names they go by, each
is turned into a *location*: the device of the filesystem (mountinfo's ``major:minor``)
and the path within that filesystem (the mount's ``root`` joined with the path's part
below the mount point). Two locations on one device nest exactly when their filesystem
paths do.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ["FsLocation", "MountEntry", "fs_location", "mount_entries"]


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as three octal digits."""
    if "\\" not in field:
        return field
    out, index = [], 0
    while index < len(field):
        if field[index] == "\\" and field[index + 1 : index + 4].isdigit():
            out.append(chr(int(field[index + 1 : index + 4], 8)))
            index += 4
        else:
            out.append(field[index])
            index += 1
    return "".join(out)


@dataclass(frozen=True, slots=True)
class MountEntry:
    device: str  # "major:minor"
    root: str  # the directory of the filesystem mounted here
    point: str  # where it is mounted


@dataclass(frozen=True, slots=True)
class FsLocation:
    device: str
    path: str  # within the filesystem, normalised, starting with "/"

    def contains(self, other: FsLocation) -> bool:
        if self.device != other.device:
            return False
        base = self.path.rstrip("/")
        return other.path == self.path or other.path.startswith(base + "/")


def mount_entries() -> list[MountEntry]:
    """The mount table as it is now: read in full each time, parsed only when its text
    differs from the last one parsed (a run reads it several times, unchanged)."""
    global _last
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as handle:
        text = handle.read()
    held = _last
    if held is not None and held[0] == text:
        return list(held[1])
    entries = []
    for line in text.splitlines():
        fields = line.split(" ")
        if len(fields) < 5:
            continue
        entries.append(MountEntry(fields[2], _unescape(fields[3]), _unescape(fields[4])))
    _last = (text, tuple(entries))
    return entries


_last: tuple[str, tuple[MountEntry, ...]] | None = None  # the text last parsed, its entries


def fs_location(path: str, entries: list[MountEntry] | None = None) -> FsLocation | None:
    """The filesystem location of ``path`` (resolved first), or None if no mount has it.

    The last mount listed at the longest matching point is the one on top (the one a
    lookup reaches).
    """
    real = os.path.realpath(path)
    best: MountEntry | None = None
    for entry in entries if entries is not None else mount_entries():
        point = entry.point
        inside = real == point or point == "/" or real.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) >= len(best.point)):
            best = entry
    if best is None:
        return None
    below = os.path.relpath(real, best.point)
    joined = best.root if below == "." else os.path.join(best.root, below)
    return FsLocation(best.device, os.path.normpath(joined))
