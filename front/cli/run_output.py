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
* where output is not a terminal (a pipe, a file), the workload's lines that begin with
  ``bvisor`` are counted and bvisor says how many there were (the exit status and
  ``--json`` are the verdict for programs). A mark is counted where a terminal might
  draw it at the start of a line: when nothing visible was drawn since the last newline,
  CR, backspace, VT, FF or escape sequence other than a colour (``CSI 1 G`` moves the
  cursor too), or since the start of a look-back that shows nothing at all (what came
  before it is unknown, so the count fails closed). Blanks, controls, zero-width,
  combining and bidirectional format characters show nothing;
* where such output held an escape sequence, bvisor's lines are preceded by the string
  terminator and the reset a terminal needs to show them (``SUMMARY_RESET``): a log shown
  later cannot hide them (concealed text, an open OSC string) — a log without one is left
  byte for byte as the workload wrote it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

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
_MARK = b"bvisor"
# How far before a mark the look-alike judge reads. Whatever lies further back is unknown,
# so a look-back that shows nothing at all is judged as if a line began before it.
_LOOK_BACK = 64

_STRING_START = re.compile(rb"\x1b[\]PX^_]")
_CSI_TAIL = re.compile(rb"[0-?]*[ -/]*[@-~]")  # the end of a CSI that began further back
_ESCAPE_BYTES = (b"\x1b", b"\x9b", b"\x07")
# On text decoded with surrogateescape: a C1 CSI is U+009B, or a lone 0x9B byte.
_CSI = "(?:\x1b\\[|[\x9b\udc9b])"
_COLOUR = re.compile(_CSI + "[0-9;:]*m")  # SGR: colours and styles, the cursor stays
# Any other escape sequence may move the cursor (CSI 1 G, CSI H, ESC E, ...): a CSI with
# its parameters, intermediates and final byte; a string control to its terminator or the
# end; ESC and one more character.
_OTHER_ESCAPE = re.compile(
    _CSI + "[0-?]*[ -/]*[@-~]?|\x1b(?:[\\]PX^_][^\x07\x1b]*(?:\x07|\x1b\\\\)?|.)?",
    re.DOTALL,
)
_MOVES_TO_NEWLINE = str.maketrans("\r\b\v\f", "\n\n\n\n")  # back or down, like a newline
_PLAIN_VISIBLE = re.compile("[!-~]")
_BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800\u180e")  # drawn as nothing
# Controls, unassigned, surrogates (bytes that are no UTF-8: fail closed), blanks,
# separators, and marks that draw nothing of their own.
_INVISIBLE = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp", "Mn", "Me"})


def _draws_something(text: str) -> bool:
    """Whether a terminal draws any visible character for ``text`` (no escapes in it)."""
    if _PLAIN_VISIBLE.search(text):
        return True
    import unicodedata

    return any(c not in _BLANK_LETTERS and unicodedata.category(c) not in _INVISIBLE for c in text)


def _may_begin_a_line(before: bytes, cut: bool) -> bool:
    """Whether what a terminal draws next, after ``before``, may be the start of a line.

    It may unless a visible character was drawn after the last thing that could move the
    cursor back or down: a newline, CR, backspace, VT, FF, or any escape sequence but a
    colour. ``cut``: more came before ``before`` than it holds, so its start is unknown —
    the cursor may have moved there, and ``before`` may start inside a character or an
    escape sequence (whose parameters look like text), so fail closed on both.
    """
    drawn = before.rstrip(b" \t")
    if (
        0x21 <= (drawn[-1] if drawn else 0) <= 0x7E
        and not any(b in before for b in _ESCAPE_BYTES)
        and not (cut and _CSI_TAIL.fullmatch(drawn))
    ):
        return False  # the common case, decided at once: plain text, then blanks
    if before[-1:] in (b"\n", b"\r"):
        return True  # right after a line start
    rest = _past_unknown_start(before) if cut else before
    text = rest.decode("utf-8", "surrogateescape")
    text = _OTHER_ESCAPE.sub("\n", _COLOUR.sub("", text)).translate(_MOVES_TO_NEWLINE)
    line = text.rpartition("\n")
    if not line[1] and not cut:
        return False  # the start is known, and nothing took the cursor back
    return not _draws_something(line[2])


def _past_unknown_start(before: bytes) -> bytes:
    """``before`` without what may belong to something that began further back: the
    rest of a UTF-8 character, the parameters and final byte of a CSI, or a whole string
    control (OSC, DCS...) whose terminator lies here but whose start does not."""
    rest = before.lstrip(bytes(range(0x80, 0xC0)))
    tail = _CSI_TAIL.match(rest)
    if tail is not None:
        rest = rest[tail.end() :]
    ends = [e for e in (rest.find(b"\x07"), rest.find(_STRING_END)) if e != -1]
    if ends and _STRING_START.search(rest, 0, min(ends)) is None:
        end = min(ends)
        rest = rest[end + (1 if rest[end] == 0x07 else 2) :]
    return rest


def _count_lookalikes(text: bytes, *, counted_before: int, whole: bool) -> int:
    """Marks ``bvisor`` in ``text`` that may begin a line as a terminal draws it.

    Marks starting before ``counted_before`` were judged with the previous chunk.
    ``whole``: ``text`` starts where the stream did (with a newline standing for it).
    The look-back is bounded, so this is linear however the workload arranges its output.
    """
    count = 0
    position = text.find(_MARK, counted_before)
    while position != -1:
        floor = max(0, position - _LOOK_BACK)
        if _may_begin_a_line(text[floor:position], cut=floor > 0 or not whole):
            count += 1
        position = text.find(_MARK, position + len(_MARK))
    return count


_SUMMARY_TIMEOUT_S = 5.0


class LineWatch:
    """Passes bytes unchanged; counts lines that may begin with ``bvisor`` (look-alikes).

    Matching runs over whole chunks (``bytes.find`` for the rare mark, not a byte loop);
    each mark is judged by a bounded look-back, so the cost is linear however the workload
    arranges its output. The only state is the stream's last bytes, which the next chunk
    is judged with.
    """

    def __init__(self) -> None:
        self.lookalikes = 0
        self.escapes = False  # an escape sequence passed (ESC, or a C1 CSI byte)
        self._carry = b"\n"  # the stream's last bytes; at first, a newline for its start
        self._whole = True  # the carry holds the stream from its start

    def feed(self, chunk: bytes) -> bytes:
        if not self.escapes and (b"\x1b" in chunk or b"\x9b" in chunk):
            self.escapes = True
        text = self._carry + chunk
        # A mark wholly inside the carry was counted with the chunk that completed it.
        judged = max(len(self._carry) - len(_MARK) + 1, 0)
        self.lookalikes += _count_lookalikes(text, counted_before=judged, whole=self._whole)
        keep = _LOOK_BACK + len(_MARK) - 1
        self._whole = self._whole and len(text) <= keep
        self._carry = text[-keep:]
        return chunk

    def flush(self) -> bytes:
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

    def lookalikes(self) -> int:
        return sum(watch.lookalikes for watch in self.watches)

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
