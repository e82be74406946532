"""Writers: what they will and will not write to, old ledgers gaining the tree, full disks,
and one definition of the record's limits (anything ``append`` accepts reads back).

A store that is not a valid ledger is never written to: the oracle is the directory's
bytes before and after the refused open.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import lmdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bvisor.canonical import MAX_DEPTH
from bvisor.ledger import Ledger, LedgerCorruptError, LedgerNotFoundError, verify
from bvisor.ledger.errors import LedgerDiskFullError
from bvisor.replay import audit
from tests.ledger.testkit import build, get_record, put_record
from tests.transparency.kit import old_ledger, raw


def _files(directory: Path) -> dict[str, str]:
    """The store's files (LMDB's lock file holds only who is reading: not the store)."""
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.iterdir())
        if p.name != "lock.mdb"
    }


# -- never write to what is not a valid ledger -----------------------------------------------


def test_a_directory_with_only_a_lock_file_is_not_made_a_ledger(tmp_path: Path) -> None:
    directory = tmp_path / "l"
    directory.mkdir()
    (directory / "lock.mdb").write_bytes(b"\0" * 64)
    with pytest.raises(LedgerNotFoundError, match="other files"):
        Ledger.open(directory, create=True)
    assert os.listdir(directory) == ["lock.mdb"]
    assert (directory / "lock.mdb").read_bytes() == b"\0" * 64


def test_an_empty_data_file_is_not_initialised(tmp_path: Path) -> None:
    directory = tmp_path / "l"
    directory.mkdir()
    (directory / "data.mdb").write_bytes(b"")
    for create in (True, False):
        with pytest.raises(LedgerNotFoundError, match=r"data\.mdb is empty"):
            Ledger.open(directory, create=create)
    assert _files(directory) == {"data.mdb": hashlib.sha256(b"").hexdigest()}


def test_an_lmdb_store_without_the_ledger_is_not_extended(tmp_path: Path) -> None:
    directory = tmp_path / "l"
    env = lmdb.open(str(directory), max_dbs=2)
    with env.begin(write=True) as txn:
        txn.put(b"k", b"v")  # someone's plain key-value store
    env.close()
    empty = tmp_path / "e"
    lmdb.open(str(empty), max_dbs=2).close()  # a store with nothing in it at all
    for store in (directory, empty):
        before = _files(store)
        for create in (True, False):
            with pytest.raises(LedgerNotFoundError, match="not a bvisor ledger"):
                Ledger.open(store, create=create)
        assert _files(store) == before


# -- ledgers written before the tree --------------------------------------------------------


def test_an_old_ledger_verifies_replays_and_gains_the_tree_on_its_next_append(
    tmp_path: Path,
) -> None:
    path = old_ledger(tmp_path / "old")
    result = verify(path)
    assert result.ok and result.events == 52 and "no Merkle tree is stored" in result.notes[0]
    with Ledger.open(path, readonly=True) as ledger:
        report = audit(ledger)
        # Its two made-up runs note no mechanism as applied: only the transcript fails.
        verdicts = [(r.verdict, [c.name for c in r.failing()]) for r in report.runs]
        assert verdicts.count(("failed", ["transcript"])) == 2 and ("verified", []) in verdicts
        assert ledger.latest_run_start() is None  # not kept: callers use the runs index
    with Ledger.open(path) as ledger:
        ledger.append("note.after", {"new": True})
        with ledger.snapshot() as snap:
            assert snap.tree_size() == snap.event_count() == 53
        assert ledger.latest_run_start() is not None
    result = verify(path, tree_nodes=True)
    assert result.ok and result.notes == ()


def test_a_damaged_old_ledger_is_not_given_a_tree_or_anything_else(tmp_path: Path) -> None:
    path = old_ledger(tmp_path / "old")
    record = bytearray(get_record(path, 10))
    record[-2] ^= 0x01
    put_record(path, 10, bytes(record))
    (path / "lock.mdb").unlink()
    before = _files(path)
    with Ledger.open(path) as ledger, pytest.raises(LedgerCorruptError, match="does not verify"):
        ledger.append("note.x", 1)
    assert _files(path) == before


def test_a_ledger_whose_tree_covers_more_than_it_holds_is_not_extended(tmp_path: Path) -> None:
    path = tmp_path / "l"
    build(path, 10)
    with raw(path) as (txn, dbs):  # a careless attacker: the tail and the head, not the tree
        for seq in (8, 9):
            txn.delete(seq.to_bytes(8, "big"), db=dbs["events"])
        head = bytes(txn.get((7).to_bytes(8, "big"), db=dbs["events"]))
        txn.put(b"head_seq", (7).to_bytes(8, "big"), db=dbs["meta"])
        from bvisor.ledger.record import decode_record

        txn.put(b"head_hash", decode_record(head).event.hash, db=dbs["meta"])
    result = verify(path)  # no writer leaves this: a finding, not a note
    (found,) = [f for f in result.findings if f.code == "tree-beyond-head"]
    assert found.seq == 8 and "events 8..9 were recorded and are gone" in found.detail
    assert not result.ok and result.chain_bad_seq == 8
    with Ledger.open(path) as ledger, pytest.raises(LedgerCorruptError, match="were removed"):
        ledger.append("note.x", 1)


# -- a full disk --------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path):  # type: ignore[no-untyped-def]
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_is_reported_as_such_and_the_ledger_stays_valid(
    small_disk: Path, tmp_path: Path
) -> None:
    path = small_disk / "l"
    with Ledger.open(path, create=True) as ledger:
        ledger.append("note.first", 1)
        with pytest.raises(LedgerDiskFullError, match="the disk is full"):
            for _ in range(100):
                ledger.append("note.big", os.urandom(100_000))
    copy = tmp_path / "copy"
    shutil.copytree(path, copy)
    assert verify(copy).ok


# -- one definition of the record's limits --------------------------------------------------


def _nested(depth: int) -> object:
    value: object = 1
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


@pytest.mark.parametrize("depth", [MAX_DEPTH - 1, MAX_DEPTH])
def test_a_payload_at_the_deepest_accepted_nesting_reads_back(tmp_path: Path, depth: int) -> None:
    """Regression: the record put its payload one level below where append measured it, so a
    payload of exactly MAX_DEPTH levels was appended and then unreadable, poisoning replay."""
    with Ledger.open(tmp_path / "l", create=True) as ledger:
        receipt = ledger.append("note.deep", _nested(depth), bytes(16))
        ledger.append("note.after", 1)
        assert ledger.get(receipt.seq).payload == _nested(depth)
    assert verify(tmp_path / "l").ok
    with Ledger.open(tmp_path / "l", readonly=True) as ledger:
        report = audit(ledger)
    assert report.ledger is not None and report.ledger.ok
    assert report.runs[0].checks[0].ok  # its chain check holds (its grammar is not a run's)


_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(1 << 64), max_value=(1 << 64) - 1)
    | st.binary(max_size=40)
    | st.text(max_size=20)
)
_VALUES = st.recursive(
    _LEAVES,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=30,
)
_ANY = _VALUES | st.integers(min_value=MAX_DEPTH - 2, max_value=MAX_DEPTH + 2).map(_nested)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(payloads=st.lists(_ANY, min_size=1, max_size=4), with_run=st.booleans())
def test_anything_append_accepts_verify_and_replay_accept(
    tmp_path_factory: pytest.TempPathFactory, payloads: list[object], with_run: bool
) -> None:
    path = tmp_path_factory.mktemp("prop") / "l"
    accepted = 0
    with Ledger.open(path, create=True) as ledger:
        for payload in payloads:
            try:
                ledger.append("note.any", payload, bytes(8) if with_run else None)
            except Exception:
                continue  # refused at the door: nothing was written
            accepted += 1
        assert sum(1 for _ in ledger.events()) == accepted  # every accepted event reads back
    if not accepted:
        return
    assert verify(path).ok
    with Ledger.open(path, readonly=True) as ledger:
        report = audit(ledger)
    assert report.error is None and report.ledger is not None and report.ledger.ok
    assert all(run.checks[0].ok for run in report.runs)
