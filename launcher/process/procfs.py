"""Writing the child's /proc files from the launcher (id maps, OOM score) at the rendezvous."""

from __future__ import annotations

import errno
import os

from bvisor.launcher.process.program import Fault

__all__ = ["write_proc"]


def write_proc(mechanism: str, pid: int, name: str, text: str) -> None:
    """Write ``text`` to ``/proc/<pid>/<name>``; a failure is a :class:`Fault` of ``mechanism``."""
    try:
        fd = os.open(f"/proc/{pid}/{name}", os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, text.encode("ascii"))
        finally:
            os.close(fd)
    except OSError as exc:
        raise Fault(mechanism, exc.errno or errno.EIO, f"write {name}: {exc.strerror}") from None
