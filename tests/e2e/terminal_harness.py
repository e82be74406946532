"""Run a command on a terminal of the test's own (a pty), the way a user's shell would.

The test holds the pty's master: it reads everything the terminal would show, types
input, changes the window size, and reads the terminal's settings (``tcgetattr`` on the
master gives the slave's), before, during and after the command — the oracle for what a
command did to "the caller's terminal".
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import select
import signal
import struct
import sys
import termios
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


@dataclass
class TerminalRun:
    output: bytes
    status: int
    before: list[Any]
    after: list[Any]
    during: list[list[Any]] = field(default_factory=list)


def set_size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def run_on_terminal(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: dict[str, str] | None = None,
    when: Sequence[tuple[bytes, Callable[[int, int], None]]] = (),
    timeout: float = 60,
) -> TerminalRun:
    """Run ``argv`` with a new pty as its controlling terminal and stdin/stdout/stderr.

    ``when`` holds (marker, action): once ``marker`` has appeared in the output,
    ``action(master_fd, child_pid)`` runs (type input, resize, signal...), each once.
    """
    pid, master = pty.fork()
    if pid == 0:  # the child: exec at once (nothing else runs in this forked copy)
        try:
            os.chdir(cwd)
            os.execve(sys.executable, [sys.executable, *argv], env or dict(os.environ))
        finally:
            os._exit(127)
    set_size(master, 24, 80)
    before = termios.tcgetattr(master)
    out = bytearray()
    pending = list(when)
    during: list[list[Any]] = []
    deadline = time.monotonic() + timeout
    status: int | None = None
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.05)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: every slave fd is closed
                    chunk = b""
                if not chunk:
                    break
                out += chunk
            while pending and pending[0][0] in out:
                _marker, action = pending.pop(0)
                during.append(termios.tcgetattr(master))
                action(master, pid)
            done, raw = os.waitpid(pid, os.WNOHANG)
            if done:
                status = os.waitstatus_to_exitcode(raw)
                # what is still buffered in the pty
                while select.select([master], [], [], 0.1)[0]:
                    try:
                        chunk = os.read(master, 65536)
                    except OSError:
                        break
                    if not chunk:
                        break
                    out += chunk
                break
        after = termios.tcgetattr(master)
    finally:
        if status is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            _, raw = os.waitpid(pid, 0)
            status = os.waitstatus_to_exitcode(raw)
        os.close(master)
    return TerminalRun(bytes(out), status, before, after, during)


def bvisor_argv(*args: str) -> list[str]:
    return ["-m", "bvisor.front.cli.main", *args]


def bvisor_env(ledger: Path) -> dict[str, str]:
    return {**os.environ, "BVISOR_LEDGER": str(ledger), "PYTHONPATH": str(REPO), "TERM": "xterm"}
