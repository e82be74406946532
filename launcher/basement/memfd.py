"""Sealed memfds: how the launch envelope travels from host to launcher.

A memfd sealed with F_SEAL_SEAL|SHRINK|GROW|WRITE cannot change after the host writes it,
so the bytes the launcher verifies are the bytes it acts on — no one holding another copy
of the fd can rewrite the plan between the digest check and its use.
"""

from __future__ import annotations

import fcntl
import os

__all__ = ["REQUIRED_SEALS", "MemfdError", "read_all", "read_sealed", "sealed_memfd"]

REQUIRED_SEALS = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE


class MemfdError(ValueError):
    """The fd is not a fully sealed memfd, or it cannot be read."""


def sealed_memfd(data: bytes, name: str = "bvisor-launch", *, seal: bool = True) -> int:
    """A CLOEXEC memfd holding ``data``, sealed unless ``seal`` is False (tests only)."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        if seal:
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, REQUIRED_SEALS)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_sealed(fd: int, limit: int) -> bytes:
    """All bytes of a fully sealed memfd of at most ``limit`` bytes."""
    try:
        seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
    except OSError as exc:
        raise MemfdError(f"plan fd {fd} is not a sealable memfd ({exc.strerror})") from None
    if seals & REQUIRED_SEALS != REQUIRED_SEALS:
        raise MemfdError(f"plan fd {fd} is not sealed (seals {seals:#x}, need {REQUIRED_SEALS:#x})")
    size = os.fstat(fd).st_size
    if size > limit:
        raise MemfdError(f"plan fd {fd} holds {size} bytes, more than {limit}")
    return read_all(fd, size)


def read_all(fd: int, size: int) -> bytes:
    """Up to ``size`` bytes from offset 0 (pread: the fd's own offset is left alone)."""
    chunks: list[bytes] = []
    offset = 0
    while offset < size:
        chunk = os.pread(fd, size - offset, offset)
        if not chunk:
            break
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)
