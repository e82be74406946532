"""Standard streams for the command-line tools: closed descriptors and vanished readers.

A command started with fd 0, 1 or 2 closed (``bvisor run ... <&-``) would hand the next
file it opens — the ledger's ``lock.mdb`` or ``data.mdb`` — that descriptor number, and
then pass it on as the workload's stdin or write its output into it. So every entry point
first occupies any closed standard descriptor with ``/dev/null``. A closed stdin then just
reads as empty input; a closed stdout or stderr is refused (exit 2, nothing done), since
the command's result would silently go nowhere.
"""

from __future__ import annotations

import os
import sys

__all__ = ["EXIT_BROKEN_PIPE", "check_std_streams", "silence_stdout"]

EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a writer killed by it


_NAMES = ("stdin", "stdout", "stderr")


def _occupy_closed() -> list[str]:
    """Put ``/dev/null`` on every closed fd 0-2; the names of those that were closed."""
    closed: list[str] = []
    for fd, name in enumerate(_NAMES):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
            closed.append(name)
    return closed


def check_std_streams(prog: str) -> int | None:
    """None when the command may go on; else the exit status (2) after saying why."""
    closed = _occupy_closed()
    if "stdin" in closed and sys.stdin is None:
        sys.stdin = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115 - lives as stdin
    shut = [name for name in closed if name != "stdin"]
    if not shut:
        return None
    if "stderr" not in shut and sys.stderr is not None:
        print(
            f"{prog}: standard output is closed; nothing was done (redirect it to /dev/null "
            "to discard the output)",
            file=sys.stderr,
        )
    return 2


def silence_stdout() -> None:
    """After a reader went away (EPIPE), point stdout at /dev/null so the interpreter's
    final flush cannot fail again and print a traceback of its own."""
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass
    finally:
        os.close(null)
