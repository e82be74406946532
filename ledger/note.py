"""C2SP signed notes with Ed25519: keys, signing, and verification (docs/FORMATS.md).

A signed note is a UTF-8 text ending in a newline, a blank line, and signature lines
``— NAME base64(keyid || signature)``. The key id is the first four bytes of
``SHA-256(name || 0x0A || type || public key)``, with type 0x01 for the log's Ed25519
signatures and 0x04 for a witness's timestamped cosignatures (C2SP tlog-cosignature).
Keys travel in the golang.org/x/mod/sumdb/note text forms:

* verifier key: ``NAME+KEYID8HEX+base64(type || 32-byte public key)``
* signer key:   ``PRIVATE+KEY+NAME+KEYID8HEX+base64(type || 32-byte seed)``

so a key made here works with Go's ``note`` package and the other way round. Verification
follows the spec's rules: signatures from keys it was not given are ignored, a signature
from a given key must verify, and a note with no verified signature is refused.

``cryptography`` is imported only when a key is used, so reading a note, or importing
the ledger at all, costs nothing extra.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from bvisor.ledger.errors import LedgerError

__all__ = [
    "ALG_COSIGNATURE",
    "ALG_ED25519",
    "MAX_NOTE_BYTES",
    "MAX_SIGNATURES",
    "Note",
    "NoteError",
    "NoteSignature",
    "Signer",
    "Verifier",
    "check_key_name",
    "generate_signer",
    "key_id",
    "parse_note",
    "parse_signer",
    "parse_verifier",
    "sign_note",
    "verify_note",
]

ALG_ED25519: Final = 0x01
ALG_COSIGNATURE: Final = 0x04
MAX_SIGNATURES: Final = 100
MAX_NOTE_BYTES: Final = 1 << 20
_DASH: Final = "\u2014 "
_PRIVATE: Final = "PRIVATE+KEY+"


class NoteError(LedgerError):
    """A key or note that is malformed, or a note no trusted key has signed."""


def check_key_name(name: str) -> str:
    """A key name is non-empty with no spaces, '+' or control characters (C2SP)."""
    if not isinstance(name, str) or not name:
        raise NoteError("key name: must be non-empty text")
    if "+" in name or any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        raise NoteError(f"key name {name!r}: no spaces, '+' or control characters allowed")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise NoteError("key name: not valid UTF-8 text") from None
    return name


def key_id(name: str, alg: int, public: bytes) -> bytes:
    """The 4-byte key id: SHA-256(name || 0x0A || alg || public key)[:4]."""
    return hashlib.sha256(name.encode("utf-8") + b"\n" + bytes((alg,)) + public).digest()[:4]


def _public_of(seed: bytes) -> bytes:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    key = Ed25519PrivateKey.from_private_bytes(seed).public_key()
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def _valid_public(public: bytes) -> bool:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        Ed25519PublicKey.from_public_bytes(public)
    except ValueError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class Verifier:
    """A public key with its name and type, as a verifier key names it."""

    name: str
    alg: int
    public: bytes

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, self.alg, self.public)

    def text(self) -> str:
        """The verifier key in its ``NAME+KEYID+base64`` form."""
        data = base64.b64encode(bytes((self.alg,)) + self.public).decode("ascii")
        return f"{self.name}+{self.key_id.hex()}+{data}"

    def verify(self, message: bytes, signature: bytes) -> bool:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        try:
            Ed25519PublicKey.from_public_bytes(self.public).verify(signature, message)
        except (InvalidSignature, ValueError):
            return False
        return True


@dataclass(frozen=True, slots=True)
class Signer:
    """A private Ed25519 key with its name and type."""

    name: str
    alg: int
    seed: bytes

    @property
    def verifier(self) -> Verifier:
        return Verifier(self.name, self.alg, _public_of(self.seed))

    @property
    def key_id(self) -> bytes:
        return self.verifier.key_id

    def sign(self, message: bytes) -> bytes:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        return Ed25519PrivateKey.from_private_bytes(self.seed).sign(message)

    def text(self) -> str:
        """The signer key in its ``PRIVATE+KEY+NAME+KEYID+base64`` form."""
        data = base64.b64encode(bytes((self.alg,)) + self.seed).decode("ascii")
        return f"{_PRIVATE}{self.name}+{self.key_id.hex()}+{data}"


def generate_signer(name: str, alg: int = ALG_ED25519) -> Signer:
    """A fresh Ed25519 key (from the operating system's random source)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

    key = Ed25519PrivateKey.generate()
    seed = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    return Signer(check_key_name(name), alg, seed)


def _b64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise NoteError(f"{what}: not base64") from None


def _key_parts(text: str, what: str, algs: Iterable[int]) -> tuple[str, int, bytes, bytes]:
    """``(name, type, key bytes, claimed key id)`` of a ``NAME+KEYID+base64`` key."""
    parts = text.strip().split("+", 2)
    if len(parts) != 3:
        raise NoteError(f"{what}: expected NAME+KEYID+KEY")
    name, hex_id, data = parts
    check_key_name(name)
    if len(hex_id) != 8 or any(c not in "0123456789abcdef" for c in hex_id):
        raise NoteError(f"{what}: key id must be 8 lower-case hex digits")
    raw = _b64(data, what)
    if len(raw) != 33 or raw[0] not in tuple(algs):
        raise NoteError(f"{what}: not an Ed25519 key of an accepted type")
    return name, raw[0], raw[1:], bytes.fromhex(hex_id)


def parse_verifier(
    text: str, algs: Iterable[int] = (ALG_ED25519,), what: str = "public key"
) -> Verifier:
    """Parse ``NAME+KEYID+base64(type||key)``, checking the key id against the key."""
    name, alg, public, claimed = _key_parts(text, what, algs)
    verifier = Verifier(name, alg, public)
    if verifier.key_id != claimed:
        raise NoteError(f"{what}: key id {claimed.hex()} does not match the key")
    if not _valid_public(public):
        raise NoteError(f"{what}: not a valid Ed25519 public key")
    return verifier


def parse_signer(
    text: str, algs: Iterable[int] = (ALG_ED25519,), what: str = "private key"
) -> Signer:
    """Parse ``PRIVATE+KEY+NAME+KEYID+base64(type||seed)``, checking the key id."""
    stripped = text.strip()
    if not stripped.startswith(_PRIVATE):
        raise NoteError(f"{what}: expected PRIVATE+KEY+NAME+KEYID+KEY")
    name, alg, seed, claimed = _key_parts(stripped[len(_PRIVATE) :], what, algs)
    signer = Signer(name, alg, seed)
    if signer.key_id != claimed:
        raise NoteError(f"{what}: key id {claimed.hex()} does not match the key")
    return signer


@dataclass(frozen=True, slots=True)
class NoteSignature:
    """One signature line: the key name, the 4-byte key id and the signature bytes."""

    name: str
    key_id: bytes
    signature: bytes

    def line(self) -> str:
        data = base64.b64encode(self.key_id + self.signature).decode("ascii")
        return f"{_DASH}{self.name} {data}\n"


@dataclass(frozen=True, slots=True)
class Note:
    """A parsed signed note: its text (with the final newline) and every signature."""

    text: str
    signatures: tuple[NoteSignature, ...]

    def encoded(self) -> str:
        return self.text + "\n" + "".join(s.line() for s in self.signatures)


def parse_note(data: bytes | str) -> Note:
    """Split a signed note into text and signature lines, checking the note grammar."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    if len(raw) > MAX_NOTE_BYTES:
        raise NoteError(f"note: longer than {MAX_NOTE_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise NoteError("note: not valid UTF-8") from None
    if any(ord(c) < 0x20 and c != "\n" for c in text):
        raise NoteError("note: contains control characters other than newline")
    split = text.rfind("\n\n")
    if split < 0 or not text.endswith("\n"):
        raise NoteError("note: no blank line before the signatures, or no final newline")
    body, block = text[: split + 1], text[split + 2 :]
    lines = block.split("\n")[:-1]
    if not lines:
        raise NoteError("note: no signature lines")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError(f"note: more than {MAX_SIGNATURES} signatures")
    signatures: list[NoteSignature] = []
    for number, line in enumerate(lines, start=1):
        if not line.startswith(_DASH):
            raise NoteError(f"note: signature line {number} does not start with an em dash")
        name, sep, data64 = line[len(_DASH) :].partition(" ")
        if not sep or " " in data64:
            raise NoteError(f"note: signature line {number} is not '— NAME SIGNATURE'")
        check_key_name(name)
        packed = _b64(data64, f"note: signature line {number}")
        if len(packed) < 5:
            raise NoteError(f"note: signature line {number} is too short")
        signatures.append(NoteSignature(name, packed[:4], packed[4:]))
    return Note(body, tuple(signatures))


def sign_note(text: str, signer: Signer) -> str:
    """The signed note of ``text`` (which must end in a newline) by ``signer``."""
    if not text.endswith("\n") or "\n\n" in text or any(ord(c) < 0x20 and c != "\n" for c in text):
        raise NoteError("note text: must end in a newline, with no blank lines")
    signature = NoteSignature(signer.name, signer.key_id, signer.sign(text.encode("utf-8")))
    return text + "\n" + signature.line()


def verify_note(note: Note, verifiers: Sequence[Verifier]) -> list[Verifier]:
    """The given keys that signed ``note``; NoteError if a given key's signature fails or
    none of them signed it. Signatures by other keys are ignored, as C2SP requires."""
    message = note.text.encode("utf-8")
    verified: list[Verifier] = []
    for signature in note.signatures:
        for verifier in verifiers:
            if verifier.alg != ALG_ED25519:
                continue
            if verifier.name != signature.name or verifier.key_id != signature.key_id:
                continue
            if not verifier.verify(message, signature.signature):
                raise NoteError(
                    f"note: the signature of key {verifier.name}+{verifier.key_id.hex()} "
                    "does not verify (the note was changed after signing)"
                )
            if verifier not in verified:
                verified.append(verifier)
    if not verified:
        known = ", ".join(f"{v.name}+{v.key_id.hex()}" for v in verifiers) or "none"
        present = ", ".join(f"{s.name}+{s.key_id.hex()}" for s in note.signatures)
        raise NoteError(
            f"note: no signature by a trusted key (trusted: {known}; signed by: {present})"
        )
    return verified
