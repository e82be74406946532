"""C2SP tlog-checkpoint bodies for the ledger's Merkle tree, and reading them back.

A checkpoint is the signed note (``bvisor.ledger.note``) of this text::

    bvisor-ledger/<ledger_id in hex>        origin: one log per ledger
    <tree size in decimal>                  number of events covered
    <base64 of the RFC 6962 root hash>      root of the tree over their records
    bvisor-head <seq> <event hash hex>      extension: the BLAKE3 chain head it covers
    bvisor-recorded <run id hex> <seqs>     extension, one per run: the signer recorded
                                            these events of the run itself

The head line binds the same moment of the hash chain (the hash of event size-1), so a
checkpoint also works where ``verify --expect-head`` does; it is omitted for the empty
tree. A ``bvisor-recorded`` line is written by ``bvisor run --key`` for the run whose last
transaction the checkpoint is signed in: ``<seqs>`` is a comma-separated list of event
seqs and ``first-last`` ranges, ascending. A signature says what the ledger held, not who
wrote it (whoever can write the ledger file can append); this line is the signer's word
on which of the runs it covers are its own, so a run appended by someone else, or an event
added to one of its runs, shows as not recorded by any signer. Generic checkpoint
verifiers ignore both lines (C2SP allows opaque extension lines), and so do bvisor versions
before the recorded line.
"""

from __future__ import annotations

import base64
import binascii
import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from bvisor.ledger.note import MAX_NOTE_BYTES, Note, NoteError, Verifier, parse_note, verify_note

__all__ = [
    "HEAD_EXTENSION",
    "ORIGIN_PREFIX",
    "RECORDED_EXTENSION",
    "Checkpoint",
    "SignedCheckpoint",
    "checkpoint_text",
    "ledger_origin",
    "parse_checkpoint",
    "read_checkpoint",
    "seq_ranges",
    "within",
]

ORIGIN_PREFIX: Final = "bvisor-ledger/"
HEAD_EXTENSION: Final = "bvisor-head"
RECORDED_EXTENSION: Final = "bvisor-recorded"
_MAX_RUN_ID_BYTES: Final = 64  # as the ledger's run ids
_MAX_SIZE: Final = (1 << 64) - 1


def ledger_origin(ledger_id: bytes) -> str:
    """The checkpoint origin line of the ledger with this id."""
    return ORIGIN_PREFIX + ledger_id.hex()


Ranges = tuple[tuple[int, int], ...]  # ascending, disjoint, not adjacent (first, last) seqs
Recorded = tuple[bytes, Ranges]  # a run id and the ranges of its events the signer recorded


def seq_ranges(seqs: list[int]) -> Ranges:
    """Ascending distinct seqs as ranges of consecutive ones."""
    ranges: list[tuple[int, int]] = []
    for seq in seqs:
        if ranges and seq == ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], seq)
        else:
            ranges.append((seq, seq))
    return tuple(ranges)


def within(ranges: Sequence[tuple[int, int]], seq: int) -> bool:
    """Whether ``seq`` lies in one of ``ranges`` (sorted by first seq, as parsed ones are)."""
    index = bisect.bisect_right(ranges, (seq, 1 << 64)) - 1
    return index >= 0 and ranges[index][0] <= seq <= ranges[index][1]


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """What a checkpoint states: the log, its size, its root, and the chain head."""

    origin: str
    size: int
    root: bytes
    head_hash: bytes | None = None  # hash of event size-1 (None: not stated)
    extensions: tuple[str, ...] = ()
    recorded: tuple[Recorded, ...] = ()  # the runs the signer recorded itself

    def ledger_id(self) -> bytes | None:
        """The ledger id named by a bvisor origin, else None."""
        if not self.origin.startswith(ORIGIN_PREFIX):
            return None
        try:
            value = bytes.fromhex(self.origin[len(ORIGIN_PREFIX) :])
        except ValueError:
            return None
        return value if len(value) == 16 else None


def checkpoint_text(
    origin: str,
    size: int,
    root: bytes,
    head_hash: bytes | None,
    recorded: tuple[Recorded, ...] = (),
) -> str:
    """The note text of a checkpoint (ends in a newline, ready to sign); ``recorded``: the
    runs the signer recorded itself, each with its events' seq ranges (below size)."""
    lines = [origin, str(size), base64.b64encode(root).decode("ascii")]
    if head_hash is not None and size > 0:
        lines.append(f"{HEAD_EXTENSION} {size - 1} {head_hash.hex()}")
    for run_id, seqs in recorded:
        lines.append(f"{RECORDED_EXTENSION} {run_id.hex()} {_ranges_text(seqs)}")
    return "\n".join(lines) + "\n"


