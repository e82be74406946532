"""Open a path without following any symbolic link in it (openat2 RESOLVE_NO_SYMLINKS).

Filesystem roots are opened by the host and handed to Landlock as fds. If any component
of a root's path were a symlink, whoever could write its parent directory (an earlier
workload with that root, say) could swap it and re-point the grant anywhere — so a root
must be named by its real path, and the kernel checks that in the same call that opens
it (no check-then-open race).
"""

from __future__ import annotations

import ctypes
import errno
import os

__all__ = ["SymlinkInPath", "open_no_symlinks"]

_SYS_OPENAT2 = 437  # the same number on every architecture
_RESOLVE_NO_SYMLINKS = 0x04
_AT_FDCWD = -100


class SymlinkInPath(OSError):
    """A component of the path is a symbolic link."""


class _OpenHow(ctypes.Structure):
    _fields_ = (("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64))


def open_no_symlinks(path: str, flags: int) -> int:
    """``open(path, flags)``, refusing (SymlinkInPath) if any component is a symlink."""
    libc = ctypes.CDLL(None, use_errno=True)
    how = _OpenHow(flags=flags, mode=0, resolve=_RESOLVE_NO_SYMLINKS)
    fd = libc.syscall(
        _SYS_OPENAT2, _AT_FDCWD, os.fsencode(path), ctypes.byref(how), ctypes.sizeof(how)
    )
    if fd >= 0:
        return int(fd)
    err = ctypes.get_errno()
    if err == errno.ELOOP:
        raise SymlinkInPath(err, f"{path} contains a symbolic link; name its real path")
    raise OSError(err, os.strerror(err), path)
