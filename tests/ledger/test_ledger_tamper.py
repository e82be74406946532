"""The tamper catalogue: each change made through raw LMDB is detected and located.

Every test builds a 10-event ledger, changes its files the way an attacker with write
access could (``tests.ledger.testkit.raw``), and asserts the exact finding codes, where
they point, and ``first_bad_seq`` — the first event ``verify`` can no longer vouch for.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import lmdb
import pytest

from bvisor.ledger import Ledger, verify
from bvisor.ledger.record import build_record, decode_record, encode_payload
from tests.ledger.testkit import RUN_A, RUN_B, build, get_record, key, put_record, raw, rewrite


def codes(path: Path, **kwargs: object) -> tuple[list[tuple[int | None, str]], int | None]:
    result = verify(path, **kwargs)  # type: ignore[arg-type]
    assert result.ok is (not result.findings)
    return [(f.seq, f.code) for f in result.findings], result.first_bad_seq


@pytest.fixture
def path(tmp_path: Path) -> Path:
    build(tmp_path / "l", 10)
    assert verify(tmp_path / "l").ok
    return tmp_path / "l"


def test_flipped_payload_byte(path: Path) -> None:
    record = bytearray(get_record(path, 5))
    assert record.endswith(b"abcdefgh")  # the payload map ends with its byte string
    record[-1] ^= 0x01  # 'h' -> 'i': still canonical, different payload
    put_record(path, 5, bytes(record))
    assert codes(path) == ([(5, "payload-hash-mismatch")], 5)


def test_flipped_header_byte(path: Path) -> None:
    record = bytearray(get_record(path, 5))
    at = record.index(b"note.e5")
    record[at + 6] = ord("9")  # kind note.e5 -> note.e9: a valid record, another hash
    put_record(path, 5, bytes(record))
    assert codes(path) == ([(6, "chain-break")], 5)


def test_flipped_header_byte_of_last_event(path: Path) -> None:
    record = bytearray(get_record(path, 9))
    at = record.index(b"note.e9")
    record[at + 6] = ord("1")
    put_record(path, 9, bytes(record))
    assert codes(path) == ([(9, "head-mismatch")], 9)


def test_flipped_prev_hash_byte(path: Path) -> None:
    record = bytearray(get_record(path, 5))
    record[5] ^= 0x80  # inside prev_hash (array head, version, seq, 2-byte bstr head)
    put_record(path, 5, bytes(record))
    found, first_bad = codes(path)
    assert found == [(5, "chain-break"), (6, "chain-break")] and first_bad == 4


def test_deleted_event(path: Path) -> None:
    with raw(path) as (txn, dbs):
        assert txn.delete(key(4), db=dbs["events"])
    found, first_bad = codes(path)
    assert sorted(found) == [(4, "index-mismatch"), (4, "sequence-gap"), (5, "chain-break")]
    assert first_bad == 3  # with event 4 gone, no link vouches for event 3


def test_swapped_events(path: Path) -> None:
    four, five = get_record(path, 4), get_record(path, 5)
    put_record(path, 4, five)
    put_record(path, 5, four)
    found, first_bad = codes(path)
    assert (4, "sequence-mismatch") in found and (5, "sequence-mismatch") in found
    assert first_bad == 3  # slot 4 holds event 5's record: nothing links to event 3


def test_changed_meta_head_hash(path: Path) -> None:
    with raw(path) as (txn, dbs):
        txn.put(b"head_hash", bytes(32), db=dbs["meta"])
    assert codes(path) == ([(9, "head-mismatch")], 9)


def test_changed_meta_head_seq(path: Path) -> None:
    with raw(path) as (txn, dbs):
        txn.put(b"head_seq", key(6), db=dbs["meta"])
    assert codes(path) == ([(7, "head-mismatch")], 7)


def test_rewritten_event_with_recomputed_payload_hash(path: Path) -> None:
    rewrite(path, 5, {"n": 5, "blob": b"forged!!"})
    assert codes(path) == ([(6, "chain-break")], 5)


def test_truncated_tail_found_only_with_expected_head(path: Path) -> None:
    with Ledger.open(path, readonly=True) as ledger:
        old_head = ledger.head()
        six = ledger.get(6)
    assert old_head is not None
    with raw(path) as (txn, dbs):  # a careful attacker: drop 7..9 and fix every index
        for seq in (7, 8, 9):
            txn.delete(key(seq), db=dbs["events"])
        txn.delete(RUN_A + (4).to_bytes(4, "big"), db=dbs["runs"])  # seq 8 was RUN_A's 5th
        txn.delete(RUN_B + (1).to_bytes(4, "big"), db=dbs["runs"])  # seq 9 was RUN_B's 2nd
        txn.put(b"head_seq", key(6), db=dbs["meta"])
        txn.put(b"head_hash", six.hash, db=dbs["meta"])
    # The stored tree still covers ten events: no writer leaves that, so it is a finding.
    assert codes(path) == ([(7, "tree-beyond-head")], 7)
    with raw(path) as (txn, dbs):  # so a careful attacker shrinks the tree too
        txn.put(b"tree_size", (7).to_bytes(8, "big"), db=dbs["meta"])
    assert codes(path) == ([], None)  # a shorter chain is still a valid chain
    # events 7..9 are gone, so no link ties the head to the chain: nothing is proven by it
    assert codes(path, expect_head=old_head) == ([(7, "expected-head-missing")], 0)
    assert codes(path, expect_head=str(old_head)) == ([(7, "expected-head-missing")], 0)
    assert codes(path, expect_head=f"6:{six.hash.hex()}") == ([], None)  # the prefix is intact


def test_expected_head_with_a_different_hash(path: Path) -> None:
    assert codes(path, expect_head=f"3:{'00' * 32}") == ([(3, "expected-head-mismatch")], 0)


def test_history_rewritten_and_rechained_proves_nothing_against_the_kept_head(
    path: Path,
) -> None:
    """A forger who re-chains every event after the one changed leaves a ledger consistent
    in itself; the head kept elsewhere is what it no longer ends in, and that head was
    the only proof of every event before it — so no event, and no run, is proven (replay
    judged the runs before the head's seq verified)."""
    with Ledger.open(path, readonly=True) as ledger:
        old_head = ledger.head()
    assert old_head is not None
    prev = rewrite(path, 5, {"n": 5, "blob": b"forged!!"})
    for seq in range(6, 10):
        event = decode_record(get_record(path, seq)).event
        payload = encode_payload(event.payload)
        built = build_record(seq, prev, event.time_ns, event.kind, event.run_id, payload)
        put_record(path, seq, built.raw)
        prev = built.hash
    with raw(path) as (txn, dbs):
        txn.put(b"head_hash", prev, db=dbs["meta"])
    found, _first_bad = codes(path)
    assert all(code == "tree-mismatch" for _seq, code in found), found  # chain-safe
    result = verify(path, expect_head=old_head)
    assert [(f.seq, f.code) for f in result.findings if f.code != "tree-mismatch"] == [
        (9, "expected-head-mismatch")
    ]
    assert (result.first_bad_seq, result.chain_bad_seq) == (0, 0)


def test_valid_cbor_but_not_canonical(path: Path) -> None:
    record = get_record(path, 5)
    assert record[2] == 0x05  # seq 5, shortest form
    put_record(path, 5, record[:2] + b"\x18\x05" + record[3:])  # same value, 2-byte form
    assert codes(path) == ([(5, "non-canonical-record")], 5)  # the chain survives it


def test_garbage_record(path: Path) -> None:
    put_record(path, 5, b"\xff\x00garbage")
    found, first_bad = codes(path)
    assert found[0] == (5, "malformed-record") and first_bad == 4  # 5's link is unreadable


@pytest.mark.parametrize("stray", [b"\x00" * 7, b"\xff" * 7, b"\x00" * 9])
def test_a_stray_key_of_another_length_is_named_wherever_it_sorts(path: Path, stray: bytes) -> None:
    """Found by attack: seven zero bytes sort before seq 0's key, so a walk from seq 0
    never met the record and verify passed; seven ``ff`` bytes sort after every seq and
    were taken for the last event's key (a head mismatch, a wrong tree size). Each is
    one finding, and the ledger's real last event is still its last event."""
    with raw(path) as (txn, dbs):
        txn.put(stray, b"junk", db=dbs["events"])
    result = verify(path)
    assert [(f.seq, f.code) for f in result.findings] == [(None, "malformed-record")]
    assert stray.hex() in result.findings[0].detail
    assert result.head is not None and result.head.seq == 9


@pytest.mark.parametrize("stray", [b"\x00" * 7, b"\xff" * 7, b"\x00" * 7 + b"\x05\x00"])
def test_a_stray_key_stops_writers_and_signers_naming_it(path: Path, stray: bytes) -> None:
    """Found by attack: after a stray key some writes were still appended, and signing
    refused with a false "event 10 is missing". Both now refuse, saying what is there.
    Oracle: the ledger's record count, unchanged."""
    from bvisor.ledger.errors import LedgerCorruptError
    from bvisor.ledger.note import generate_signer

    with raw(path) as (txn, dbs):
        txn.put(stray, b"junk", db=dbs["events"])
    with Ledger.open(path) as ledger:
        with pytest.raises(LedgerCorruptError, match="holds 11 records"):
            ledger.append("note.after", 1)
        with pytest.raises(LedgerCorruptError, match="holds 11 records") as refused:
            ledger.checkpoint(generate_signer("test.example/key", 1))
        assert "missing" not in str(refused.value)
    with raw(path) as (txn, dbs):
        assert txn.stat(dbs["events"])["entries"] == 11


def test_genesis_mismatch(path: Path) -> None:
    with raw(path) as (txn, dbs):
        txn.put(b"ledger_id", bytes(16), db=dbs["meta"])
    assert codes(path) == ([(0, "genesis-mismatch")], 0)


def test_index_row_removed_and_added(path: Path) -> None:
    with raw(path) as (txn, dbs):
        txn.delete(RUN_A + (2).to_bytes(4, "big"), db=dbs["runs"])  # seq 4
    assert codes(path) == ([(4, "index-mismatch")], 4)
    with raw(path) as (txn, dbs):
        txn.put(RUN_A + (2).to_bytes(4, "big"), key(4), db=dbs["runs"])
        txn.put(RUN_A + (9).to_bytes(4, "big"), key(7), db=dbs["runs"])  # a forged extra row
    assert codes(path) == ([(7, "index-mismatch")], 7)


def test_partial_range_locates_damage(path: Path) -> None:
    rewrite(path, 5, {"n": 5, "blob": b"forged!!"})
    assert codes(path, start=0, stop=5) == ([], None)  # before the damage: intact
    assert codes(path, start=6, stop=8) == ([(6, "chain-break")], 5)
    assert verify(path, start=7).ok


def test_tampered_record_is_refused_on_read(path: Path) -> None:
    record = bytearray(get_record(path, 5))
    record[-1] ^= 0x01
    put_record(path, 5, bytes(record))
    with Ledger.open(path, readonly=True) as ledger:
        with pytest.raises(Exception, match="payload does not match"):
            ledger.get(5)
        assert decode_record(bytes(record)).payload_ok is False


def test_a_record_over_the_size_bound_is_found_by_every_walk(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by attack (differential fuzzing of the native record check against the strict
    decoder): a record one payload larger than any writer may append, well formed and
    chained, was proven by the native check (which knows no size bound) while the strict
    path refuses it as ``malformed-record``, so verify passed a record that ``get`` refuses.
    Oracle: the same ledger walked with the native check and without it."""
    from bvisor.ledger.record import MAX_RECORD_BYTES

    event = decode_record(get_record(path, 9)).event
    payload = b"\x5a" + MAX_RECORD_BYTES.to_bytes(4, "big") + bytes(MAX_RECORD_BYTES)  # canonical
    built = build_record(9, event.prev_hash, event.time_ns, event.kind, event.run_id, payload)
    env = lmdb.open(str(path), max_dbs=4, create=False, map_size=4 * MAX_RECORD_BYTES)
    try:
        with env.begin(write=True) as txn:
            txn.put(key(9), built.raw, db=env.open_db(b"events", txn=txn, create=False))
            txn.put(b"head_hash", built.hash, db=env.open_db(b"meta", txn=txn, create=False))
    finally:
        env.close()
    native = codes(path)
    assert (9, "malformed-record") in native[0]
    walk = importlib.import_module("bvisor.ledger.verify")  # the package names a function so
    monkeypatch.setattr(walk, "_native_record_check", lambda: None)  # the strict path alone
    assert codes(path) == native


@pytest.mark.parametrize(
    "wrap", [b"\x81", b"\xa1\x61a", b"\x9f"], ids=["array", "map", "indefinite"]
)
def test_a_record_nested_a_hundred_thousand_deep_is_a_finding(
    path: Path, wrap: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hostile nesting in a stored payload (a hundred thousand levels, past every decoder's
    own bound and far past a C stack) is refused by every reader with a finding at its seq,
    with the native record check and without it; nothing recurses on it. Oracle: verify's
    findings, and the process survives."""
    event = decode_record(get_record(path, 5)).event
    built = build_record(5, event.prev_hash, event.time_ns, event.kind, event.run_id, b"\x00")
    deep = built.raw[:-1] + wrap * 100_000 + b"\x00"
    put_record(path, 5, deep)
    found, _first_bad = codes(path)
    assert found[0][0] == 5 and found[0][1] in {"non-canonical-record", "malformed-record"}, found
    walk = importlib.import_module("bvisor.ledger.verify")
    with monkeypatch.context() as patched:
        patched.setattr(walk, "_native_record_check", lambda: None)  # the strict path alone
        assert codes(path)[0] == found
    with (
        Ledger.open(path, readonly=True) as ledger,
        pytest.raises(Exception, match=r"canonical|CBOR"),
    ):
        ledger.get(5)
