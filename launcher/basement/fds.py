"""Descriptor checks: what an fd really is (fstat, F_GETFL, fstatfs), and fd flags.

The launcher trusts a slot only after the kernel confirms the fd has the kind and access
mode the plan declared, and — for cgroup roles — lives on the right cgroup filesystem.
"""

from __future__ import annotations

import fcntl
import os
import stat
from dataclasses import dataclass

from bvisor.launcher.basement import window

__all__ = [
    "CGROUP2_SUPER_MAGIC",
    "CGROUP_SUPER_MAGIC",
    "FdFacts",
    "fs_type",
    "inspect",
    "set_cloexec",
]

CGROUP2_SUPER_MAGIC = 0x63677270
CGROUP_SUPER_MAGIC = 0x27E0EB

_KINDS = {
    stat.S_IFREG: "Regular",
    stat.S_IFDIR: "Directory",
    stat.S_IFCHR: "CharDevice",
    stat.S_IFIFO: "Fifo",
    stat.S_IFSOCK: "Socket",
    stat.S_IFBLK: "BlockDevice",
    stat.S_IFLNK: "Symlink",
}


@dataclass(frozen=True, slots=True)
class FdFacts:
    """What the kernel says about one fd."""

    kind: str
    access: str  # "read", "write", "read_write" or "path"

    @property
    def writable(self) -> bool:
        return self.access in ("write", "read_write")


def inspect(fd: int) -> FdFacts:
    """fstat + F_GETFL facts for ``fd`` (OSError if it is not open)."""
    mode = os.fstat(fd).st_mode
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    if flags & os.O_PATH:
        access = "path"
    else:
        access = {os.O_RDONLY: "read", os.O_WRONLY: "write", os.O_RDWR: "read_write"}.get(
            flags & os.O_ACCMODE, "unknown"
        )
    return FdFacts(kind=_KINDS.get(stat.S_IFMT(mode), "Unknown"), access=access)


def fs_type(fd: int) -> int:
    """statfs f_type of the filesystem ``fd`` lives on."""
    result = int(window.load().lib.bv_fstatfs_type(fd))
    if result < 0:
        raise OSError(-result, os.strerror(-result))
    return result


def set_cloexec(fd: int) -> None:
    """Mark ``fd`` close-on-exec."""
    os.set_inheritable(fd, False)
