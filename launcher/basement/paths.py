"""Open a path without following any symbolic link in it (openat2 RESOLVE_NO_SYMLINKS).

Filesystem roots are opened by the host and handed to Landlock as fds. If any component
of a root's path were a symlink, whoever could write its parent directory (an earlier
workload with that root, say) could swap it and re-point the grant anywhere — so a root
must be named by its real path, and the kernel checks that in the same call that opens
it (no check-then-open race).

:func:`openat2` is the general call, relative to a directory fd: the outputs walk opens
every entry of a dead run's roots with it (``RESOLVE_BENEATH`` so nothing resolves above
the directory, no symlink or magic link followed, no mount crossed), and
:func:`rename_noreplace` moves a committed directory into place without ever replacing
one that is there.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os

__all__ = [
    "RESOLVE_BENEATH",
    "RESOLVE_NO_MAGICLINKS",
    "RESOLVE_NO_SYMLINKS",
    "RESOLVE_NO_XDEV",
    "SymlinkInPath",
    "open_no_symlinks",
    "openat2",
    "rename_noreplace",
]

_SYS_OPENAT2 = 437  # the same number on every architecture
RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
_RESOLVE_NO_SYMLINKS = RESOLVE_NO_SYMLINKS
_AT_FDCWD = -100
_RENAME_NOREPLACE = 1


class SymlinkInPath(OSError):
    """A component of the path is a symbolic link."""


@functools.cache
def _libc() -> ctypes.CDLL:
    """The C library, loaded once (a walk opens thousands of entries)."""
    return ctypes.CDLL(None, use_errno=True)


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


def openat2(dirfd: int, path: bytes, flags: int, resolve: int, mode: int = 0) -> int:
    """``openat2(dirfd, path, {flags, mode, resolve})``; OSError with the errno on failure."""
    libc = _libc()
    how = _OpenHow(flags=flags, mode=mode, resolve=resolve)
    fd = libc.syscall(_SYS_OPENAT2, dirfd, bytes(path), ctypes.byref(how), ctypes.sizeof(how))
    if fd >= 0:
        return int(fd)
    err = ctypes.get_errno()
    raise OSError(err, os.strerror(err), os.fsdecode(path))


def rename_noreplace(dirfd: int, source: str, target: str) -> None:
    """Rename ``source`` to ``target`` (both in ``dirfd``); FileExistsError if it exists."""
    libc = _libc()
    rc = libc.renameat2(dirfd, os.fsencode(source), dirfd, os.fsencode(target), _RENAME_NOREPLACE)
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), target)
