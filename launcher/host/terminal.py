"""The caller's terminal stays the caller's: what reaches it, and how it is lent and restored.

A workload's output that reaches a terminal is *interpreted* by it: escape sequences move
the cursor, clear lines, set the window title, write the clipboard (OSC 52), ask the
terminal questions whose answers arrive as typed input — and can hide or forge the line
bvisor prints about the run. So output bound for a terminal passes through a filter:

* :class:`Neutraliser` (the default for a terminal) makes every control visible instead of
  acting on it: C0 controls as caret notation (``^[`` for ESC, ``^M`` for a lone CR, ``^H``
  for backspace), C1 controls and bytes that are not UTF-8 as ``\\xNN`` / ``<U+NNNN>``,
  bidirectional controls (marks, embeddings, overrides, isolates) as ``<U+202E>``. Text,
  tab and newline pass unchanged.
* :class:`InteractiveFilter` (``--tty``: full-screen programs need cursor control) lets
  CSI and the short ESC sequences through but drops string controls (OSC, DCS, APC, PM,
  SOS: title, clipboard, hyperlinks, terminal queries and pass-through) and C1 bytes.

The workload of an interactive run gets a pty of its own (:func:`open_pty`): the caller's
terminal is put in raw mode for the run and relayed, and :class:`CallerTerminal` restores
its settings on every way out — a normal end, an exception, SIGTERM/SIGHUP (raised as an
exception by the CLI), and a stop (SIGTSTP restores, SIGCONT re-enters raw mode).
"""

from __future__ import annotations

import codecs
import contextlib
import fcntl
import os
import re
import signal
import struct
import termios
import tty
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType
from typing import Any, Protocol

__all__ = [
    "SUMMARY_RESET",
    "CallerTerminal",
    "InteractiveFilter",
    "Neutraliser",
    "OutputFilter",
    "Pty",
    "copy_window_size",
    "is_terminal",
    "open_pty",
]

# Ends whatever an interactive workload left behind before bvisor speaks: soft terminal
# reset (DECSTR: scroll region, modes, SGR, charsets), main screen, mouse reporting and
# bracketed paste off, cursor visible, column 0.
SUMMARY_RESET = (
    b"\x1b[!p\x1b[?1049l\x1b[?1000l\x1b[?1002l\x1b[?1003l\x1b[?1006l\x1b[?2004l\x1b[0m\x1b[?25h\r"
)


class OutputFilter(Protocol):
    """Bytes for a terminal in, bytes safe to show out; state carries across chunks."""

    def feed(self, chunk: bytes) -> bytes: ...

    def flush(self) -> bytes: ...


def is_terminal(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False


def _caret(char: str) -> str:
    code = ord(char)
    if code == 0x7F:
        return "^?"
    return "^" + chr(code + 0x40)


# Unicode's Bidi_Control characters: the marks, embeddings, overrides and isolates.
_BIDI = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
# C0 but tab and newline, DEL, C1, bidi controls, and undecodable bytes (surrogateescape).
_UNSAFE = re.compile(f"[\x00-\x08\x0b-\x1f\x7f-\x9f{_BIDI}\udc80-\udcff]")


def _render(match: re.Match[str]) -> str:
    char = match.group(0)
    code = ord(char)
    if code < 0x20 or code == 0x7F:
        return _caret(char)
    if 0xDC80 <= code <= 0xDCFF:
        return f"\\x{code - 0xDC00:02x}"
    return f"<U+{code:04X}>"


class Neutraliser:
    """Shows every control character visibly; a terminal then only ever prints text.

    A CR directly followed by LF is a line end (``\\r\\n`` output stays readable); any
    other CR would return to column 0 and let later text overwrite the line, so it is
    shown as ``^M``.
    """

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="surrogateescape")
        self._cr_pending = False

    def feed(self, chunk: bytes) -> bytes:
        return self._convert(self._decoder.decode(chunk, final=False))

    def flush(self) -> bytes:
        text = self._decoder.decode(b"", final=True)
        out = self._convert(text)
        if self._cr_pending:
            self._cr_pending = False
            out += b"^M"
        return out

    def _convert(self, text: str) -> bytes:
        if self._cr_pending:
            text = "\r" + text
            self._cr_pending = False
        if text.endswith("\r"):
            text = text[:-1]
            self._cr_pending = True
        text = text.replace("\r\n", "\n")
        return _UNSAFE.sub(_render, text).encode("utf-8", "surrogateescape")


