"""Judging whether the workload's lines may show as beginning with ``bvisor``.

Where ``bvisor run``'s output is a log or a pipe, bvisor's own last lines cannot be drawn
differently from the workload's, so bvisor says when the workload's output could pass for
one of its lines once the log is shown on a terminal. Modelling every terminal is out of
reach, so the judge over-approximates (fails closed), in two tiers:

* **Terminal controls anywhere** — ESC, a C1 control (encoded in UTF-8 or a raw byte), or
  a bidirectional control — and no line count is trustworthy: one sequence can move the
  cursor to an earlier row, set tab stops or margins, hide text (conceal, colours, the
  line-drawing set) or start a string that swallows lines, and terminals parse them
  differently. Such output is *marked*: bvisor says any of its lines may show as its own.
  Attacks drew forgeries through every one of these (cursor up and DCH, save and restore,
  a line feed inside an escape, tab stops set a line before, C1 string controls, erase to
  line start), and a per-line judge cannot bound them.
* **Plain text** (at most CR, BS, HT, VT, FF and controls that draw nothing) is judged per
  line. Each line is reduced to its *skeleton*: controls that draw nothing (NUL, DEL, BEL,
  SI, ...) and zero-width or combining characters dropped, blanks as spaces, letters
  folded (case, NFKC compatibility forms such as full-width letters, and a table of common
  look-alikes from Cyrillic, Greek, Cherokee, Lisu and others — not a full confusables
  skeleton). A line counts when it may move the cursor back (CR, BS) and its skeleton
  holds each letter of ``bvisor``; or when the skeleton holds ``bvisor`` after nothing but
  blanks, or at ASCII column 40 or later (a narrower terminal's wrap may start a row
  there), or anywhere in a line holding a character that is not ASCII (its width, 0 to
  2 columns, is the terminal's to choose, so the column is unknown).

Letters are also folded to their base (an accent or other combining mark dropped, so
``ï`` is ``i``), and the ASCII ``0``, ``1`` and ``l`` are read as ``o``, ``i`` and ``i``.

VT and FF end a line as a newline does. The state carried between chunks is bounded: a
UTF-8 character cut by a chunk's end, and a few facts about the current line. So is the
judge's work: a chunk is scanned for marks and cursor moves by the string searches, and
only the lines holding one are looked at one by one; past :data:`EXAMINE_LIMIT` such lines,
or :data:`UNICODE_LIMIT` bytes of text that is not ASCII (whose skeleton is made a
character at a time, about 12 MB/s), the judge stops and the output is *marked* as for
controls (``overflow``), so output made to cost the host a line's or a character's work
per few bytes (``yes bvisor``) costs it a bounded amount: judging is the host's work, out
of the run's cgroup and its CPU budget.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["EXAMINE_LIMIT", "UNICODE_LIMIT", "LookalikeCounter", "holds_escape"]

EXAMINE_LIMIT: Final = 10_000  # lines judged one by one before the judge marks the output
UNICODE_LIMIT: Final = 8 << 20  # bytes of text that is not ASCII judged, likewise

_MARK: Final = "bvisor"
_LETTERS: Final = frozenset(_MARK)
_WRAP_COLUMN: Final = 40  # a mark this far along may start a wrapped row
_MOVE: Final = "\x01"  # in a skeleton: the cursor went back here (CR, BS)
_UNSEEN: Final = "\x02"  # in a skeleton: a character drawn as nothing, or of unknown width

# ESC; a C1 control, encoded or as a raw byte that follows no UTF-8 lead (a chunk's first
# byte may); a bidirectional control (LRM, RLM, ALM, LRE..RLO, LRI..PDI).
# Each as two patterns: for any bytes, and for bytes proven UTF-8 (no stray byte, so only
# the encoded forms; ESC is tested apart), the second a search many times faster.
_C1 = rb"\xc2[\x80-\x9f]"
_BIDI = rb"|\xe2\x80[\x8e\x8f\xaa-\xae]|\xe2\x81[\xa6-\xa9]|\xd8\x9c"
_ESCAPE_OR_C1 = rb"\x1b|" + _C1 + rb"|(?:^|[\x00-\x7f])[\x80-\x9f]"
_ESCAPES = (re.compile(_ESCAPE_OR_C1), re.compile(_C1))
_CONTROLS = (re.compile(_ESCAPE_OR_C1 + _BIDI), re.compile(_C1 + _BIDI))
# CR and BS take the cursor back; VT and FF down, as a newline; other C0 controls and DEL
# draw nothing (HT and LF stay).
_C0 = bytes.maketrans(b"\r\b\v\f", b"\x01\x01\n\n")
_DRAW_NOTHING = bytes(c for c in range(0x20) if c not in b"\t\n\r\b\v\f") + b"\x7f"

# Letters drawn like those of the mark that NFKC and casefolding do not fold.
_LOOKALIKES: Final = {
    "\u044c": "b", "\u0432": "b", "\u13cf": "b", "\u0185": "b", "\u15af": "b",
    "\u1472": "b", "\ua4d0": "b", "\u0253": "b",
    "\u0456": "i", "\u0131": "i", "\u03b9": "i", "\u04cf": "i", "\u0269": "i",
    "\u2373": "i", "\uab75": "i", "\ua4f2": "i", "\u13a5": "i",
    "\u043e": "o", "\u03bf": "o", "\u03c3": "o", "\u0585": "o", "\u0ce6": "o",
    "\u2c9f": "o", "\u1d0f": "o", "\u0b66": "o", "\ua4f3": "o", "\u0d20": "o",
    "\u0455": "s", "\u01bd": "s", "\ua731": "s", "\uabaa": "s", "\u13da": "s",
    "\ua4e2": "s",
    "\u03bd": "v", "\u0475": "v", "\u1d20": "v", "\u05d8": "v", "\u2228": "v",
    "\uaba9": "v", "\u13d9": "v", "\ua4e6": "v",
    "\u0433": "r", "\u1d26": "r", "\u2c85": "r", "\uab47": "r", "\uab81": "r",
    "\u13a1": "r", "\ua4e3": "r", "\u027e": "r", "\u027c": "r",
    "\u0966": "o", "\u09e6": "o", "\u0a66": "o", "\u0ae6": "o", "\u0be6": "o",
    "\u0c66": "o", "\u0d66": "o", "\u0e50": "o", "\u0ed0": "o", "\u1040": "o",
}  # fmt: skip
# ASCII drawn like letters of the mark: a zero like an o, a one and an ell like an i.
_ASCII_FOLD: Final = bytes.maketrans(b"01l", b"oii")
# Drawn as blanks, though their category says letter or symbol (Hangul fillers, Braille).
_BLANKS: Final = frozenset("\u115f\u3164\uffa0\u2800")
# Drawn with no width: Hangul medial and final jamo outside a syllable block.
_NO_WIDTH_RANGES: Final = ((0x1160, 0x11FF), (0xD7B0, 0xD7FF))
_NOTHING: Final = frozenset({"Cc", "Cf", "Mn", "Me", "Cs", "Co", "Cn", "Zl", "Zp"})


class _Skeleton(dict[int, str]):
    """``str.translate`` table from a character to what the judge sees of it, filled in
    on first sight (a terminal's output repeats few distinct characters)."""

    def __missing__(self, code: int) -> str:
        self[code] = seen = _seen_as(chr(code))
        return seen


def _seen_as(char: str) -> str:
    import unicodedata  # only once output holds a character that is not ASCII

    if char in "\t\n" + _MOVE + _UNSEEN:
        return char
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:
        return "\ufffd"  # a byte that is no UTF-8: drawn as a replacement mark
    if char in _BLANKS:
        return " "
    if any(low <= code <= high for low, high in _NO_WIDTH_RANGES):
        return _UNSEEN
    category = unicodedata.category(char)
    if category == "Zs":
        return " "
    if category in _NOTHING:
        return _UNSEEN
    if char in _LOOKALIKES:
        return _LOOKALIKES[char]  # before folding: casefold maps some (Cherokee) away
    folded = unicodedata.normalize("NFKC", char).casefold()
    # The base letters: an accent or other combining mark drawn on one hides no difference
    # a reader would catch at a glance (U+00EF and U+00EC read as i).
    based = "".join(
        c for c in unicodedata.normalize("NFKD", folded) if not unicodedata.combining(c)
    )
    seen = "".join(_LOOKALIKES.get(c, c) for c in based or folded).translate(_ASCII_TEXT)
    # Folded to ASCII, it keeps what it was: a character whose width is the terminal's.
    return seen + _UNSEEN if seen.isascii() and not char.isascii() else seen


_TABLE = _Skeleton()
_ASCII_TEXT: Final = {ord(a): ord(b) for a, b in zip("01l", "oii", strict=True)}


def _skeleton(data: bytes) -> str:
    """What a terminal may draw of plain ``data`` (no cut character at its end), with
    ``_MOVE`` where the cursor went back, ``_UNSEEN`` for each character drawn as nothing
    (whose width a terminal may still take) and ``\\n`` where a line ends."""
    data = data.translate(_C0, _DRAW_NOTHING)
    if data.isascii():
        return data.lower().translate(_ASCII_FOLD).decode("ascii")
    return data.decode("utf-8", "surrogateescape").translate(_TABLE)


def _unknown_width(text: str) -> bool:
    """Whether ``text`` holds a character whose width a terminal chooses (0 to 2)."""
    return _UNSEEN in text or not text.isascii()


class LookalikeCounter:
    """Counts plain-text lines that may be drawn as beginning with ``bvisor``, and marks
    output holding terminal controls (see module)."""

    def __init__(self) -> None:
        self.count = 0
        self.controls = False  # terminal controls seen: any line may show as bvisor's
        self.overflow = False  # too many lines to judge one by one: the same verdict
        self.examined = 0  # lines judged one by one (see EXAMINE_LIMIT)
        self.unicode_bytes = 0  # bytes judged of chunks that are not ASCII (UNICODE_LIMIT)
        self._held = b""  # a UTF-8 character cut by the chunk's end, judged with the next
        self._reset_line()

    def _reset_line(self) -> None:
        self._moved = False
        self._letters: set[str] = set()
        self._tail = ""  # the line's last skeleton characters, for a mark cut by a chunk
        self._column = 0  # where the tail starts (ASCII columns)
        self._blank = True  # nothing but blanks drawn before the tail
        self._wide = False  # the line holds a character that is not ASCII
        self._counted = False

    @property
    def marked(self) -> bool:
        """Any line of the output may show as bvisor's (controls, or too much to judge)."""
        return self.controls or self.overflow

    def feed(self, chunk: bytes) -> None:
        if self.marked:
            return  # nothing more can be said of this output
        data = self._held + chunk
        cut = _cut_point(data)
        self._held = data[cut:]
        self._judge(data[:cut])

    def flush(self) -> None:
        """The stream ended: judge what was held back (a cut character)."""
        held, self._held = self._held, b""
        if held and not self.marked:
            self._judge(held)

    def _judge(self, data: bytes) -> None:
        if _holds(_CONTROLS, data):
            self.controls = True
            return
        if not data.isascii():
            self.unicode_bytes += len(data)
            if self.unicode_bytes > UNICODE_LIMIT:
                self.overflow = True  # its skeleton is made a character at a time
                return
        text = _skeleton(data)
        first, ended, rest = text.partition("\n")
        self._line_piece(first)
        if not ended:
            return
        whole, _, last = rest.rpartition("\n")
        counted, examined = _whole_lines_counted(whole)
        self.count += counted
        self.examined += examined
        if self.examined > EXAMINE_LIMIT:
            self.overflow = True  # judged no further: any line may show as bvisor's
            return
        self._reset_line()
        self._line_piece(last)

    def _line_piece(self, piece: str) -> None:
        """The next part of the current line (no newline in it)."""
        if self._counted or not piece:
            return
        if _MOVE in piece:
            self._moved = True
        if _unknown_width(piece):
            self._wide = True
        self._letters.update(_LETTERS.intersection(piece))
        if self._moved and self._letters >= _LETTERS:
            self._count_line()
            return
        joined = self._tail + piece.replace(_MOVE, "").replace(_UNSEEN, "")
        if _MARK in joined and _mark_may_begin(
            joined, blank=self._blank, column=self._column, wide=self._wide
        ):
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


def _whole_lines_counted(text: str) -> tuple[int, int]:
    """How many of the whole lines in ``text`` count (nothing carried into them), and how
    many were looked at one by one to tell: only the lines the string searches find a
    mark in (its letters drawn in a row, once what draws nothing is dropped) or a cursor
    move on. Plain ASCII without a move, the common case, is searched as it is."""
    if _MOVE not in text and _UNSEEN not in text and text.isascii():
        return _marked_lines_counted(text)
    lines = text.split("\n")
    drawn = text.replace(_MOVE, "").replace(_UNSEEN, "")  # the same lines, as drawn
    wanted = _lines_holding(drawn, _MARK) | _lines_holding(text, _MOVE)
    return sum(1 for at in wanted if _line_counts(lines[at])), len(wanted)


def _marked_lines_counted(text: str) -> tuple[int, int]:
    """:func:`_whole_lines_counted` of plain ASCII without a move: each line holding a mark
    found by one search (a search that finds nothing scans to the end once)."""
    count = examined = 0
    at = text.find(_MARK)
    while at != -1:
        start = text.rfind("\n", 0, at) + 1
        end = text.find("\n", at)
        end = len(text) if end == -1 else end
        count += _mark_may_begin(text[start:end], blank=True, column=0, wide=False)
        examined += 1
        at = text.find(_MARK, end)
    return count, examined


def _lines_holding(text: str, needle: str) -> set[int]:
    """The numbers of the lines of ``text`` that hold ``needle`` (which holds no newline),
    found by searching, not line by line."""
    found: set[int] = set()
    line, counted_to = 0, 0
    at = text.find(needle)
    while at != -1:
        line += text.count("\n", counted_to, at)
        counted_to = at
        found.add(line)
        end = text.find("\n", at)
        if end == -1:
            break
        at = text.find(needle, end)
    return found


def _line_counts(line: str) -> bool:
    """Whether one whole line (a skeleton) counts."""
    if _MOVE in line and set(line) >= _LETTERS:
        return True
    drawn = line.replace(_MOVE, "").replace(_UNSEEN, "")
    return _MARK in drawn and _mark_may_begin(
        drawn, blank=True, column=0, wide=_unknown_width(line)
    )


def _mark_may_begin(line: str, *, blank: bool, column: int, wide: bool) -> bool:
    """Whether a mark in ``line`` (drawn from ``column``, after only blanks if ``blank``)
    comes after nothing but blanks, far enough along to start a wrapped row, or on a line
    whose columns are unknown (``wide``: it holds a character that is not ASCII)."""
    if wide:
        return True
    at = line.find(_MARK)
    while at != -1:
        before = line[:at].replace(_MOVE, "")
        if (blank and not before.strip()) or column + len(before.expandtabs()) >= _WRAP_COLUMN:
            return True
        at = line.find(_MARK, at + 1)
    return False


def holds_escape(data: bytes) -> bool:
    """Whether ``data`` holds ESC or a C1 control (an escape sequence's start): what
    calls for the string terminator and reset before bvisor's own lines."""
    return _holds(_ESCAPES, data)


def _holds(patterns: tuple[re.Pattern[bytes], re.Pattern[bytes]], data: bytes) -> bool:
    """``patterns`` (ESC, C1, ...: for any bytes, for UTF-8) in ``data``; ASCII, only ESC
    can be (a fast test); UTF-8, only an encoded control."""
    if b"\x1b" in data:
        return True
    if data.isascii():
        return False
    any_bytes, utf8 = patterns
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:  # a stray byte, or a character a chunk's edge cut
        return any_bytes.search(data) is not None
    return utf8.search(data) is not None


def _cut_point(data: bytes) -> int:
    """Where to cut ``data`` so that a UTF-8 character cut short by its end is held back
    for the next chunk (its bytes would otherwise be judged as stray bytes)."""
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
