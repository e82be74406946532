"""A transparency-log witness (C2SP tlog-witness semantics), kept in a local directory.

A witness remembers, per log — its origin and the log's public key — the last checkpoint
it cosigned, and cosigns a newer one only with a valid RFC 9162 consistency proof from
that one, so no log can show it two histories. ``bvisor-witness`` runs it as a command;
each host's ledger, witnessed by other hosts, is then hard to rewrite anywhere.

Requests are the tlog-witness ``add-checkpoint`` body::

    old <size>\\n
    <base64 consistency proof hash>\\n   (zero to 63 lines)
    \\n
    <signed checkpoint note>

and the answer is decided as the HTTP protocol would (its status code kept in
:class:`WitnessRefusal`): no trusted log with that origin, 404; no signature by the
log's key, 403; old size above the checkpoint's, 400; old size not the one cosigned last,
409 (with that size); a proof that does not verify, 422; the same size with another root,
409. Otherwise the new checkpoint is recorded, atomically with the check (under a lock,
by rename), and the answer is a cosignature line (C2SP tlog-cosignature, Ed25519)::

    — <witness name> base64(key id (4) || timestamp (8, big-endian) || signature (64))

signing ``cosignature/v1\\ntime <timestamp>\\n`` followed by the checkpoint's note text,
with key id ``SHA-256(name || 0x0A || 0x04 || public key)[:4]``.

State layout (docs/FORMATS.md, "Witness"): ``witness.key`` / ``witness.pub`` (the
cosigning key, type 0x04), ``logs/<id>.json`` per trusted log, with ``id`` the first 16 hex
digits of SHA-256(origin || 0x0A || log verifier key), and a ``lock`` file.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import hashlib
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from bvisor.ledger.checkpoint import SignedCheckpoint, parse_checkpoint
from bvisor.ledger.errors import LedgerError
from bvisor.ledger.merkle import ProofError, verify_consistency
from bvisor.ledger.note import (
    ALG_COSIGNATURE,
    ALG_ED25519,
    NoteError,
    NoteSignature,
    Signer,
    Verifier,
    parse_note,
    parse_verifier,
)
from bvisor.ownership import others_may_change

__all__ = [
    "Cosignature",
    "LogState",
    "Witness",
    "WitnessError",
    "WitnessRefusal",
    "cosignature_message",
    "parse_request",
    "verify_cosignatures",
]

MAX_PROOF_LINES: Final = 63
_LOGS: Final = "logs"


class WitnessError(LedgerError):
    """A witness directory or key that cannot be used (names the file)."""


class WitnessRefusal(LedgerError):
    """The witness will not cosign; ``status`` is the tlog-witness HTTP status it maps to."""

    def __init__(self, status: int, message: str, size: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.size = size  # 409 for an old size mismatch: the size cosigned last


def cosignature_message(timestamp: int, note_text: str) -> bytes:
    """What an Ed25519 cosignature signs (C2SP tlog-cosignature v1)."""
    return f"cosignature/v1\ntime {timestamp}\n".encode("ascii") + note_text.encode("utf-8")


@dataclass(frozen=True, slots=True)
class Cosignature:
    """A verified cosignature: by whom, and when (POSIX seconds)."""

    witness: str
    timestamp: int


def verify_cosignatures(
    checkpoint: SignedCheckpoint, witnesses: list[Verifier]
) -> list[Cosignature]:
    """The cosignatures on ``checkpoint`` by ``witnesses`` (type 0x04 keys) that verify."""
    found: list[Cosignature] = []
    for signature in checkpoint.note.signatures:
        for witness in witnesses:
            if witness.alg != ALG_COSIGNATURE or witness.name != signature.name:
                continue
            if witness.key_id != signature.key_id or len(signature.signature) != 72:
                continue
            timestamp = int.from_bytes(signature.signature[:8], "big")
            message = cosignature_message(timestamp, checkpoint.note.text)
            if not witness.verify(message, signature.signature[8:]):
                raise NoteError(f"the cosignature of witness {witness.name} does not verify")
            found.append(Cosignature(witness.name, timestamp))
    return found


@dataclass(frozen=True, slots=True)
class LogState:
    """One trusted log: its origin and key, and the last checkpoint cosigned for it."""

    origin: str
    key: Verifier
    size: int
    root: bytes | None
    checkpoint: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "origin": self.origin,
            "log_key": self.key.text(),
            "size": self.size,
            "root": None if self.root is None else base64.b64encode(self.root).decode("ascii"),
            "checkpoint": self.checkpoint,
        }


def _missing_directories(path: Path) -> list[Path]:
    """The directories from the first missing one above ``path`` down to ``path``."""
    missing: list[Path] = []
    current = Path(os.path.abspath(path))
    while not os.path.lexists(current) and current.parent != current:
        missing.append(current)
        current = current.parent
    return missing[::-1]


def _log_id(origin: str, key: Verifier) -> str:
    return hashlib.sha256(origin.encode("utf-8") + b"\n" + key.text().encode("ascii")).hexdigest()[
        :16
    ]


def parse_request(data: bytes) -> tuple[int, list[bytes], SignedCheckpoint]:
    """Split an ``add-checkpoint`` body; WitnessRefusal(400) when it is malformed."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise WitnessRefusal(400, "request: not UTF-8") from None
    head, sep, note = text.partition("\n\n")
    if not sep:
        raise WitnessRefusal(400, "request: no blank line before the checkpoint")
    lines = head.split("\n")
    first = lines[0]
    size_text = first.removeprefix("old ")
    if first == size_text or not (size_text.isascii() and size_text.isdigit()):
        raise WitnessRefusal(400, "request: the first line must be 'old <size>'")
    if size_text != "0" and size_text.startswith("0"):
        raise WitnessRefusal(400, "request: the old size has leading zeroes")
    if len(lines) - 1 > MAX_PROOF_LINES:
        raise WitnessRefusal(400, f"request: more than {MAX_PROOF_LINES} proof lines")
    proof: list[bytes] = []
    for number, line in enumerate(lines[1:], start=2):
        try:
            value = base64.b64decode(line.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError, ValueError):
            value = b""
        if len(value) != 32:
            raise WitnessRefusal(400, f"request: line {number} is not a base64 hash")
        proof.append(value)
    try:
        checkpoint = parse_checkpoint(note)
    except NoteError as exc:
        raise WitnessRefusal(400, f"request: {exc}") from None
    return int(size_text), proof, checkpoint


