"""Counting the workload's lines a terminal may draw as beginning with ``bvisor``.

Where ``bvisor run``'s output is a log or a pipe, bvisor's own last lines cannot be drawn
differently from the workload's, so bvisor says how many of the workload's lines could
pass for one of its own when the log is shown later. Modelling every terminal is out of
reach, so the judge over-approximates (fails closed) instead:

* each line is reduced to its *skeleton*: what a terminal may draw. Escape sequences that
  never move the cursor (colours, erase in line or display, character set choices) and
  controls that draw nothing (NUL, DEL, BEL, SI, ...) are dropped, zero-width and
  combining characters are dropped, blanks become spaces, and letters are folded
  (case, compatibility forms such as full-width letters, and common look-alikes such as
  Cyrillic o, U+043E), so ``b\\x00visor`` or ``bv\\u200bisor`` is ``bvisor``;
* a line that can move the cursor back or anywhere — CR, backspace, any other escape
  sequence, any C1 control, a string control (a title, DCS...) — may draw anything
  anywhere: it counts when its skeleton holds each letter of ``bvisor``;
* any other line counts when its skeleton holds ``bvisor`` after nothing but blanks, or
  at column 40 or later (a narrower terminal's wrap may start a row there).

VT and FF end a line as a newline does. The state carried between chunks is bounded: a
held-back tail (an escape sequence or UTF-8 character cut by the chunk's end), whether a
string control is still open, and a few facts about the current line.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["LookalikeCounter"]

_MARK: Final = "bvisor"
_LETTERS: Final = frozenset(_MARK)
_WRAP_COLUMN: Final = 40  # a mark this far along may start a wrapped row
_HOLD: Final = 256  # the longest escape sequence tail held back for the next chunk
_MOVE: Final = "\x01"  # in a skeleton: the cursor may have moved here

# A string control (OSC, DCS, SOS, PM, APC) to its terminator (BEL, ST, or CAN/SUB,
# which abort it): not drawn, but what it does to the cursor is the terminal's.
_STRING = re.compile(rb"\x1b[\]PX^_][^\x07\x18\x1a\x1b]*(?:\x07|\x1b\\|[\x18\x1a])")
_OPEN_STRING = re.compile(rb"\x1b[\]PX^_][^\x07\x18\x1a\x1b]*\Z")
_STRING_END = re.compile(rb"\x07|\x1b\\?|[\x18\x1a]")
# Colours, erase in line/display and character set choices never move the cursor.
_STILL = re.compile(rb"\x1b\[[0-9;:]*m|\x1b\[[0-9]*[JK]|\x1b[()*+\-./][\x20-\x2f]*[\x30-\x7e]")
# Any other escape sequence (a CSI holding a control is not one: its ESC alone is left).
# (ESC then a final byte never takes ``[`` or a string's introducer for its final.)
_ESCAPE = re.compile(
    rb"\x1b\[[\x20-\x3f]*[\x40-\x7e]"
    rb"|\x1b[\x20-\x2f]*[\x30-\x4f\x51-\x57\x59\x5a\x5c\x60-\x7e]"
    rb"|\x1b"
)
# CR and BS take the cursor back; VT and FF down, as a newline; other controls and DEL
# draw nothing (HT and LF stay).
_CONTROLS = bytes.maketrans(b"\r\b\v\f", b"\x01\x01\n\n")
_DRAW_NOTHING = bytes(c for c in range(0x20) if c not in b"\t\n\r\b\v\f\x01") + b"\x7f"
_PLAIN = re.compile(rb"[^\x20-\x7e\t\n]")  # anything but printable ASCII, tab, newline

# Letters drawn like those of the mark that NFKC does not fold (Cyrillic, Greek, ...).
_LOOKALIKES: Final = {
    "\u0430": "a", "\u044c": "b", "\u0432": "b", "\u13cf": "b", "\u0185": "b",
    "\u0456": "i", "\u0131": "i", "\u03b9": "i", "\u04cf": "i", "\u0269": "i",
    "\u043e": "o", "\u03bf": "o", "\u03c3": "o", "\u0585": "o", "\u0ce6": "o",
    "\u0455": "s", "\u01bd": "s", "\ua731": "s",
    "\u03bd": "v", "\u0475": "v", "\u1d20": "v", "\u05d8": "v",
    "\u0433": "r", "\u1d26": "r", "\u2c85": "r",
}  # fmt: skip
# Drawn as blanks, though their category says letter or symbol (Hangul fillers, Braille).
_BLANKS: Final = frozenset("\u115f\u3164\uffa0\u2800")
# Drawn with no width: Hangul medial and final jamo outside a syllable block.
_NO_WIDTH_RANGES: Final = ((0x1160, 0x11FF), (0xD7B0, 0xD7FF))
_NOTHING: Final = frozenset({"Cf", "Mn", "Me", "Cs", "Co", "Cn", "Zl", "Zp"})


class _Skeleton(dict[int, str]):
    """``str.translate`` table from a character to what the judge sees of it, filled in
    on first sight (a terminal's output repeats few distinct characters)."""

    def __missing__(self, code: int) -> str:
        self[code] = seen = _seen_as(chr(code))
        return seen


def _seen_as(char: str) -> str:
    import unicodedata  # only once output holds a character that is not ASCII

    if char in "\t\n" + _MOVE:
        return char
    code = ord(char)
    if 0x80 <= code <= 0x9F or 0xDC80 <= code <= 0xDC9F:
        return _MOVE  # a C1 control, encoded or as a raw byte: it may move the cursor
    if 0xDCA0 <= code <= 0xDCFF:
        return "\ufffd"  # a byte that is no UTF-8: drawn as a replacement mark
    if char in _BLANKS:
        return " "
    if any(low <= code <= high for low, high in _NO_WIDTH_RANGES):
        return ""
    category = unicodedata.category(char)
    if category == "Zs":
        return " "
    if category in _NOTHING or category == "Cc":
        return ""
    folded = unicodedata.normalize("NFKC", char).casefold()
    return "".join(_LOOKALIKES.get(c, c) for c in folded)


_TABLE = _Skeleton()


def _skeleton(data: bytes) -> str:
    """What a terminal may draw of ``data`` (complete: no cut sequence at its end), with
    ``_MOVE`` where the cursor may have moved and ``\\n`` where a line ends."""
    if _PLAIN.search(data) is not None:
        data = _STRING.sub(b"\x01", data)
        data = _STILL.sub(b"", data)
        data = _ESCAPE.sub(b"\x01", data)
        data = data.translate(_CONTROLS, _DRAW_NOTHING)
    if data.isascii():
        return data.lower().decode("ascii")
    return data.decode("utf-8", "surrogateescape").translate(_TABLE)


class LookalikeCounter:
    """Counts lines that may be drawn as beginning with ``bvisor`` (see module)."""

    def __init__(self) -> None:
        self.count = 0
        self._held = b""  # a cut escape sequence or UTF-8 character, judged with the next
        self._in_string = False  # a string control is open: skip to its terminator
        self._reset_line()

    def _reset_line(self) -> None:
        self._moved = False
        self._letters: set[str] = set()
        self._tail = ""  # the line's last skeleton characters, for a mark cut by a chunk
        self._column = 0  # where the tail starts
        self._blank = True  # nothing but blanks drawn before the tail
        self._counted = False

    def feed(self, chunk: bytes) -> None:
        data = self._held + chunk
        self._held = b""
        if self._in_string:
            end = _STRING_END.search(data)
            if end is None or (end.group() == b"\x1b" and end.end() == len(data)):
                self._held = data[-1:] if data.endswith(b"\x1b") else b""
                return
            self._in_string = False
            # ST, BEL, CAN or SUB end it; another ESC aborts it and starts a sequence.
            data = data[end.start() if end.group() == b"\x1b" else end.end() :]
        cut = _cut_point(data)
        self._held = data[cut:]
        data = data[:cut]
        opened = _OPEN_STRING.search(data)
        if opened is not None:
            data = data[: opened.start()] + b"\x01"  # the rest is the string's, undrawn
            self._in_string = True
        self._judge(_skeleton(data))

    def flush(self) -> None:
        """The stream ended: judge what was held back, and the last line."""
        held, self._held = self._held, b""
        if held and not self._in_string:
            self._judge(_skeleton(held))

    def _judge(self, text: str) -> None:
        first, ended, rest = text.partition("\n")
        self._line_piece(first)
        if not ended:
            return
        whole, _, last = rest.rpartition("\n")
        self.count += _whole_lines_counted(whole)
        self._reset_line()
        self._line_piece(last)

    def _line_piece(self, piece: str) -> None:
        """The next part of the current line (no newline in it)."""
        if self._counted or not piece:
            return
        if _MOVE in piece:
            self._moved = True
        self._letters.update(_LETTERS.intersection(piece))
        if self._moved and self._letters >= _LETTERS:
            self._count_line()
            return
        joined = self._tail + piece.replace(_MOVE, "")
        if _MARK in joined and _mark_may_begin(joined, blank=self._blank, column=self._column):
            self._count_line()
            return
        keep = len(_MARK) - 1
        passed = joined[:-keep]  # now before the tail
        self._blank = self._blank and not passed.strip()
        self._column += len(passed.expandtabs())
        self._tail = joined[-keep:]

    def _count_line(self) -> None:
        self.count += 1
        self._counted = True


def _whole_lines_counted(text: str) -> int:
    """How many of the whole lines in ``text`` count (nothing carried into them): only a
    line holding a mark or a move can, and only those are looked at. Each of the two is
    searched for once per hit, not once per line (a search that finds nothing scans to
    the end)."""
    count = 0
    move, mark = text.find(_MOVE), text.find(_MARK)
    while move != -1 or mark != -1:
        hit = mark if move == -1 else move if mark == -1 else min(move, mark)
        start = text.rfind("\n", 0, hit) + 1
        end = text.find("\n", hit)
        end = len(text) if end == -1 else end
        line = text[start:end]
        if (_MOVE in line and set(line) >= _LETTERS) or (
            _MARK in line and _mark_may_begin(line, blank=True, column=0)
        ):
            count += 1
        if move != -1 and move < end:
            move = text.find(_MOVE, end)
        if mark != -1 and mark < end:
            mark = text.find(_MARK, end)
    return count


def _mark_may_begin(line: str, *, blank: bool, column: int) -> bool:
    """Whether a mark in ``line`` (drawn from ``column``, after only blanks if ``blank``)
    comes after nothing but blanks, or far enough along to start a wrapped row."""
    at = line.find(_MARK)
    while at != -1:
        before = line[:at].replace(_MOVE, "")
        if (blank and not before.strip()) or column + len(before.expandtabs()) >= _WRAP_COLUMN:
            return True
        at = line.find(_MARK, at + 1)
    return False


def _cut_point(data: bytes) -> int:
    """Where to cut ``data`` so that what follows is held back for the next chunk: an
    escape sequence that may not be complete yet, or a UTF-8 character cut short."""
    last = data.rfind(b"\x1b", max(0, len(data) - _HOLD))
    if last != -1 and _complete_escape_at(data, last) is None:
        return last
    for back in (1, 2, 3):
        if back > len(data):
            break
        byte = data[-back]
        if byte < 0x80:
            break
        if byte >= 0xC0:
            need = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            return len(data) - back if need > back else len(data)
    return len(data)


def _complete_escape_at(data: bytes, at: int) -> int | None:
    """The end of the escape sequence at ``at`` when the data holds all of it (None: it
    may go on in the next chunk). A string control that is still open counts as complete
    here: ``feed`` then sees it open and skips to its terminator."""
    rest = data[at:]
    if len(rest) < 2:
        return None
    if rest[1:2] in (b"]", b"P", b"X", b"^", b"_"):
        return len(data)
    match = _STILL.match(rest) or _ESCAPE.match(rest)
    if match is None or match.end() == 1:
        # A lone ESC: complete unless the data ends inside what could still become a CSI
        # or an ESC with intermediates.
        if re.fullmatch(rb"\x1b(?:\[[\x20-\x3f]*|[\x20-\x2f]*)", rest):
            return None
        return at + 1
    return at + match.end()
