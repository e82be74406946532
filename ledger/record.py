"""The ledger record: its byte layout and every hash over it. Pure — no I/O, no LMDB.

Layout (docs/FORMATS.md, "Records"), frozen by the golden vectors in
``tests/vectors/ledger/``::

    record       = canonical CBOR array
                   [version, seq, prev_hash, time_ns, kind, run_id, payload_hash, payload]
    version      = 1 (RECORD_VERSION)
    seq          = unsigned integer; the first event of a ledger has seq 0
    prev_hash    = 32 bytes: the hash of event seq-1, or for seq 0 the genesis hash
    time_ns      = unsigned integer, wall-clock nanoseconds since the Unix epoch when appended
                   (informative only: it is hashed, never used for ordering)
    kind         = text in the kind grammar (``bvisor.ledger.kinds``)
    run_id       = byte string of 1..64 bytes (a run's attempt_id), or null
    payload_hash = 32 bytes = digest_value(LEDGER_EVENT, ["payload", payload])
    payload      = any canonical value

    event hash   = digest_value(LEDGER_EVENT,
                                [version, seq, prev_hash, time_ns, kind, run_id, payload_hash])
    genesis hash = digest_bytes(LEDGER_GENESIS, ledger_id)        (ledger_id: 16 bytes)

Why these choices:

* The event hash covers the header only, and the payload through ``payload_hash``, so a
  chain can be walked (and a head proven) from the small headers, while a damaged payload
  is located at its own event (``payload-hash-mismatch``) instead of surfacing as a break
  in the chain one event later.
* ``payload_hash`` and the event hash share the ``bvisor.ledger.event.v1`` context but can
  never collide by construction: the payload digest is over a 2-element array whose first
  item is the text ``"payload"``, the event hash over a 7-element array whose first item is
  an integer, and canonical CBOR gives those distinct first bytes (0x82 vs 0x87).
* Because canonical arrays are concatenations, the record's bytes are the header's bytes
  with the array head changed from 0x87 to 0x88 and the encoded payload appended; the
  payload digest input is ``0x82 "payload"`` followed by the same encoded payload. Both
  are therefore computed from slices without re-encoding a large payload.
* Sequence numbers start at 0 so that ``seq`` equals the number of earlier events.

Limits are defined once, for the whole record: the payload is any canonical value (up to
``canonical.MAX_DEPTH`` levels of nesting, :data:`MAX_PAYLOAD_BYTES` encoded) and the
header is the seven fixed fields, so a record is at most :data:`MAX_RECORD_BYTES`. The
reader measures the payload's nesting the same way — a record proven canonical as a whole
by :mod:`bvisor.canonical`, or, when only the payload's own nesting is at the limit, its
seven header fields' canonical encodings then the payload as its own canonical item — so
anything ``append`` accepts reads back. (Decoding the record as one nested value alone
would put the payload one level deeper than ``encode_payload`` measured it; a payload at
the deepest accepted nesting then made every read of its event fail.) Canonical form has
one definition, :mod:`bvisor.canonical`; every strict decode of stored bytes goes through
it (:func:`strict_decode`, :func:`split_record`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, NamedTuple

import cbor2
from blake3 import blake3 as _blake3

from bvisor import canonical
from bvisor.canonical import CanonicalError, Rule, Value
from bvisor.digest import DIGEST_SIZE, Purpose, digest_bytes
from bvisor.ledger.errors import (
    InvalidPayloadError,
    InvalidRunIdError,
    LedgerCorruptError,
    PayloadTooLargeError,
)
from bvisor.ledger.kinds import check_kind, is_valid_kind

__all__ = [
    "HASH_SIZE",
    "LEDGER_ID_BYTES",
    "MAX_PAYLOAD_BYTES",
    "MAX_PAYLOAD_DEPTH",
    "MAX_RECORD_BYTES",
    "MAX_RUN_ID_BYTES",
    "MAX_SEQ",
    "RECORD_VERSION",
    "BuiltRecord",
    "DecodedRecord",
    "Event",
    "ProvenRecord",
    "RecordError",
    "build_record",
    "check_run_id",
    "decode_record",
    "decode_record_lenient",
    "encode_payload",
    "event_hash",
    "genesis_hash",
    "header_bytes",
    "payload_digest",
    "split_record",
    "strict_decode",
]

RECORD_VERSION: Final = 1
MAX_PAYLOAD_BYTES: Final = 16 * 1024 * 1024
MAX_PAYLOAD_DEPTH: Final = canonical.MAX_DEPTH
# The header (version, seq, two hashes, time, a kind of <= 128 bytes, a run id of <= 64
# bytes, their heads) takes well under 512 bytes.
MAX_RECORD_BYTES: Final = MAX_PAYLOAD_BYTES + 512
MAX_RUN_ID_BYTES: Final = 64
LEDGER_ID_BYTES: Final = 16
HASH_SIZE: Final = DIGEST_SIZE
_UINT64_MAX: Final = (1 << 64) - 1
# The largest seq an argument may name: 2^64-1 is kept free so ``seq + 1`` (an exclusive
# stop) still fits the 8-byte key.
MAX_SEQ: Final = _UINT64_MAX - 1

# canonical.encode(["payload", x]) == _PAYLOAD_PREFIX + canonical.encode(x)
_PAYLOAD_PREFIX: Final = b"\x82" + canonical.encode("payload")
_HEADER_HEAD: Final = 0x87  # array of 7
_RECORD_HEAD: Final = 0x88  # array of 8
_ITEMS: Final = 8  # version, seq, prev_hash, time_ns, kind, run_id, payload_hash, payload
_EVENT_CONTEXT: Final = Purpose.LEDGER_EVENT.value  # digest_bytes' context, used directly


@dataclass(frozen=True, slots=True)
class Event:
    """One decoded event: the record's fields, its computed hash and its exact bytes."""

    seq: int
    prev_hash: bytes
    time_ns: int
    kind: str
    run_id: bytes | None
    payload_hash: bytes
    payload: Value
    hash: bytes
    raw: bytes
    version: int = RECORD_VERSION


