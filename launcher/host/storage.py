"""Witness storage: how much the writable roots grew over a run, or say it cannot.

No mechanism in this backend caps disk use, so a storage budget is witnessed: the bytes
allocated under the run's write roots (``st_blocks``, so sparse files count what they
hold, hard links once) are summed before the workload starts and after the run tree is
gone, and the growth is the observation. The walk stays on each root's own filesystem and
never follows a symlink (the workload made them). It is bounded — in entries and in time
— because the workload decides how many files there are: a walk that runs out says
*unavailable*, never a partial (low) sum.

What it does not see: space freed again before the run ended (net growth only), and
writes outside the write roots (a private tmpfs is memory, charged to the run's cgroup).
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["MAX_ENTRIES", "MAX_SECONDS", "StorageSample", "sample_storage"]

MAX_ENTRIES = 50_000
MAX_SECONDS = 0.5


@dataclass(frozen=True, slots=True)
class StorageSample:
    """Allocated bytes under the roots, or why they could not be counted."""

    allocated: int | None
    why_not: str | None = None


def sample_storage(
    roots: Iterable[str], *, max_entries: int = MAX_ENTRIES, max_seconds: float = MAX_SECONDS
) -> StorageSample:
    """Sum the allocated bytes below every root (each inode once), within the bounds."""
    until = time.monotonic() + max_seconds
    seen: set[tuple[int, int]] = set()
    total = 0
    entries = 0
    for root in roots:
        try:
            top = os.lstat(root)
        except OSError as exc:
            return StorageSample(None, f"{root}: {exc.strerror}")
        if not stat.S_ISDIR(top.st_mode):
            continue
        stack = [root]
        while stack:
            directory = stack.pop()
            try:
                listing = os.scandir(directory)
            except OSError:
                continue  # removed meanwhile, or unreadable: nothing the run owns there
            with listing:
                for entry in listing:
                    entries += 1
                    if entries > max_entries:
                        return StorageSample(None, f"more than {max_entries} entries to count")
                    if entries % 1024 == 0 and time.monotonic() > until:
                        return StorageSample(None, f"counting took over {max_seconds:g}s")
                    try:
                        info = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    key = (info.st_dev, info.st_ino)
                    if key in seen:
                        continue
                    seen.add(key)
                    total += info.st_blocks * 512
                    if stat.S_ISDIR(info.st_mode) and info.st_dev == top.st_dev:
                        stack.append(entry.path)
    return StorageSample(total)