# What an interactive filter must look at: ESC, C1 controls (as UTF-8 characters), and
# undecodable bytes 0x80-0x9f (C1 controls to a terminal in 8-bit mode).
_INTERESTING = re.compile("[\x1b\x80-\x9f\udc80-\udc9f]")
_STRING_INTRODUCERS = frozenset("]P_^X")  # OSC, DCS, APC, PM, SOS after ESC
# CSI finals dropped whole: media copy (``CSI 5 i`` sends all later output, bvisor's own
# last line included, to the terminal's printer instead of the screen).
_DROPPED_CSI_FINALS = frozenset("i")


class InteractiveFilter:
    """Passes what full-screen programs need (CSI but media copy, short ESC sequences),
    drops strings.

    States: ground; after ESC; inside CSI; inside a string control (until BEL or ST).
    A string control is dropped whole, C1 controls are dropped, and so is a CSI that no
    terminal would finish (too long, or broken by a control character).
    """

    _MAX_CSI = 256

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="surrogateescape")
        self._state = "ground"
        self._held: list[str] = []  # an unfinished ESC/CSI sequence

    def flush(self) -> bytes:
        tail = self._filter(self._decoder.decode(b"", final=True))
        self._held.clear()
        self._state = "ground"
        return tail

    def feed(self, chunk: bytes) -> bytes:
        return self._filter(self._decoder.decode(chunk, final=False))

    def _filter(self, text: str) -> bytes:
        out: list[str] = []
        index, size = 0, len(text)
        while index < size:
            if self._state == "ground":
                match = _INTERESTING.search(text, index)
                stop = size if match is None else match.start()
                out.append(text[index:stop])
                if match is None:
                    break
                index = stop + 1
                if text[stop] == "\x1b":
                    self._state, self._held = "esc", ["\x1b"]
                continue  # a C1 control or an 8-bit C1 byte: dropped
            char = text[index]
            index += 1
            self._step(char, out)
        return "".join(out).encode("utf-8", "surrogateescape")

    def _step(self, char: str, out: list[str]) -> None:
        code = ord(char)
        if self._state == "esc":
            if char in _STRING_INTRODUCERS:
                self._state, self._held = "string", []
            elif char == "[":
                self._state = "csi"
                self._held.append(char)
            elif 0x20 <= code <= 0x2F:  # an intermediate: ESC ( B and friends
                self._held.append(char)
            elif 0x30 <= code <= 0x7E:
                out.append("".join(self._held) + char)
                self._state, self._held = "ground", []
            else:
                self._drop_sequence(char, out)
        elif self._state == "csi":
            if 0x40 <= code <= 0x7E:
                if char not in _DROPPED_CSI_FINALS:
                    out.append("".join(self._held) + char)
                self._state, self._held = "ground", []
            elif 0x20 <= code <= 0x3F and len(self._held) < self._MAX_CSI:
                self._held.append(char)
            else:
                self._drop_sequence(char, out)
        elif self._state == "string":
            if char == "\x07":
                self._state = "ground"
            elif char == "\x1b":
                self._state = "string-esc"
        elif self._state == "string-esc":
            self._state = "ground" if char == "\\" else "string"

    def _drop_sequence(self, char: str, out: list[str]) -> None:
        """An unfinished sequence broken by ``char``: dropped; a new ESC starts over, any
        other character is shown as in ground state."""
        if char == "\x1b":
            self._state, self._held = "esc", ["\x1b"]
            return
        self._state, self._held = "ground", []
        if not _INTERESTING.match(char):
            out.append(char)