class ProvenRecord(NamedTuple):
    """A stored record proven strictly canonical with its payload hashing to
    ``payload_hash``, its payload still undecoded: ``raw[payload_at:]`` is the payload's
    exact canonical encoding. A reader that compares payload bytes (replay) need not build
    the value at all; :meth:`event` builds it when it must. (A named tuple: a verify walk
    makes one per event, and a frozen dataclass costs several times as much to make.)"""

    seq: int
    prev_hash: bytes
    time_ns: int
    kind: str
    run_id: bytes | None
    payload_hash: bytes
    hash: bytes
    raw: bytes
    payload_at: int

    def payload_bytes(self) -> bytes:
        """The payload's canonical encoding (a copy of that part of :attr:`raw`)."""
        return self.raw[self.payload_at :]

    def event(self) -> Event:
        """The decoded :class:`Event`: exactly what :func:`decode_record` gives."""
        # Proven canonical, so cbor2 builds exactly what the strict decoder would.
        payload = cbor2.loads(memoryview(self.raw)[self.payload_at :])
        return Event(
            self.seq,
            self.prev_hash,
            self.time_ns,
            self.kind,
            self.run_id,
            self.payload_hash,
            payload,
            self.hash,
            self.raw,
        )

    @classmethod
    def of(cls, decoded: DecodedRecord) -> ProvenRecord:
        """The record of a strict decode whose payload hash matched."""
        event = decoded.event
        assert decoded.strict and decoded.payload_ok and decoded.payload_at > 0
        return cls(
            event.seq,
            event.prev_hash,
            event.time_ns,
            event.kind,
            event.run_id,
            event.payload_hash,
            event.hash,
            event.raw,
            decoded.payload_at,
        )


