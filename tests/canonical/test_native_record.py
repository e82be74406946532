"""The native BLAKE3 and the one-pass ledger record check, against independent oracles.

The C hashes (written from the BLAKE3 specification) are compared with the ``blake3``
package on lengths at and around every block (64) and chunk (1024) boundary and across
several tree levels; the record check is compared field by field with the strict Python
decoder on real records, and must refuse what the strict decoder refuses or reports.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import lmdb
import pytest
from blake3 import blake3

from bvisor import canonical, canonical_native
from bvisor.digest import Purpose
from bvisor.ledger.kinds import is_valid_kind
from bvisor.ledger.record import build_record, decode_record, encode_payload, genesis_hash

_CONTEXT = Purpose.LEDGER_EVENT.value
_MATERIAL = 64  # BLAKE3's DERIVE_KEY_MATERIAL flag


@pytest.fixture(scope="module")
def native() -> canonical_native.Validator:
    found = canonical_native.validator()
    if found is None:
        pytest.fail(f"the native module is unavailable: {canonical_native.unavailable_reason()}")
    return found


def _lengths() -> list[int]:
    around = {0, 1}
    for boundary in (64, 1024, 2048, 3072, 4096, 8192, 16384, 65536, 1 << 20):
        around |= {boundary - 1, boundary, boundary + 1}
    return sorted(around | {7 * 1024 + 13, 31 * 1024 + 1, 3 * (1 << 20) + 5})


@pytest.mark.parametrize("length", _lengths())
def test_blake3_derive_key_matches_the_package(native: canonical_native.Validator, length: int):
    data = os.urandom(length)
    key = native.blake3_context_key(_CONTEXT)
    assert (
        native.blake3_keyed(key, _MATERIAL, data)
        == blake3(data, derive_key_context=_CONTEXT).digest()
    )


def test_blake3_context_keys_differ_by_context(native: canonical_native.Validator):
    data = b"the same material"
    one = native.blake3_keyed(native.blake3_context_key("a.b.v1"), _MATERIAL, data)
    two = native.blake3_keyed(native.blake3_context_key("a.b.v2"), _MATERIAL, data)
    assert one != two
    assert one == blake3(data, derive_key_context="a.b.v1").digest()


def _record(payload: object, kind: str = "launcher.phase", run_id: bytes | None = b"r" * 16):
    return build_record(
        7, genesis_hash(b"\x01" * 16), 1234567890, kind, run_id, encode_payload(payload)
    ).raw


@pytest.mark.parametrize(
    "payload, run_id",
    [
        ({"state": "ChildCreated", "n": 3}, b"r" * 16),
        (None, None),
        ([1, [2, [3]], {"k": b"\x00" * 3000}], b"x"),
        ("t" * 70_000, b"y" * 64),
    ],
)
def test_record_view_matches_the_strict_decoder(
    native: canonical_native.Validator, payload: object, run_id: bytes | None
):
    raw = _record(payload, run_id=run_id)
    key = native.blake3_context_key(_CONTEXT)
    view = native.ledger_record(raw, canonical.MAX_DEPTH, key)
    decoded = decode_record(raw)
    assert view is not None
    event = decoded.event
    assert (view.seq, view.time_ns) == (event.seq, event.time_ns)
    assert raw[view.prev_offset : view.prev_offset + 32] == event.prev_hash
    assert raw[view.kind_offset : view.kind_offset + view.kind_len].decode() == event.kind
    assert (raw[view.run_offset : view.run_offset + view.run_len] or None) == event.run_id
    assert raw[view.hash_offset : view.hash_offset + 32] == event.payload_hash
    assert view.event_hash == event.hash
    assert view.payload_hash == decoded.computed_payload_hash
    assert view.payload_ok == 1
    assert canonical.decode(raw[view.header_end :]) == event.payload


def test_record_view_refuses_what_is_not_a_strict_record(native: canonical_native.Validator):
    key = native.blake3_context_key(_CONTEXT)
    raw = _record({"a": 1})
    check = native.record_checker(canonical.MAX_DEPTH, key)
    assert check(raw) is not None
    # a payload byte changed: still canonical, but the payload no longer hashes to its hash
    tampered = raw[:-1] + bytes([raw[-1] ^ 1])
    view = check(tampered)
    assert view is not None and view[9] == 0
    # not canonical (a longer head for the version), truncated, trailing, an extra item
    assert check(b"\x88\x18\x01" + raw[2:]) is None
    assert check(raw[:-1]) is None
    assert check(raw + b"\x00") is None
    assert check(b"\x89" + raw[1:] + b"\xf6") is None
    # ill-typed header items: the version 2, a 31-byte prev_hash, a run id of 65 bytes
    assert check(b"\x88\x02" + raw[2:]) is None
    assert check(_record({"a": 1}, run_id=b"z" * 64)) is not None
    short_prev = raw.replace(b"\x58\x20", b"\x58\x1f", 1)
    assert check(short_prev) is None
    # a payload at the deepest nesting the strict path accepts is left to that path
    deep: object = 0
    for _ in range(canonical.MAX_DEPTH):
        deep = [deep]
    deepest = _record(deep)
    assert decode_record(deepest).payload_ok
    assert check(deepest) is None


def test_record_check_refuses_another_seq_or_link(native: canonical_native.Validator):
    check = native.record_checker(canonical.MAX_DEPTH, native.blake3_context_key(_CONTEXT))
    raw = _record({"a": 1})  # event 7, linked to the genesis hash of ledger 01..01
    prev = genesis_hash(b"\x01" * 16)
    assert check(raw, seq=7, prev=prev) is not None
    assert check(raw, seq=8, prev=prev) is None
    assert check(raw, seq=7, prev=bytes(32)) is None
    assert check(raw, seq=7, prev=prev[:-1] + bytes([prev[-1] ^ 1])) is None


# --- mutated real records: the record check never proves what the strict path refuses ----

_LEDGER = Path(__file__).resolve().parents[1] / "compat" / "ledgers" / "v4-ce6e5c1"
_HEADS = bytes.fromhex(  # argument widths, reserved, indefinite, tags, simple values, floats
    "18191a1b1c1f383b585b5f787b7f989b9fb8bbbfc0d8f4f6f7f8f9fbff00"
)
_INSERTS = (
    b"\xc0\x80",  # overlong NUL
    b"\xed\xa0\x80",  # a surrogate
    b"\xf4\x90\x80\x80",  # above U+10FFFF
    b"\xe2\x82",  # truncated
    b"\xf9\x7e\x00",  # a NaN
    b"\xf8\x20",  # a two-byte simple value
    b"\x1b" + b"\xff" * 8,  # 2^64 - 1
    b"\x3b" + b"\xff" * 8,  # -2^64
    b"\x9b" + b"\xff" * 8,  # an array of 2^64 - 1 items
    b"\x7f\x61a\xff",  # an indefinite text string
    b"\xa2\x61b\x00\x61a\x00",  # unsorted keys
    b"\xa2\x61a\x00\x61a\x00",  # a duplicate key
    b"\x81" * 70 + b"\x00",  # deeper than the bound
)


def _real_records() -> list[bytes]:
    """Every event of a ledger a released bvisor recorded (read-only, without a lock)."""
    env = lmdb.open(str(_LEDGER), readonly=True, lock=False, max_dbs=4, subdir=True)
    try:
        with env.begin() as txn:
            events = env.open_db(b"events", txn=txn, create=False)
            return [bytes(raw) for _, raw in txn.cursor(events)]
    finally:
        env.close()


def _mutant(rng: random.Random, raw: bytes) -> bytes:
    """One to three edits of ``raw``: a bit flipped, a head byte replaced, a cut, a byte
    run dropped or doubled, or a known-bad encoding inserted."""
    data = bytearray(raw)
    for _ in range(rng.randint(1, 3)):
        at = rng.randrange(len(data) + 1)
        match rng.randrange(6):
            case 0 if at < len(data):
                data[at] ^= 1 << rng.randrange(8)
            case 1 if at < len(data):
                data[at] = rng.choice(_HEADS)
            case 2:
                del data[at:]
            case 3:
                del data[at : at + rng.randint(1, 8)]
            case 4:
                data[at:at] = data[at : at + rng.randint(1, 40)]
            case _:
                data[at:at] = rng.choice(_INSERTS)
        if not data:
            data = bytearray(b"\x88")
    return bytes(data)


def test_mutated_real_records_get_the_strict_verdict(native: canonical_native.Validator):
    """A bounded, seeded differential fuzz of the C against the Python on the bytes verify
    reads: mutations of every record of a released ledger. The validator and the reference
    give one verdict (the same refusal, or the same value), and whatever the record check
    proves with a kind in the grammar, the strict decoder reads back with the very fields
    and digests (the verify walk's fast path relies on exactly that)."""
    from tests.canonical.test_native_differential import assert_agree

    check = native.record_checker(canonical.MAX_DEPTH, native.blake3_context_key(_CONTEXT))
    rng = random.Random(20261204)
    records = _real_records()
    assert len(records) > 100
    proven = 0
    for _ in range(20000):
        raw = _mutant(rng, rng.choice(records))
        assert_agree(raw)
        view = check(raw)
        if view is None:
            continue
        seq, time_ns, end, at_prev, at_kind, kind_len, at_run, run_len, at_hash, ok = view[:10]
        if not is_valid_kind(raw[at_kind : at_kind + kind_len].decode()):
            continue  # the walk leaves a kind outside the grammar to the strict path
        decoded = decode_record(raw)  # raises if the record check proved too much
        event = decoded.event
        assert (seq, time_ns, end) == (event.seq, event.time_ns, decoded.payload_at)
        assert raw[at_prev : at_prev + 32] == event.prev_hash
        assert raw[at_hash : at_hash + 32] == event.payload_hash
        assert (raw[at_run : at_run + run_len] if run_len else None) == event.run_id
        assert (view[10], view[11]) == (event.hash, decoded.computed_payload_hash)
        assert bool(ok) == decoded.payload_ok
        proven += 1
    assert proven > 100  # the mutations reach the record check's acceptance too