def _ranges_text(ranges: Ranges) -> str:
    """``0,4-9``: each range as ``first-last``, or ``first`` alone when it is one seq."""
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in ranges)


def _recorded(line: str, size: int) -> Recorded:
    """One ``bvisor-recorded`` line's run id and seqs; NoteError unless well formed: a
    lowercase hex run id of 1..64 bytes, then ascending seqs below ``size`` in the form
    :func:`_ranges_text` writes (so one statement has one text)."""
    _word, _, rest = line.partition(" ")
    run_text, _, ranges = rest.partition(" ")
    bad = NoteError(f"checkpoint: malformed {RECORDED_EXTENSION} line {line[:80]!r}")
    try:
        run_id = bytes.fromhex(run_text)
    except ValueError:
        raise bad from None
    if run_text != run_id.hex() or not 1 <= len(run_id) <= _MAX_RUN_ID_BYTES or not ranges:
        raise bad
    parsed: list[tuple[int, int]] = []
    for part in ranges.split(","):
        first, dash, last = part.partition("-")
        bounds = [first, last] if dash else [first]
        if not all(b.isascii() and b.isdigit() and (b == "0" or b[0] != "0") for b in bounds):
            raise bad
        if any(len(b) > 20 for b in bounds):
            raise bad
        low, high = int(bounds[0]), int(bounds[-1])
        if (dash and low >= high) or high >= size or (parsed and low <= parsed[-1][1] + 1):
            raise bad  # empty, beyond the tree, unordered, or two parts that are one range
        parsed.append((low, high))
    return run_id, tuple(parsed)


def _body(text: str) -> Checkpoint:
    lines = text.split("\n")
    if lines[-1] != "" or len(lines) < 4:
        raise NoteError("checkpoint: expected origin, tree size and root hash lines")
    lines = lines[:-1]
    origin, size_text, root_text, *extensions = lines
    if not origin or any(c.isspace() or c == "+" for c in origin):
        raise NoteError("checkpoint: the origin line must be non-empty, without spaces or '+'")
    if not (size_text.isascii() and size_text.isdigit()) or (
        size_text != "0" and size_text.startswith("0")
    ):
        raise NoteError(f"checkpoint: tree size {size_text[:30]!r} is not a decimal number")
    if len(size_text) > 20 or int(size_text) > _MAX_SIZE:
        raise NoteError("checkpoint: tree size is too large")
    size = int(size_text)
    try:
        root = base64.b64decode(root_text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        root = b""
    if len(root) != 32:
        raise NoteError("checkpoint: the root hash line is not base64 of 32 bytes")
    if any(not line for line in extensions):
        raise NoteError("checkpoint: extension lines must not be empty")
    head_hash = None
    recorded: list[Recorded] = []
    for line in extensions:
        word, _, rest = line.partition(" ")
        if word == RECORDED_EXTENSION:
            recorded.append(_recorded(line, size))
            if len({run for run, _ in recorded}) != len(recorded):
                raise NoteError(f"checkpoint: two {RECORDED_EXTENSION} lines for one run")
            continue
        if word != HEAD_EXTENSION:
            continue
        seq_text, _, hash_text = rest.partition(" ")
        try:
            head_hash = bytes.fromhex(hash_text)
        except ValueError:
            head_hash = b""
        if seq_text != str(size - 1) or len(head_hash) != 32:
            raise NoteError(f"checkpoint: malformed {HEAD_EXTENSION} line {line[:80]!r}")
    return Checkpoint(origin, size, root, head_hash, tuple(extensions), tuple(recorded))


@dataclass(frozen=True, slots=True)
class SignedCheckpoint:
    """A checkpoint with the note it came in (so it can be re-emitted byte for byte)."""

    checkpoint: Checkpoint
    note: Note

    @property
    def text(self) -> str:
        return self.note.encoded()

    def verified_by(self, verifiers: list[Verifier]) -> list[Verifier]:
        """The trusted keys that signed it (NoteError if none did, or one fails)."""
        return verify_note(self.note, verifiers)


def parse_checkpoint(data: bytes | str) -> SignedCheckpoint:
    """Parse a signed checkpoint note; signatures are *not* checked here."""
    note = parse_note(data)
    return SignedCheckpoint(_body(note.text), note)


def read_checkpoint(path: str) -> SignedCheckpoint:
    """Read and parse a checkpoint file, naming the file in every error."""
    try:
        with open(path, "rb") as stream:
            data = stream.read(MAX_NOTE_BYTES + 1)
    except OSError as exc:
        raise NoteError(f"checkpoint {path}: cannot read ({exc.strerror or exc})") from None
    try:
        return parse_checkpoint(data)
    except NoteError as exc:
        raise NoteError(f"checkpoint {path}: {exc}") from None
