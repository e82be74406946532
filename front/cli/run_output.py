"""`bvisor run`'s side of the caller's terminal: how output is relayed, and the last word.

The workload's output goes to the caller through non-blocking outlets. Where it lands on
a terminal, its control sequences are shown, not obeyed (``Neutraliser``; ``--raw-output``
opts out; ``--tty`` keeps what full-screen programs need but drops string controls).

bvisor's own lines come last and cannot be hidden or forged by the workload:

* they are written only after the relay has ended (nothing of the workload's can follow);
* they start on a line of their own (a partial line the workload left is ended first);
* on a neutralised terminal the ``bvisor:`` tag is drawn in reverse video — an escape
  sequence the workload's output can no longer contain, so a look-alike line it printed
  is plain text, visibly different; after ``--tty`` the terminal is soft-reset first;
* where output is not a terminal (a pipe, a file), the workload's lines that may show as
  beginning with ``bvisor`` are counted and bvisor says how many there were (the exit
  status and ``--json`` are the verdict for programs); the judge, which fails closed
  rather than model every terminal, is :mod:`bvisor.front.cli.lookalike`;
* where such output held an escape sequence, bvisor's lines are preceded by the string
  terminator and the reset a terminal needs to show them (``SUMMARY_RESET``): a log shown
  later cannot hide them (concealed text, an open OSC string) — a log without one is left
  byte for byte as the workload wrote it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from bvisor.front.cli.lookalike import LookalikeCounter, holds_escape
from bvisor.launcher.host.relay import HostStdio, Outlet
from bvisor.launcher.host.terminal import (
    SUMMARY_RESET,
    InteractiveFilter,
    Neutraliser,
    OutputFilter,
    is_terminal,
    open_pty,
)

__all__ = ["LineWatch", "RunOutput", "open_run_output"]

_TAG = "bvisor:"
_STYLED_TAG = "\x1b[7mbvisor:\x1b[27m"
_STRING_END = b"\x1b\\"  # ST: ends an OSC, DCS or other string control left open


_SUMMARY_TIMEOUT_S = 5.0


class LineWatch:
    """Passes bytes unchanged; counts the lines a terminal may draw as beginning with
    ``bvisor`` (look-alikes; the judge is :mod:`bvisor.front.cli.lookalike`)."""

    def __init__(self) -> None:
        self.escapes = False  # an escape sequence passed (ESC, or a C1 control)
        self._counter = LookalikeCounter()

    @property
    def lookalikes(self) -> int:
        self._counter.flush()  # what a stream cut short left held back is judged too
        return self._counter.count

    @property
    def controls(self) -> bool:
        """The output held terminal controls: any of its lines may show as bvisor's."""
        self._counter.flush()
        return self._counter.controls

    @property
    def overflow(self) -> bool:
        """The output held too many lines to judge one by one: any may show as bvisor's."""
        self._counter.flush()
        return self._counter.overflow

    def feed(self, chunk: bytes) -> bytes:
        if not self.escapes and holds_escape(chunk):
            self.escapes = True
        self._counter.feed(chunk)
        return chunk

    def flush(self) -> bytes:
        self._counter.flush()
        return b""


@dataclass
class RunOutput:
    """The caller's stdio for one run, and the way bvisor speaks after it."""

    stdio: HostStdio
    tty: bool
    raw: bool
    watches: list[LineWatch] = field(default_factory=list)

    @property
    def stderr_terminal(self) -> bool:
        return is_terminal(2)

    def _ends_mid_line(self) -> bool:
        """Did the workload's output that shares bvisor's stderr end without a newline?"""
        outlets = [o for o in (self.stdio.stderr,) if o is not None]
        if self.stdio.stdout is not None and (self.tty or same_destination(1, 2)):
            outlets.append(self.stdio.stdout)
        delivered = [o for o in outlets if o.last_write]
        if not delivered:
            return False
        last = max(delivered, key=lambda o: o.last_write)
        return last.last_byte is not None and last.last_byte != ord("\n")

    def lookalikes(self) -> tuple[int, bool, bool]:
        """Lines of the workload's that may show as beginning with ``bvisor``; whether its
        output held terminal controls, and whether it held more lines than the judge looks
        at one by one (either way any line may)."""
        return (
            sum(watch.lookalikes for watch in self.watches),
            any(watch.controls for watch in self.watches),
            any(watch.overflow for watch in self.watches),
        )

    def say(self, lines: list[str]) -> None:
        """bvisor's own lines on stderr: after the relay, on a fresh line, unforgeable."""
        styled = self.stderr_terminal and not self.raw
        out = bytearray()
        if self.tty and self.stderr_terminal:
            out += SUMMARY_RESET + b"\n"
        elif not self.stderr_terminal and any(watch.escapes for watch in self.watches):
            out += _STRING_END + SUMMARY_RESET + b"\n"
        elif self._ends_mid_line():
            out += b"\n"
        for line in lines:
            safe = _shown(line) if self.stderr_terminal else line
            if styled and safe.startswith(_TAG):
                safe = _STYLED_TAG + safe[len(_TAG) :]
            out += safe.encode("utf-8", "replace") + b"\n"
        writer = Outlet(2)
        try:
            if not writer.write_now(bytes(out), _SUMMARY_TIMEOUT_S):
                pass  # stderr did not take it in time; the exit status still says it all
        finally:
            writer.close()

    def close(self) -> None:
        self.stdio.close()


def _shown(text: str) -> str:
    """A line of bvisor's own, with any control character in it made visible."""
    neutraliser = Neutraliser()
    return (neutraliser.feed(text.encode("utf-8", "surrogateescape")) + neutraliser.flush()).decode(
        "utf-8", "replace"
    )


def _filter_for(fd: int, *, tty: bool, raw: bool, watches: list[LineWatch]) -> OutputFilter | None:
    if is_terminal(fd):
        if raw:
            return None
        return InteractiveFilter() if tty else Neutraliser()
    watch = LineWatch()
    watches.append(watch)
    return watch


def open_run_output(*, tty: bool, raw: bool) -> RunOutput:
    """Outlets for fds 1 and 2 (and a pty lent for ``tty``), filtered as the module says."""
    watches: list[LineWatch] = []
    stdout = Outlet(1, filter=_filter_for(1, tty=tty, raw=raw, watches=watches))
    stderr = None
    pty = None
    try:
        if tty:
            pty = open_pty(like=0)
        else:
            stderr = Outlet(2, filter=_filter_for(2, tty=False, raw=raw, watches=watches))
    except OSError:
        stdout.close()
        raise
    stdio = HostStdio(stdin=0, stdout=stdout, stderr=stderr, tty=pty)
    return RunOutput(stdio=stdio, tty=tty, raw=raw, watches=watches)


def same_destination(a: int, b: int) -> bool:
    """Do two fds write to one place (one file, pipe or terminal device)?"""
    try:
        first, second = os.fstat(a), os.fstat(b)
    except OSError:
        return False
    if first.st_rdev and first.st_rdev == second.st_rdev:
        return True  # one device (a terminal opened twice)
    return (first.st_dev, first.st_ino) == (second.st_dev, second.st_ino)