class Witness:
    """A witness over the state directory ``root`` (see module)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def key_path(self) -> Path:
        return self.root / "witness.key"

    def signer(self) -> Signer:
        from bvisor.ledger.keys import load_signer

        try:
            return load_signer(self.key_path, (ALG_COSIGNATURE,))
        except LedgerError as exc:
            raise WitnessError(f"{exc} (run 'bvisor-witness init')") from None

    def init(self, name: str) -> Verifier:
        """Make the witness's cosigning key (type 0x04) and the state directory (0700,
        with its missing parents). WitnessError naming the directory when it cannot be
        made; a failed init leaves no directory it made behind."""
        from bvisor.ledger.keys import write_keypair

        self._state_ours()
        made: list[Path] = []
        try:
            for directory in (*_missing_directories(self.root), self.root / _LOGS):
                if not directory.is_dir():
                    directory.mkdir(mode=0o700)
                    made.append(directory)
            signer, _pub = write_keypair(self.key_path, name, ALG_COSIGNATURE)
        except (OSError, LedgerError) as exc:
            for directory in reversed(made):
                with contextlib.suppress(OSError):
                    directory.rmdir()
            if isinstance(exc, LedgerError):
                raise
            raise WitnessError(
                f"cannot make the witness state directory {self.root} ({exc.strerror or exc})"
            ) from None
        return signer.verifier

    def logs(self) -> list[LogState]:
        self._state_ours()
        directory = self.root / _LOGS
        if not directory.is_dir():
            return []
        return [self._read(path) for path in sorted(directory.glob("*.json"))]

    def add_log(self, origin: str, key: Verifier) -> LogState:
        """Trust ``key`` for the log ``origin`` (starting from size 0); idempotent."""
        if key.alg != ALG_ED25519:
            raise WitnessError("log key: expected an Ed25519 signing key (type 0x01)")
        if not origin or any(c.isspace() or c == "+" for c in origin):
            raise WitnessError(f"origin {origin!r}: must be non-empty, without spaces or '+'")
        with self._locked():
            path = self.root / _LOGS / f"{_log_id(origin, key)}.json"
            if path.exists():
                return self._read(path)
            state = LogState(origin, key, 0, None, None)
            self._write(path, state)
            return state

    def add_checkpoint(self, data: bytes, now: int | None = None) -> tuple[str, LogState]:
        """Check a request (see module) and cosign it: the cosignature line, the new state."""
        old_size, proof, checkpoint = parse_request(data)
        signer = self.signer()
        with self._locked():
            candidates = [s for s in self.logs() if s.origin == checkpoint.checkpoint.origin]
            if not candidates:
                raise WitnessRefusal(404, f"unknown log {checkpoint.checkpoint.origin!r}")
            state = self._signed_by(candidates, checkpoint)
            new = checkpoint.checkpoint
            if old_size > new.size:
                raise WitnessRefusal(
                    400, f"old size {old_size} is above the checkpoint's {new.size}"
                )
            if old_size != state.size:
                raise WitnessRefusal(
                    409,
                    f"old size {old_size} is not the size cosigned last ({state.size})",
                    state.size,
                )
            if old_size == new.size:
                if proof or (state.root is not None and state.root != new.root):
                    raise WitnessRefusal(
                        409, f"a second root for tree size {new.size}: the log forked", state.size
                    )
            elif old_size > 0:
                assert state.root is not None
                try:
                    verify_consistency(old_size, new.size, state.root, new.root, proof)
                except ProofError as exc:
                    raise WitnessRefusal(
                        422, f"the consistency proof does not verify: {exc}"
                    ) from None
            elif proof:
                raise WitnessRefusal(422, "a proof from size 0 must be empty")
            updated = LogState(state.origin, state.key, new.size, new.root, checkpoint.text)
            self._write(self.root / _LOGS / f"{_log_id(state.origin, state.key)}.json", updated)
        timestamp = int(time.time()) if now is None else now
        signature = signer.sign(cosignature_message(timestamp, checkpoint.note.text))
        line = NoteSignature(signer.name, signer.key_id, timestamp.to_bytes(8, "big") + signature)
        return line.line(), updated

    @staticmethod
    def _signed_by(candidates: list[LogState], checkpoint: SignedCheckpoint) -> LogState:
        for state in candidates:
            try:
                checkpoint.verified_by([state.key])
            except NoteError:
                continue
            return state
        keys = ", ".join(f"{s.key.name}+{s.key.key_id.hex()}" for s in candidates)
        raise WitnessRefusal(403, f"the checkpoint is not signed by the log's key ({keys})")

    # -- files ------------------------------------------------------------------------

    def _state_ours(self) -> None:
        """Refuse a state (or its logs) another user could change: its log states are what
        keeps the witness from cosigning two histories, and such a user could roll one
        back (found by attack: a 0777 state was used)."""
        for directory in (self.root, self.root / _LOGS):
            foreign = others_may_change(os.path.abspath(directory)) if directory.exists() else None
            if foreign is not None:
                raise WitnessError(
                    f"witness state {directory}: {foreign}, so another user could replace "
                    "its state; keep it in a directory only you (or root) can change"
                )

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self._state_ours()
        try:
            (self.root / _LOGS).mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.root / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise WitnessError(f"witness state {self.root}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _read(self, path: Path) -> LogState:
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
            key = parse_verifier(document["log_key"])
            root = document["root"]
            if document["checkpoint"] is not None:
                parse_note(document["checkpoint"])
            return LogState(
                origin=str(document["origin"]),
                key=key,
                size=int(document["size"]),
                root=None if root is None else base64.b64decode(root),
                checkpoint=document["checkpoint"],
            )
        except (OSError, ValueError, KeyError, TypeError, LedgerError) as exc:
            raise WitnessError(f"witness state {path}: unreadable ({exc})") from None

    @staticmethod
    def _write(path: Path, state: LogState) -> None:
        temporary = path.with_name(path.name + ".tmp")
        try:
            with open(temporary, "w", encoding="utf-8") as stream:
                json.dump(state.to_json(), stream, indent=1, sort_keys=True)
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(temporary, path)
            fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise WitnessError(
                f"witness state {path}: cannot write ({exc.strerror or exc})"
            ) from None