@dataclass(frozen=True, slots=True)
class BuiltRecord:
    """A freshly built record: the bytes to store, its event hash and its payload hash."""

    raw: bytes
    hash: bytes
    payload_hash: bytes


@dataclass(frozen=True, slots=True)
class DecodedRecord:
    """A decoded record and the payload digest recomputed from its bytes (may disagree)."""

    event: Event
    computed_payload_hash: bytes
    strict: bool = True  # False: decoded leniently, for diagnosis only
    payload_at: int = -1  # strict: where the payload's encoding starts in the raw bytes

    @property
    def payload_ok(self) -> bool:
        return self.computed_payload_hash == self.event.payload_hash


class RecordError(LedgerCorruptError):
    """Bytes that are not a well-formed record; ``code`` is the verify finding code."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


def genesis_hash(ledger_id: bytes) -> bytes:
    """The ``prev_hash`` of event 0: binds the chain to this ledger's random id."""
    return digest_bytes(Purpose.LEDGER_GENESIS, ledger_id)


def encode_payload(payload: object) -> bytes:
    """Canonically encode ``payload`` within the size bound, or raise naming the problem.

    A payload is any value ``canonical.encode`` accepts (nesting up to ``MAX_DEPTH``
    levels) of at most ``MAX_PAYLOAD_BYTES`` encoded: exactly what :func:`decode_record`
    reads back, since it decodes the payload as its own canonical item.
    """
    try:
        encoded = canonical.encode(payload)
    except CanonicalError as exc:
        raise InvalidPayloadError(f"payload: {exc}") from None
    except RecursionError:
        raise InvalidPayloadError("payload: nested too deeply") from None
    if len(encoded) > MAX_PAYLOAD_BYTES:
        raise PayloadTooLargeError(
            f"payload: {len(encoded)} bytes encoded, over the {MAX_PAYLOAD_BYTES}-byte limit"
        )
    return encoded


def payload_digest(encoded_payload: bytes) -> bytes:
    """``digest_value(LEDGER_EVENT, ["payload", payload])`` from the payload's encoding."""
    return digest_bytes(Purpose.LEDGER_EVENT, _PAYLOAD_PREFIX + encoded_payload)


def check_run_id(run_id: object) -> bytes | None:
    """Return a valid run id (bytes of 1..64 bytes, or None) or raise InvalidRunIdError."""
    if run_id is None:
        return None
    if not isinstance(run_id, bytes):
        raise InvalidRunIdError(f"run_id: expected bytes or None, got {type(run_id).__name__}")
    if not 1 <= len(run_id) <= MAX_RUN_ID_BYTES:
        raise InvalidRunIdError(f"run_id: must be 1..{MAX_RUN_ID_BYTES} bytes, got {len(run_id)}")
    return run_id


def header_bytes(
    seq: int,
    prev_hash: bytes,
    time_ns: int,
    kind: str,
    run_id: bytes | None,
    payload_hash: bytes,
    version: int = RECORD_VERSION,
) -> bytes:
    """The canonical encoding of the 7-item header (the event hash's input)."""
    return canonical.encode([version, seq, prev_hash, time_ns, kind, run_id, payload_hash])


def event_hash(header: bytes) -> bytes:
    """The event hash from the header's canonical bytes."""
    return digest_bytes(Purpose.LEDGER_EVENT, header)


def build_record(
    seq: int,
    prev_hash: bytes,
    time_ns: int,
    kind: str,
    run_id: bytes | None,
    encoded_payload: bytes,
) -> BuiltRecord:
    """Build the record bytes and hashes for an event whose payload is already encoded."""
    check_kind(kind)
    check_run_id(run_id)
    if type(seq) is not int or not 0 <= seq <= _UINT64_MAX:
        raise ValueError(f"seq: {seq!r} is not an unsigned 64-bit integer")
    if type(time_ns) is not int or not 0 <= time_ns <= _UINT64_MAX:
        raise ValueError(f"time_ns: {time_ns!r} is not an unsigned 64-bit integer")
    if not isinstance(prev_hash, bytes) or len(prev_hash) != HASH_SIZE:
        raise ValueError(f"prev_hash: must be {HASH_SIZE} bytes")
    p_hash = payload_digest(encoded_payload)
    header = header_bytes(seq, prev_hash, time_ns, kind, run_id, p_hash)
    raw = bytes((_RECORD_HEAD,)) + header[1:] + encoded_payload
    return BuiltRecord(raw=raw, hash=event_hash(header), payload_hash=p_hash)


