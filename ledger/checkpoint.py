"""C2SP tlog-checkpoint bodies for the ledger's Merkle tree, and reading them back.

A checkpoint is the signed note (``bvisor.ledger.note``) of this text::

    bvisor-ledger/<ledger_id in hex>        origin: one log per ledger
    <tree size in decimal>                  number of events covered
    <base64 of the RFC 6962 root hash>      root of the tree over their records
    bvisor-head <seq> <event hash hex>      extension: the BLAKE3 chain head it covers

The extension line binds the same moment of the hash chain (the hash of event size-1), so
a checkpoint also works where ``verify --expect-head`` does; it is omitted for the empty
tree. Generic checkpoint verifiers ignore it (C2SP allows opaque extension lines).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Final

from bvisor.ledger.note import MAX_NOTE_BYTES, Note, NoteError, Verifier, parse_note, verify_note

__all__ = [
    "HEAD_EXTENSION",
    "ORIGIN_PREFIX",
    "Checkpoint",
    "SignedCheckpoint",
    "checkpoint_text",
    "ledger_origin",
    "parse_checkpoint",
    "read_checkpoint",
]

ORIGIN_PREFIX: Final = "bvisor-ledger/"
HEAD_EXTENSION: Final = "bvisor-head"
_MAX_SIZE: Final = (1 << 64) - 1


def ledger_origin(ledger_id: bytes) -> str:
    """The checkpoint origin line of the ledger with this id."""
    return ORIGIN_PREFIX + ledger_id.hex()


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """What a checkpoint states: the log, its size, its root, and the chain head."""

    origin: str
    size: int
    root: bytes
    head_hash: bytes | None = None  # hash of event size-1 (None: not stated)
    extensions: tuple[str, ...] = ()

    def ledger_id(self) -> bytes | None:
        """The ledger id named by a bvisor origin, else None."""
        if not self.origin.startswith(ORIGIN_PREFIX):
            return None
        try:
            value = bytes.fromhex(self.origin[len(ORIGIN_PREFIX) :])
        except ValueError:
            return None
        return value if len(value) == 16 else None


def checkpoint_text(origin: str, size: int, root: bytes, head_hash: bytes | None) -> str:
    """The note text of a checkpoint (ends in a newline, ready to sign)."""
    lines = [origin, str(size), base64.b64encode(root).decode("ascii")]
    if head_hash is not None and size > 0:
        lines.append(f"{HEAD_EXTENSION} {size - 1} {head_hash.hex()}")
    return "\n".join(lines) + "\n"


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
    for line in extensions:
        word, _, rest = line.partition(" ")
        if word != HEAD_EXTENSION:
            continue
        seq_text, _, hash_text = rest.partition(" ")
        try:
            head_hash = bytes.fromhex(hash_text)
        except ValueError:
            head_hash = b""
        if seq_text != str(size - 1) or len(head_hash) != 32:
            raise NoteError(f"checkpoint: malformed {HEAD_EXTENSION} line {line[:80]!r}")
    return Checkpoint(origin, size, root, head_hash, tuple(extensions))


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
