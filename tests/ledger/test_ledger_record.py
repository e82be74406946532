"""Golden vectors for the record layout, event hash and genesis, checked three ways.

The vectors in ``tests/vectors/ledger/record_v1.json`` are frozen. Each is re-derived here
by a second, independent implementation (cbor2 + blake3 directly, following DESIGN.md §6
rather than ``bvisor.ledger.record``), by ``bvisor.ledger.record``, and by a real LMDB
ledger created
with the vector's ledger_id and clock — whose stored bytes are read back with raw LMDB.
Any change to the layout or a hash definition breaks all three.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import blake3
import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bvisor import canonical
from bvisor.ledger import Ledger, verify
from bvisor.ledger.errors import InvalidKindError, InvalidRunIdError
from bvisor.ledger.record import (
    RecordError,
    _check_items,
    build_record,
    check_run_id,
    decode_record,
    decode_record_lenient,
    genesis_hash,
)
from tests.ledger.testkit import get_record

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "ledger" / "record_v1.json"
DOC: dict[str, Any] = json.loads(VECTORS.read_text())
EVENTS: list[dict[str, Any]] = DOC["events"]


def _h(text: str | None) -> bytes | None:
    return None if text is None else bytes.fromhex(text)


def _derive(context: str, data: bytes) -> bytes:
    hasher = blake3.blake3(derive_key_context=context)
    hasher.update(data)
    return hasher.digest()


def test_genesis_vector_independently() -> None:
    ledger_id = bytes.fromhex(DOC["ledger_id"])
    expected = bytes.fromhex(DOC["genesis"])
    assert _derive("bvisor.ledger.genesis.v1", ledger_id) == expected
    assert genesis_hash(ledger_id) == expected


@pytest.mark.parametrize("vector", EVENTS, ids=[e["kind"] for e in EVENTS])
def test_event_vector_independently(vector: dict[str, Any]) -> None:
    payload = cbor2.loads(bytes.fromhex(vector["payload_cbor"]))
    p_hash = _derive("bvisor.ledger.event.v1", cbor2.dumps(["payload", payload], canonical=True))
    assert p_hash.hex() == vector["payload_hash"]
    header = [
        1,
        vector["seq"],
        bytes.fromhex(vector["prev_hash"]),
        vector["time_ns"],
        vector["kind"],
        _h(vector["run_id"]),
        p_hash,
    ]
    assert cbor2.dumps([*header, payload], canonical=True).hex() == vector["record"]
    assert (
        _derive("bvisor.ledger.event.v1", cbor2.dumps(header, canonical=True)).hex()
        == (vector["hash"])
    )


def test_vectors_form_a_chain() -> None:
    prev = DOC["genesis"]
    for seq, vector in enumerate(EVENTS):
        assert vector["seq"] == seq
        assert vector["prev_hash"] == prev
        prev = vector["hash"]
    assert DOC["head"] == {"seq": len(EVENTS) - 1, "hash": prev}


@pytest.mark.parametrize("vector", EVENTS, ids=[e["kind"] for e in EVENTS])
def test_record_module_matches_vectors(vector: dict[str, Any]) -> None:
    built = build_record(
        vector["seq"],
        bytes.fromhex(vector["prev_hash"]),
        vector["time_ns"],
        vector["kind"],
        _h(vector["run_id"]),
        bytes.fromhex(vector["payload_cbor"]),
    )
    assert built.raw.hex() == vector["record"]
    assert built.hash.hex() == vector["hash"]
    assert built.payload_hash.hex() == vector["payload_hash"]
    decoded = decode_record(built.raw)
    assert decoded.payload_ok and decoded.event.hash == built.hash
    assert canonical.encode(decoded.event.payload).hex() == vector["payload_cbor"]


def test_real_ledger_stores_vector_bytes(tmp_path: Path) -> None:
    times = iter(vector["time_ns"] for vector in EVENTS)
    path = tmp_path / "ledger"
    with Ledger.open(
        path, create=True, ledger_id=bytes.fromhex(DOC["ledger_id"]), clock=lambda: next(times)
    ) as ledger:
        receipts = [
            ledger.append(
                vector["kind"],
                cbor2.loads(bytes.fromhex(vector["payload_cbor"])),
                _h(vector["run_id"]),
            )
            for vector in EVENTS
        ]
        assert str(ledger.head()) == f"{DOC['head']['seq']}:{DOC['head']['hash']}"
    assert [(r.seq, r.hash.hex()) for r in receipts] == [(v["seq"], v["hash"]) for v in EVENTS]
    for vector in EVENTS:  # the bytes LMDB holds, read without the ledger package
        assert get_record(path, vector["seq"]).hex() == vector["record"]
    assert verify(path).ok


def test_build_refuses_bad_fields() -> None:
    prev = bytes(32)
    with pytest.raises(InvalidKindError):
        build_record(0, prev, 0, "Bad.Kind", None, b"\xf6")
    with pytest.raises(InvalidRunIdError):
        build_record(0, prev, 0, "note.x", b"", b"\xf6")
    with pytest.raises(ValueError, match="prev_hash"):
        build_record(0, b"short", 0, "note.x", None, b"\xf6")
    with pytest.raises(ValueError, match="seq"):
        build_record(-1, prev, 0, "note.x", None, b"\xf6")
    with pytest.raises(InvalidRunIdError):
        check_run_id(b"x" * 65)
    assert check_run_id(b"x" * 64) == b"x" * 64


def test_decode_distinguishes_non_canonical_from_malformed() -> None:
    vector = EVENTS[0]
    raw = bytes.fromhex(vector["record"])
    assert raw[2] == 0x00  # seq 0 in its shortest form
    longer = raw[:2] + b"\x18\x00" + raw[3:]  # same value, non-shortest head
    with pytest.raises(RecordError) as caught:
        decode_record(longer)
    assert caught.value.code == "non-canonical-record"
    lenient = decode_record_lenient(longer)
    assert lenient.event.hash.hex() == vector["hash"] and lenient.payload_ok
    for garbage in (b"\xff", b"\x83\x01\x02\x03", cbor2.dumps([2, *([0] * 7)])):
        with pytest.raises(RecordError) as caught:
            decode_record(garbage)
        assert caught.value.code in {"malformed-record", "non-canonical-record"}
        with pytest.raises(RecordError) as caught:
            decode_record_lenient(garbage)
        assert caught.value.code == "malformed-record"


_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(1 << 64), max_value=(1 << 64) - 1)
    | st.binary(max_size=12)
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)


def _reference_accepts(raw: bytes) -> bool:
    """The slow, obviously-strict rule: canonical.decode, then the record's field rules."""
    try:
        items = canonical.decode(raw)
        _check_items(items)
    except (canonical.CanonicalError, RecordError):
        return False
    return True


@settings(max_examples=200, deadline=None)
@given(payload=_values, position=st.integers(min_value=0), byte=st.integers(0, 255))
def test_fast_decoder_accepts_exactly_what_the_strict_one_does(
    payload: object, position: int, byte: int
) -> None:
    built = build_record(3, bytes(32), 12345, "note.prop", None, canonical.encode(payload))
    assert decode_record(built.raw).event.payload == payload
    mutated = bytearray(built.raw)
    mutated[position % len(mutated)] = byte
    raw = bytes(mutated)
    try:
        decode_record(raw)
        accepted = True
    except RecordError:
        accepted = False
    assert accepted == _reference_accepts(raw)