def _check_items(items: object) -> list[Value]:
    """Check the decoded record's shape and field types; RecordError names the field."""
    if not isinstance(items, list):
        raise RecordError("malformed-record", f"record is a {type(items).__name__}, not an array")
    if len(items) != 8:
        raise RecordError("malformed-record", f"record has {len(items)} items, expected 8")
    version, seq, prev_hash, time_ns, kind, run_id, p_hash, _payload = items
    if type(version) is not int or version != RECORD_VERSION:
        raise RecordError("malformed-record", f"unknown record version {version!r}")
    if type(seq) is not int or not 0 <= seq <= _UINT64_MAX:
        raise RecordError("malformed-record", "seq is not an unsigned integer")
    if not isinstance(prev_hash, bytes) or len(prev_hash) != HASH_SIZE:
        raise RecordError("malformed-record", f"prev_hash is not {HASH_SIZE} bytes")
    if type(time_ns) is not int or not 0 <= time_ns <= _UINT64_MAX:
        raise RecordError("malformed-record", "time_ns is not an unsigned integer")
    if not is_valid_kind(kind):
        raise RecordError("malformed-record", f"kind {kind!r} is outside the kind grammar")
    if run_id is not None and (
        not isinstance(run_id, bytes) or not 1 <= len(run_id) <= MAX_RUN_ID_BYTES
    ):
        raise RecordError("malformed-record", "run_id is neither null nor 1..64 bytes")
    if not isinstance(p_hash, bytes) or len(p_hash) != HASH_SIZE:
        raise RecordError("malformed-record", f"payload_hash is not {HASH_SIZE} bytes")
    return items


def _event(items: list[Value], header: bytes, raw: bytes) -> Event:
    version, seq, prev_hash, time_ns, kind, run_id, p_hash, payload = items
    assert isinstance(version, int) and isinstance(seq, int) and isinstance(time_ns, int)
    assert isinstance(prev_hash, bytes) and isinstance(p_hash, bytes) and isinstance(kind, str)
    assert run_id is None or isinstance(run_id, bytes)
    return Event(
        seq=seq,
        prev_hash=prev_hash,
        time_ns=time_ns,
        kind=kind,
        run_id=run_id,
        payload_hash=p_hash,
        payload=payload,
        hash=event_hash(header),
        raw=raw,
        version=version,
    )


def strict_decode(raw: bytes) -> Value:
    """The value ``raw`` is the one canonical encoding of, or CanonicalError naming why not.

    The ledger's strict decoder of stored bytes is :func:`bvisor.canonical.decode` itself
    (its native validator, or the reference parser), bounded by the record size: one
    definition of canonical form for the runner, the ledger, its commands and replay.
    """
    try:
        return canonical.decode(raw, max_bytes=MAX_RECORD_BYTES)
    except RecursionError:  # the reference parser on a pathological input
        raise CanonicalError("nested too deeply") from None


