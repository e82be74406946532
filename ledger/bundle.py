"""Proof bundles: one run's records, their inclusion proofs and the signed checkpoint.

A bundle (``bvisor-ledger prove RUN``) lets anyone holding the log's public key check a
run without the ledger. It is one JSON object (docs/FORMATS.md, "Proof bundle")::

    {"format": "bvisor.proof-bundle.v1",
     "ledger_id": "<32 hex digits>", "run_id": "<hex>",
     "checkpoint": "<the signed checkpoint note, verbatim>",
     "events": [{"seq": N, "record": "<hex of the stored record>",
                 "inclusion": ["<base64 hash>", ...]}, ...]}

with ``events`` in increasing seq order, each ``inclusion`` the RFC 9162 proof of leaf
``seq`` in the checkpoint's tree. :func:`open_bundle` checks, in this order: the JSON's
shape (every field named in errors), the checkpoint's signature by a trusted key, that the
checkpoint's origin is the bundle's ledger, each proof against the signed root, and each
record's strict decoding, seq, run id and payload hash. The events it returns are then
judged by replay's run checks (``bvisor.replay.bundle``).

A bundle proves that each record it holds is in the signed tree; it cannot prove that it
holds all of the run's records. Leaving one out leaves the run incomplete or failing its
checks — never verified — except for ``note.*`` events, which replay does not judge.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from bvisor.ledger.checkpoint import SignedCheckpoint, ledger_origin, parse_checkpoint
from bvisor.ledger.errors import LedgerError
from bvisor.ledger.merkle import ProofError, leaf_hash, verify_inclusion
from bvisor.ledger.note import NoteError, Verifier
from bvisor.ledger.proofs import RecordProof
from bvisor.ledger.record import Event, RecordError, decode_record

__all__ = ["BUNDLE_FORMAT", "BundleError", "OpenedBundle", "build_bundle", "open_bundle"]

BUNDLE_FORMAT: Final = "bvisor.proof-bundle.v1"
MAX_BUNDLE_BYTES: Final = 512 * 1024 * 1024
_KEYS: Final = frozenset({"format", "ledger_id", "run_id", "checkpoint", "events"})
_EVENT_KEYS: Final = frozenset({"seq", "record", "inclusion"})


class BundleError(LedgerError):
    """A bundle that is malformed or does not prove what it claims; names the field."""


def build_bundle(
    ledger_id: bytes, run_id: bytes, signed: SignedCheckpoint, proofs: Sequence[RecordProof]
) -> dict[str, Any]:
    """The bundle document (ready for ``json.dumps``)."""
    return {
        "format": BUNDLE_FORMAT,
        "ledger_id": ledger_id.hex(),
        "run_id": run_id.hex(),
        "checkpoint": signed.text,
        "events": [
            {
                "seq": proof.seq,
                "record": proof.record.hex(),
                "inclusion": [base64.b64encode(h).decode("ascii") for h in proof.path],
            }
            for proof in sorted(proofs, key=lambda p: p.seq)
        ],
    }


@dataclass(frozen=True, slots=True)
class OpenedBundle:
    """A bundle whose signature and proofs held: its run's events, strictly decoded."""

    ledger_id: bytes
    run_id: bytes
    checkpoint: SignedCheckpoint
    signed_by: tuple[Verifier, ...]
    events: tuple[Event, ...]


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise BundleError(f"bundle: duplicate key {key!r}")
        result[key] = value
    return result


def _refuse_constant(text: str) -> Any:
    raise BundleError(f"bundle: {text} is not allowed")


def _hex(value: object, field: str, size: int | None = None) -> bytes:
    if not isinstance(value, str):
        raise BundleError(f"bundle: {field}: expected a hex string")
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise BundleError(f"bundle: {field}: not hexadecimal") from None
    if value != raw.hex() or (size is not None and len(raw) != size):
        what = "lower-case hex" if size is None else f"{size} bytes in lower-case hex"
        raise BundleError(f"bundle: {field}: expected {what}")
    return raw


def _hash(value: object, field: str) -> bytes:
    if not isinstance(value, str):
        raise BundleError(f"bundle: {field}: expected a base64 string")
    try:
        raw = base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raw = b""
    if len(raw) != 32:
        raise BundleError(f"bundle: {field}: not base64 of a 32-byte hash")
    return raw