@dataclass
class Pty:
    """A pty pair made for one run: the workload gets ``slave`` as fds 0-2."""

    master: int
    slave: int

    def close_slave(self) -> None:
        if self.slave >= 0:
            with contextlib.suppress(OSError):
                os.close(self.slave)
            self.slave = -1

    def close(self) -> None:
        self.close_slave()
        if self.master >= 0:
            with contextlib.suppress(OSError):
                os.close(self.master)
            self.master = -1


def open_pty(like: int | None = None) -> Pty:
    """A new pty; with ``like`` (the caller's terminal) its settings and size are copied."""
    master, slave = os.openpty()
    os.set_inheritable(master, False)
    os.set_inheritable(slave, False)
    try:
        if like is not None and is_terminal(like):
            termios.tcsetattr(slave, termios.TCSANOW, termios.tcgetattr(like))
            copy_window_size(like, master)
        os.set_blocking(master, False)
    except OSError:
        os.close(master)
        os.close(slave)
        raise
    return Pty(master=master, slave=slave)


def copy_window_size(source: int, target: int) -> None:
    """TIOCGWINSZ on ``source``, TIOCSWINSZ on ``target`` (the kernel tells the pty's
    foreground group with SIGWINCH)."""
    packed = fcntl.ioctl(source, termios.TIOCGWINSZ, struct.pack("HHHH", 0, 0, 0, 0))
    fcntl.ioctl(target, termios.TIOCSWINSZ, packed)


class CallerTerminal:
    """The caller's terminal, lent to an interactive run in raw mode and given back.

    ``enter`` saves the settings and switches to raw mode; ``restore`` puts the saved
    settings back (idempotent) and discards input typed for the workload that it never
    read — including a terminal's late answer to a query the workload sent, which would
    otherwise be read by the caller's shell as if typed.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._saved: list[Any] | None = None

    def enter(self) -> None:
        self._saved = termios.tcgetattr(self.fd)
        tty.setraw(self.fd, termios.TCSANOW)

    def restore(self) -> None:
        saved, self._saved = self._saved, None
        if saved is None:
            return
        with contextlib.suppress(OSError, termios.error):
            termios.tcsetattr(self.fd, termios.TCSAFLUSH, saved)

    def settings(self) -> list[Any]:
        return termios.tcgetattr(self.fd)

    @contextmanager
    def lent(self, window_target: Pty | None = None) -> Iterator[CallerTerminal]:
        """Raw mode for the body; restored on every exit. SIGWINCH resizes
        ``window_target``'s master while it is open (the host closes it to hang the run's
        terminal up: its number is then read as -1, never as an fd since reused);
        SIGTSTP restores before stopping and SIGCONT re-enters raw."""
        previous: dict[int, Any] = {}
        in_main = _in_main_thread()

        def on_winch(_signum: int, _frame: FrameType | None) -> None:
            if window_target is not None and window_target.master >= 0:
                with contextlib.suppress(OSError):
                    copy_window_size(self.fd, window_target.master)

        def on_tstp(_signum: int, _frame: FrameType | None) -> None:
            self.restore()
            signal.signal(signal.SIGTSTP, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTSTP)  # stops here until SIGCONT

        def on_cont(_signum: int, _frame: FrameType | None) -> None:
            signal.signal(signal.SIGTSTP, on_tstp)
            if self._saved is None:
                with contextlib.suppress(OSError, termios.error):
                    self.enter()

        self.enter()
        try:
            if in_main:
                previous[signal.SIGWINCH] = signal.signal(signal.SIGWINCH, on_winch)
                previous[signal.SIGTSTP] = signal.signal(signal.SIGTSTP, on_tstp)
                previous[signal.SIGCONT] = signal.signal(signal.SIGCONT, on_cont)
            yield self
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, signal.SIG_DFL if handler is None else handler)
            self.restore()


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
