"""The native BLAKE3 and the one-pass ledger record check, against independent oracles.

The C hashes (written from the BLAKE3 specification) are compared with the ``blake3``
package on lengths at and around every block (64) and chunk (1024) boundary and across
several tree levels; the record check is compared field by field with the strict Python
decoder on real records, and must refuse what the strict decoder refuses or reports.
"""

from __future__ import annotations

import os

import pytest
from blake3 import blake3

from bvisor import canonical, canonical_native
from bvisor.digest import Purpose
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