def parse_bundle(data: bytes) -> dict[str, Any]:
    """The bundle's JSON, with its shape checked (not its proofs)."""
    if len(data) > MAX_BUNDLE_BYTES:
        raise BundleError(f"bundle: larger than {MAX_BUNDLE_BYTES} bytes")
    try:
        document = json.loads(
            data.decode("utf-8"), object_pairs_hook=_unique, parse_constant=_refuse_constant
        )
    except UnicodeDecodeError:
        raise BundleError("bundle: not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise BundleError(f"bundle: not JSON ({exc.msg} at line {exc.lineno})") from None
    except RecursionError:
        raise BundleError("bundle: nested too deeply") from None
    if not isinstance(document, dict):
        raise BundleError("bundle: expected a JSON object")
    missing = sorted(_KEYS - set(document))
    extra = sorted(set(document) - _KEYS)
    if missing or extra:
        raise BundleError(f"bundle: missing fields {missing}, unknown fields {extra}")
    if document["format"] != BUNDLE_FORMAT:
        raise BundleError(f"bundle: format: expected {BUNDLE_FORMAT!r}")
    if not isinstance(document["checkpoint"], str):
        raise BundleError("bundle: checkpoint: expected the signed note as a string")
    events = document["events"]
    if not isinstance(events, list) or not events:
        raise BundleError("bundle: events: expected a non-empty list")
    for index, item in enumerate(events):
        if not isinstance(item, dict) or set(item) != _EVENT_KEYS:
            raise BundleError(f"bundle: events[{index}]: expected seq, record and inclusion")
        if type(item["seq"]) is not int or item["seq"] < 0:
            raise BundleError(f"bundle: events[{index}].seq: expected a whole number")
        if not isinstance(item["inclusion"], list) or len(item["inclusion"]) > 64:
            raise BundleError(f"bundle: events[{index}].inclusion: expected a list of hashes")
    return document


def open_bundle(data: bytes, verifiers: Sequence[Verifier]) -> OpenedBundle:
    """Check a bundle (see module) and return its run's events; BundleError if it fails."""
    document = parse_bundle(data)
    ledger_id = _hex(document["ledger_id"], "ledger_id", 16)
    run_id = _hex(document["run_id"], "run_id")
    if not 1 <= len(run_id) <= 64:
        raise BundleError("bundle: run_id: must be 1..64 bytes")
    try:
        signed = parse_checkpoint(document["checkpoint"])
    except NoteError as exc:
        raise BundleError(f"bundle: checkpoint: {exc}") from None
    if not verifiers:
        raise BundleError("bundle: no trusted public key to check the checkpoint with")
    try:
        signed_by = signed.verified_by(list(verifiers))
    except NoteError as exc:
        raise BundleError(f"bundle: checkpoint: {exc}") from None
    checkpoint = signed.checkpoint
    if checkpoint.origin != ledger_origin(ledger_id):
        raise BundleError(
            f"bundle: checkpoint: origin {checkpoint.origin!r} is not ledger {ledger_id.hex()}"
        )
    events: list[Event] = []
    previous = -1
    for index, item in enumerate(document["events"]):
        where = f"events[{index}]"
        seq = item["seq"]
        if seq <= previous:
            raise BundleError(f"bundle: {where}.seq: seqs must increase")
        previous = seq
        record = _hex(item["record"], f"{where}.record")
        path = [_hash(h, f"{where}.inclusion[{n}]") for n, h in enumerate(item["inclusion"])]
        try:
            verify_inclusion(leaf_hash(record), seq, checkpoint.size, path, checkpoint.root)
        except ProofError as exc:
            raise BundleError(
                f"bundle: {where}: event {seq} is not in the signed tree of "
                f"{checkpoint.size} events ({exc})"
            ) from None
        try:
            decoded = decode_record(record)
        except RecordError as exc:
            raise BundleError(f"bundle: {where}.record: {exc.detail}") from None
        event = decoded.event
        if event.seq != seq:
            raise BundleError(f"bundle: {where}: the record is event {event.seq}, not {seq}")
        if event.run_id != run_id:
            raise BundleError(f"bundle: {where}: event {seq} belongs to another run")
        if not decoded.payload_ok:
            raise BundleError(f"bundle: {where}: event {seq}'s payload does not match its hash")
        events.append(event)
    return OpenedBundle(ledger_id, run_id, signed, tuple(signed_by), tuple(events))