def decode_record(raw: bytes) -> DecodedRecord:
    """Strictly decode a stored record and recompute its payload digest from the bytes.

    Raises RecordError with code ``non-canonical-record`` when the bytes are not the one
    canonical encoding (use :func:`decode_record_lenient` to learn more), and
    ``malformed-record`` when they are not a record at all.
    """
    items, end = split_record(raw)
    header = bytes((_HEADER_HEAD,)) + raw[1:end]
    event = Event(
        items[1],  # type: ignore[arg-type]
        items[2],  # type: ignore[arg-type]
        items[3],  # type: ignore[arg-type]
        items[4],  # type: ignore[arg-type]
        items[5],  # type: ignore[arg-type]
        items[6],  # type: ignore[arg-type]
        items[7],
        _blake3(header, derive_key_context=_EVENT_CONTEXT).digest(),
        raw,
    )
    payload_hash = _blake3(_PAYLOAD_PREFIX, derive_key_context=_EVENT_CONTEXT)
    payload_hash.update(memoryview(raw)[end:])
    return DecodedRecord(event, payload_hash.digest(), payload_at=end)


def split_record(raw: bytes) -> tuple[list[Value], int]:
    """The one strict decode of a stored record: its eight items, and where the payload's
    encoding starts. RecordError (``non-canonical-record`` / ``malformed-record``) else.

    The record must be exactly the canonical encoding of its eight items, the header
    fields well typed, and the payload a canonical value in its own right — its nesting is
    measured from the payload, as ``encode_payload`` measured it when it was appended.
    Canonical form is :mod:`bvisor.canonical`'s alone: ``array_spans`` proves the whole
    record and says where each item lies; only a payload at the deepest nesting a payload
    may have (which puts the record one level deeper than any value may be) is split by
    its header instead (:func:`_split_deepest`).
    """
    size = len(raw)
    if size > MAX_RECORD_BYTES:
        raise RecordError("malformed-record", f"record of {size} bytes is over the bound")
    try:
        spans = canonical.array_spans(raw, max_items=_ITEMS, max_bytes=MAX_RECORD_BYTES)
    except CanonicalError as exc:
        if exc.rule is Rule.TOO_DEEP:
            return _split_deepest(raw)
        raise RecordError("non-canonical-record", f"not canonical CBOR: {exc}") from None
    items = cbor2.loads(raw)  # proven canonical: only the types canonical.Value allows
    _check_items(items)
    assert spans is not None  # an array of eight items, as _check_items just proved
    return items, spans[_ITEMS - 1][0]


def _split_deepest(raw: bytes) -> tuple[list[Value], int]:
    """A record too deep as a whole: its header is seven scalars, so it must be exactly
    their canonical encodings after the array head, and the rest one canonical payload."""
    try:
        items = cbor2.loads(raw)  # not yet proven: only to learn the header's fields
    except Exception:  # cbor2 raises many types on garbage
        items = None
    if not isinstance(items, list) or len(items) != _ITEMS:
        raise RecordError("non-canonical-record", "not canonical CBOR: nested too deeply")
    _check_items(items)
    header = bytes((_RECORD_HEAD,)) + b"".join(canonical.encode(f) for f in items[:7])
    if not raw.startswith(header):
        raise RecordError("non-canonical-record", "not canonical CBOR: the record's header")
    try:
        payload = strict_decode(raw[len(header) :])
    except CanonicalError as exc:
        raise RecordError("non-canonical-record", f"not canonical CBOR: payload: {exc}") from None
    return [*items[:7], payload], len(header)


def decode_record_lenient(raw: bytes) -> DecodedRecord:
    """Decode any well-formed CBOR record, canonical or not, for diagnosis only.

    ``verify`` uses this after a strict decode failed, to tell a record that is valid CBOR
    with the right fields but a non-canonical encoding (its hashes are still computed over
    the canonical re-encoding, so the chain can be followed past it) from garbage.
    """
    try:
        items = cbor2.loads(raw)
    except Exception as exc:  # cbor2 raises many types on garbage; all mean "not CBOR"
        raise RecordError("malformed-record", f"not CBOR: {exc}") from None
    checked = _check_items(items)
    try:
        header = canonical.encode(checked[:7])
        encoded_payload = canonical.encode(checked[7])
    except (CanonicalError, RecursionError) as exc:
        raise RecordError("malformed-record", f"fields have no canonical form: {exc}") from None
    return DecodedRecord(_event(checked, header, raw), payload_digest(encoded_payload), False)
