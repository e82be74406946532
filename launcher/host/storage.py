"""Witness storage: how much the writable roots grew over a run, or say it cannot.

No mechanism in this backend caps disk use, so a storage budget is witnessed: the bytes
allocated under the run's write roots (``st_blocks``, so sparse files count what they
hold, hard links once) are summed before the workload starts and after the run tree is
gone, and the growth is the observation. The walk stays on each root's own filesystem and
never follows a symlink (the workload made them); it goes by directory fd, and a
directory or entry it cannot read makes it *unavailable* (a name past ``PATH_MAX`` or a
mode of 000 would otherwise hide what is below). It is bounded — in entries and in time
— because the workload decides how many files there are: a walk that runs out says
*unavailable*, never a partial (low) sum.

What it does not see: space freed again before the run ended (net growth only), and
writes outside the write roots (a private tmpfs is memory, charged to the run's cgroup).
"""

from __future__ import annotations

import errno
import os
import stat
import time
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "MAX_DEPTH",
    "MAX_ENTRIES",
    "MAX_SECONDS",
    "StorageSample",
    "close_roots",
    "open_roots",
    "sample_open_roots",
    "sample_storage",
]

MAX_ENTRIES = 50_000
MAX_SECONDS = 0.5
# Directories deeper than this make the walk unavailable: it holds one fd per level.
MAX_DEPTH = 256


@dataclass(frozen=True, slots=True)
class StorageSample:
    """Allocated bytes under the roots, or why they could not be counted."""

    allocated: int | None
    why_not: str | None = None


class _CannotCount(Exception):
    """The walk cannot see everything below a root: the sample is unavailable."""


class _Walk:
    """One bounded walk by directory fd (never by a path the workload could lengthen past
    ``PATH_MAX``); anything below a root it cannot list or stat, except an entry that is
    gone, makes the whole sample unavailable — the workload chooses names and modes, so a
    skipped directory would be a low number, not a gap."""

    def __init__(self, max_entries: int, max_seconds: float) -> None:
        self.until = time.monotonic() + max_seconds
        self.max_entries = max_entries
        self.max_seconds = max_seconds
        self.seen: set[tuple[int, int]] = set()
        self.total = 0
        self.entries = 0

    def directory(self, fd: int, dev: int, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise _CannotCount(f"directories nested deeper than {MAX_DEPTH}")
        below: list[str] = []
        try:
            listing = os.scandir(fd)
        except OSError as exc:
            raise _CannotCount(f"a directory could not be listed ({_name(exc)})") from None
        with listing:
            for entry in listing:
                self.entries += 1
                if self.entries > self.max_entries:
                    raise _CannotCount(f"more than {self.max_entries} entries to count")
                if self.entries % 1024 == 0 and time.monotonic() > self.until:
                    raise _CannotCount(f"counting took over {self.max_seconds:g}s")
                try:
                    info = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue  # removed meanwhile
                except OSError as exc:
                    raise _CannotCount(f"an entry could not be read ({_name(exc)})") from None
                key = (info.st_dev, info.st_ino)
                if key in self.seen:
                    continue
                self.seen.add(key)
                self.total += info.st_blocks * 512
                if stat.S_ISDIR(info.st_mode) and info.st_dev == dev:
                    below.append(entry.name)
        for name in below:
            try:
                child = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise _CannotCount(f"a directory could not be opened ({_name(exc)})") from None
            try:
                self.directory(child, dev, depth + 1)
            finally:
                os.close(child)


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _name(exc: OSError) -> str:
    return errno.errorcode.get(exc.errno or 0, "error")


def open_roots(roots: Iterable[str]) -> tuple[list[int], str | None]:
    """A directory fd of each root (one that is not a directory is skipped), or, with
    none open, why a root cannot be.

    The run's samples go by these fds, opened before the workload starts: a root inside
    another write root can be renamed away by the workload and its path given to a
    symlink, and a root reopened by path after the run would then count the link's
    target, a directory outside every root."""
    opened: list[int] = []
    for root in roots:
        try:
            opened.append(os.open(root, _DIR_FLAGS))
        except NotADirectoryError:
            continue
        except OSError as exc:
            close_roots(opened)
            return [], f"{root}: {exc.strerror}"
    return opened, None


def close_roots(fds: Iterable[int]) -> None:
    for fd in fds:
        os.close(fd)


def sample_storage(
    roots: Iterable[str], *, max_entries: int = MAX_ENTRIES, max_seconds: float = MAX_SECONDS
) -> StorageSample:
    """Sum the allocated bytes below every root (each inode once), within the bounds."""
    fds, why = open_roots(roots)
    if why is not None:
        return StorageSample(None, why)
    try:
        return sample_open_roots(fds, max_entries=max_entries, max_seconds=max_seconds)
    finally:
        close_roots(fds)


def sample_open_roots(
    fds: Iterable[int], *, max_entries: int = MAX_ENTRIES, max_seconds: float = MAX_SECONDS
) -> StorageSample:
    """:func:`sample_storage` of roots already open (:func:`open_roots`)."""
    walk = _Walk(max_entries, max_seconds)
    for fd in fds:
        try:
            walk.directory(fd, os.fstat(fd).st_dev, 0)
        except _CannotCount as exc:
            return StorageSample(None, str(exc))
    return StorageSample(walk.total)
