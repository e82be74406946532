"""A run's outputs as the launcher lists them: one strict grammar for its notes, the
report's facts and the report's artifacts.

After the workload exits, while its PID namespace's init still holds the run's mounts, the
launcher walks the roots the plan names (``linux.outputs.v1``) by fd and writes one note
per item. A note is ``<kind> <detail>``. The host turns each into the report fact
``(kind, detail)`` — an ``artifact`` note into an entry of the report's ``artifacts``
instead, and only when the host committed them — and replay re-derives the same items from
the recorded notes, so the three can never tell different stories.

The items, each field ``name:value``, in this order, one space apart, nothing else::

    output_listed       root:R path:P size:N sha256:H blake3:H
    output_skipped      root:R path:P kind:K
    outputs_truncated   root:R path:P limit:L
    artifact            sha256:H blake3:H size:N path:P
    artifact_failed     path:P errno:E
    outputs_listed      roots:R[,R...] since:N listed:N skipped:N bytes:N artifacts:N
                        truncated:yes|no commit:none|complete|abandoned
    outputs_unavailable reason:W

* ``R`` is a root as a path of the workload's root (absolute), ``P`` a path relative to
  it (for an artifact: relative to the temp root, which is the committed directory's
  layout). Both are escaped: every byte but ``A-Z a-z 0-9 . _ - ~ + = @`` and the ``/``
  between components is written ``%XX`` (upper-case hex), ``%`` included — so a name with
  spaces, control characters or bytes that are not UTF-8 reads back as exactly its bytes,
  a note is one line of printable ASCII, and each path has exactly one spelling.
* ``N`` is decimal without leading zeros; ``H`` 64 lower-case hex digits: ``sha256`` is the
  SHA-256 and ``blake3`` the plain (unkeyed) BLAKE3 of the file's bytes — what
  ``sha256sum`` and ``b3sum`` print, so anyone can check a file, and an in-toto statement
  can name an artifact as a subject by its sha256.
* ``K``: symlink, fifo, socket, char-device, block-device (never opened or followed),
  mount (another mount lies there; the walk does not cross it), unreadable (the kernel
  refused to open it), changed (it changed between being looked at and opened).
* ``L``: depth (a directory below the depth limit, not entered; the walk goes on),
  files, bytes, entries or paths (the walk stopped there: that many items reported,
  bytes hashed, directory entries looked at, bytes of escaped paths reported), or
  deadline (the run's wall deadline came while the walk was at ``P``: it stopped there,
  ``P`` and what it had not reached are not listed, and the run is a timeout).
* ``since``: for write roots only entries whose status changed in or after this second
  (Unix time; the second the run started) are reported — the delta of the run; a temp
  root is the run's own and reported whole.
* ``commit``: ``complete`` when every listed temp-root file was copied and the listing was
  not truncated (only then does the host commit); ``abandoned`` otherwise.
* ``W``: a word saying why nothing was listed (``init-gone``: the run's init was killed
  before the workload ended, so its mounts were gone).

The host adds one fact of its own when the plan commits: ``artifacts_committed count:N
dir:R`` once it renamed the staging directory to ``R`` (then the report's ``artifacts``
are exactly the ``artifact`` notes), or ``artifacts_not_committed reason:W`` (then the
report has no artifacts and nothing of the run reached ``R``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "ARTIFACT",
    "ARTIFACT_FAILED",
    "COMMITTED",
    "COMMIT_STATES",
    "DEADLINE",
    "FACT_KINDS",
    "LISTED",
    "NOTE_KINDS",
    "NOT_COMMITTED",
    "SKIPPED",
    "SKIP_KINDS",
    "SUMMARY",
    "TRUNCATED",
    "TRUNCATION_LIMITS",
    "UNAVAILABLE",
    "OutputItem",
    "OutputsGrammarError",
    "OutputsReport",
    "escape_path",
    "format_detail",
    "format_item",
    "parse_host_fact",
    "parse_item",
    "reached_deadline",
    "report_items",
    "unescape_path",
]

LISTED = "output_listed"
SKIPPED = "output_skipped"
TRUNCATED = "outputs_truncated"
ARTIFACT = "artifact"
ARTIFACT_FAILED = "artifact_failed"
SUMMARY = "outputs_listed"
UNAVAILABLE = "outputs_unavailable"
COMMITTED = "artifacts_committed"  # host facts, not launcher notes
NOT_COMMITTED = "artifacts_not_committed"

SKIP_KINDS = (
    "symlink",
    "fifo",
    "socket",
    "char-device",
    "block-device",
    "mount",
    "unreadable",
    "changed",
)
DEADLINE = "deadline"  # the truncation limit of a walk the run's wall deadline stopped
TRUNCATION_LIMITS = ("depth", "files", "bytes", "entries", "paths", DEADLINE)
COMMIT_STATES = ("none", "complete", "abandoned")

_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-~+=@")
_HEX = re.compile(r"[0-9a-f]{64}\Z")
_NUMBER = re.compile(r"(0|[1-9][0-9]{0,19})\Z")
_WORD = re.compile(r"[a-z0-9][a-z0-9-]{0,63}\Z")
_ERRNO = re.compile(r"E[A-Z0-9]{1,31}\Z")
_ESCAPE = re.compile(r"%([0-9A-F]{2})")


class OutputsGrammarError(ValueError):
    """An outputs note does not follow the grammar; the message names the field."""


# -- paths ---------------------------------------------------------------------------------


def escape_path(raw: bytes) -> str:
    """``raw`` in the escaped form (see the module docstring); ``/`` stays as it is."""
    return "".join(
        chr(byte) if byte in _SAFE or byte == 0x2F else f"%{byte:02X}" for byte in bytes(raw)
    )


def unescape_path(text: str) -> bytes:
    """The bytes an escaped path stands for; OutputsGrammarError unless it is canonical."""
    out = bytearray()
    index = 0
    while index < len(text):
        char = text[index]
        if char == "%":
            match = _ESCAPE.match(text, index)
            if match is None:
                raise OutputsGrammarError(f"bad escape at {index} in {text[:80]!r}")
            byte = int(match.group(1), 16)
            if byte in _SAFE or byte == 0x2F:
                raise OutputsGrammarError(f"byte {byte:#04x} must not be escaped in {text[:80]!r}")
            out.append(byte)
            index += 3
        elif ord(char) < 128 and (ord(char) in _SAFE or char == "/"):
            out.append(ord(char))
            index += 1
        else:
            raise OutputsGrammarError(f"character {char!r} must be escaped in {text[:80]!r}")
    return bytes(out)


def _relative(text: str) -> str:
    raw = unescape_path(text)
    parts = raw.split(b"/")
    if not raw or any(part in (b"", b".", b"..") for part in parts):
        raise OutputsGrammarError(f"{text[:80]!r} is not a relative path of named components")
    if b"\0" in raw:
        raise OutputsGrammarError(f"{text[:80]!r} holds a NUL byte")
    return text


def _absolute(text: str) -> str:
    raw = unescape_path(text)
    parts = raw.split(b"/")
    if not raw.startswith(b"/") or b"\0" in raw:
        raise OutputsGrammarError(f"{text[:80]!r} is not an absolute path")
    if raw != b"/" and any(part in (b"", b".", b"..") for part in parts[1:]):
        raise OutputsGrammarError(f"{text[:80]!r} is not a normalized absolute path")
    return text


def _roots(text: str) -> str:
    for root in text.split(","):
        _absolute(root)
    return text


def _pattern(regex: re.Pattern[str], what: str) -> Callable[[str], str]:
    def check(text: str) -> str:
        if not regex.match(text):
            raise OutputsGrammarError(f"{text[:80]!r} is not {what}")
        return text

    return check


def _one_of(*allowed: str) -> Callable[[str], str]:
    def check(text: str) -> str:
        if text not in allowed:
            raise OutputsGrammarError(f"{text[:40]!r} is not one of {', '.join(allowed)}")
        return text

    return check


_N = _pattern(_NUMBER, "a decimal number")
_H = _pattern(_HEX, "64 lower-case hex digits")

# kind -> its fields in order, each with the check of its value.
_GRAMMAR: Mapping[str, tuple[tuple[str, Callable[[str], str]], ...]] = {
    LISTED: (
        ("root", _absolute),
        ("path", _relative),
        ("size", _N),
        ("sha256", _H),
        ("blake3", _H),
    ),
    SKIPPED: (("root", _absolute), ("path", _relative), ("kind", _one_of(*SKIP_KINDS))),
    TRUNCATED: (
        ("root", _absolute),
        ("path", _relative),
        ("limit", _one_of(*TRUNCATION_LIMITS)),
    ),
    ARTIFACT: (("sha256", _H), ("blake3", _H), ("size", _N), ("path", _relative)),
    ARTIFACT_FAILED: (("path", _relative), ("errno", _pattern(_ERRNO, "an errno name"))),
    SUMMARY: (
        ("roots", _roots),
        ("since", _N),
        ("listed", _N),
        ("skipped", _N),
        ("bytes", _N),
        ("artifacts", _N),
        ("truncated", _one_of("yes", "no")),
        ("commit", _one_of(*COMMIT_STATES)),
    ),
    UNAVAILABLE: (("reason", _pattern(_WORD, "a lower-case word")),),
    COMMITTED: (("count", _N), ("dir", _absolute)),
    NOT_COMMITTED: (("reason", _pattern(_WORD, "a lower-case word")),),
}
_HOST_KINDS = (COMMITTED, NOT_COMMITTED)
NOTE_KINDS: tuple[str, ...] = tuple(kind for kind in _GRAMMAR if kind not in _HOST_KINDS)
# The report facts the notes become (an artifact note becomes an artifact, not a fact).
FACT_KINDS: tuple[str, ...] = tuple(kind for kind in NOTE_KINDS if kind != ARTIFACT)


@dataclass(frozen=True, slots=True)
class OutputItem:
    """One parsed outputs note: its kind and its fields (text, as written)."""

    kind: str
    fields: tuple[tuple[str, str], ...]

    @property
    def detail(self) -> str:
        return " ".join(f"{name}:{value}" for name, value in self.fields)

    @property
    def note(self) -> str:
        return f"{self.kind} {self.detail}"

    def get(self, name: str) -> str:
        for key, value in self.fields:
            if key == name:
                return value
        raise KeyError(name)

    def number(self, name: str) -> int:
        return int(self.get(name))


def format_item(kind: str, /, **values: object) -> str:
    """The note for ``kind`` with ``values`` (paths given escaped); checked by the parser."""
    return f"{kind} {format_detail(kind, **values)}"


def format_detail(kind: str, /, **values: object) -> str:
    """The detail of a ``kind`` item (a note without its kind; a host fact's detail)."""
    grammar = _GRAMMAR.get(kind)
    if grammar is None:
        raise OutputsGrammarError(f"{kind!r} is not an outputs item kind")
    if set(values) != {name for name, _ in grammar}:
        raise OutputsGrammarError(f"{kind}: fields {sorted(values)} are not its grammar's")
    return _parse(kind, " ".join(f"{name}:{values[name]}" for name, _ in grammar)).detail


def parse_item(note: str) -> OutputItem | None:
    """The outputs item a note states; None when the note is not an outputs note at all.

    A note whose first word is an outputs kind must follow the grammar exactly
    (OutputsGrammarError names the field), so no other note can pass for one and no
    outputs note can carry anything the grammar does not say.
    """
    kind, sep, rest = note.partition(" ")
    if kind not in NOTE_KINDS:
        return None
    return _parse(kind, rest if sep else None)


def parse_host_fact(kind: str, detail: str) -> OutputItem:
    """A host fact about the commit (``artifacts_committed``/``_not_committed``), strictly."""
    if kind not in _HOST_KINDS:
        raise OutputsGrammarError(f"{kind!r} is not a commit fact")
    return _parse(kind, detail)


def _parse(kind: str, rest: str | None) -> OutputItem:
    grammar = _GRAMMAR[kind]
    words = rest.split(" ") if rest is not None else []
    if len(words) != len(grammar):
        raise OutputsGrammarError(f"{kind}: {len(words)} fields, the grammar has {len(grammar)}")
    fields: list[tuple[str, str]] = []
    for word, (name, check) in zip(words, grammar, strict=True):
        key, colon, value = word.partition(":")
        if key != name or not colon:
            raise OutputsGrammarError(f"{kind}: expected field {name!r}, got {word[:40]!r}")
        try:
            fields.append((name, check(value)))
        except OutputsGrammarError as exc:
            raise OutputsGrammarError(f"{kind}.{name}: {exc}") from None
    return OutputItem(kind, tuple(fields))


@dataclass(frozen=True, slots=True)
class OutputsReport:
    """What a run's outputs notes put in its report."""

    items: tuple[OutputItem, ...]
    facts: tuple[tuple[str, str], ...]  # (kind, detail) in note order
    artifacts: tuple[str, ...]  # the artifact notes' details, in order
    commit_complete: bool  # the summary says every file was copied and nothing truncated

    @property
    def reached_deadline(self) -> bool:
        """The walk was stopped by the run's wall deadline (a ``deadline`` truncation)."""
        return any(item.kind == TRUNCATED and item.get("limit") == DEADLINE for item in self.items)


def reached_deadline(notes: Sequence[str]) -> bool:
    """Whether the launcher's notes say its outputs walk was stopped by the wall deadline.

    False for notes that break the grammar: the host reports those as malformed, and a
    listing it cannot read proves nothing about the deadline either way."""
    try:
        return report_items(notes).reached_deadline
    except OutputsGrammarError:
        return False


def report_items(notes: Sequence[str]) -> OutputsReport:
    """The outputs items of a launcher's notes (OutputsGrammarError on a malformed one)."""
    items = tuple(item for item in (parse_item(note) for note in notes) if item is not None)
    facts = tuple((item.kind, item.detail) for item in items if item.kind != ARTIFACT)
    artifacts = tuple(item.detail for item in items if item.kind == ARTIFACT)
    summaries = [item for item in items if item.kind == SUMMARY]
    complete = len(summaries) == 1 and summaries[0].get("commit") == "complete"
    return OutputsReport(items, facts, artifacts, complete)
