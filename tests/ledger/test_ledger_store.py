"""The store: append and read back, refusals that write nothing, growth, files, processes."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
from pathlib import Path

import lmdb
import pytest

from bvisor.ledger import (
    MAX_PAYLOAD_BYTES,
    EventNotFoundError,
    InvalidKindError,
    InvalidPayloadError,
    InvalidRunIdError,
    Ledger,
    LedgerCorruptError,
    LedgerForkError,
    LedgerFormatError,
    LedgerNotFoundError,
    LedgerUsageError,
    PayloadTooLargeError,
    default_ledger_path,
    verify,
)
from bvisor.ledger.record import genesis_hash
from bvisor.replay.outcomes import recorded_outcome
from tests.ledger.testkit import REPO, RUN_A, RUN_B, build, raw


def test_append_get_and_chain(tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "l", create=True) as ledger:
        assert ledger.head() is None
        first = ledger.append("note.external", {"a": 1})
        second = ledger.append("note.external", [b"\x00", -5, None, True], RUN_A)
        assert (first.seq, second.seq) == (0, 1)
        event0, event1 = ledger.get(0), ledger.get(1)
        assert event0.prev_hash == genesis_hash(ledger.ledger_id)
        assert event1.prev_hash == first.hash == event0.hash
        assert event1.payload == [b"\x00", -5, None, True] and event1.run_id == RUN_A
        head = ledger.head()
        assert head is not None and (head.seq, head.hash) == (1, second.hash)
        with pytest.raises(EventNotFoundError):
            ledger.get(2)
        with pytest.raises(LedgerUsageError):
            ledger.get(-1)


def test_events_ranges_and_reverse(tmp_path: Path) -> None:
    receipts = build(tmp_path / "l", 600)  # crosses the 256-event read chunks
    with Ledger.open(tmp_path / "l") as ledger:
        assert [e.seq for e in ledger.events()] == list(range(600))
        assert [e.seq for e in ledger.events(250, 520)] == list(range(250, 520))
        assert [e.seq for e in ledger.events(reverse=True)] == list(range(599, -1, -1))
        assert [e.seq for e in ledger.events(3, 300, reverse=True)] == list(range(299, 2, -1))
        assert [e.hash for e in ledger.events()] == [r.hash for r in receipts]
        assert list(ledger.events(600)) == []


def test_runs_index_and_summaries(tmp_path: Path) -> None:
    build(tmp_path / "l", 12)
    prefix_run = RUN_A[:15]  # a run id that is a prefix of another must stay separate
    longer_run = RUN_A + b"\x00"
    with Ledger.open(tmp_path / "l") as ledger:
        ledger.append("note.p", 1, prefix_run)
        ledger.append("note.q", 2, longer_run)
        ledger.append("run.terminal", {"outcome": "Completed"}, RUN_A)
        ledger.append("report.sealed", {"seal": b"s"}, RUN_A)
        ledger.append("note.p", 3, prefix_run)
        a_events = ledger.run_events(RUN_A)
        assert [e.seq for e in a_events] == [0, 2, 4, 6, 8, 10, 14, 15]
        assert [e.seq for e in ledger.run_events(RUN_B)] == [3, 9]
        assert [e.seq for e in ledger.run_events(prefix_run)] == [12, 16]
        assert [e.seq for e in ledger.run_events(longer_run)] == [13]
        assert ledger.run_events(b"\x01" * 16) == []
        summaries = {s.run_id: s for s in ledger.runs()}
        a = summaries[RUN_A]
        assert (a.first_seq, a.last_seq, a.count, a.last_kind) == (0, 15, 8, "report.sealed")
        assert recorded_outcome(ledger, RUN_A) == "Completed"  # replay reads it, not the ledger
        assert recorded_outcome(ledger, RUN_B) is None and summaries[RUN_B].count == 2
        assert summaries[prefix_run].count == 2
        assert [s.run_id for s in ledger.runs()] == [RUN_A, RUN_B, prefix_run, longer_run]
    assert verify(tmp_path / "l").ok


@pytest.mark.parametrize(
    ("kind", "payload", "run_id", "error"),
    [
        ("Note.External", 1, None, InvalidKindError),
        ("note", 1, None, InvalidKindError),
        ("note.", 1, None, InvalidKindError),
        ("note.x y", 1, None, InvalidKindError),
        (7, 1, None, InvalidKindError),
        ("note.x", 1.5, None, InvalidPayloadError),
        ("note.x", {1: "int key"}, None, InvalidPayloadError),
        ("note.x", 1 << 64, None, InvalidPayloadError),
        ("note.x", {"s": {1, 2}}, None, InvalidPayloadError),
        ("note.x", b"\x00" * (MAX_PAYLOAD_BYTES + 1), None, PayloadTooLargeError),
        ("note.x", 1, b"", InvalidRunIdError),
        ("note.x", 1, "text-run", InvalidRunIdError),
    ],
    ids=[
        "upper-case",
        "one-segment",
        "empty-segment",
        "space",
        "not-text",
        "float",
        "int-key",
        "big-int",
        "set",
        "oversize",
        "empty-run",
        "text-run",
    ],
)
def test_refusals_write_nothing(
    tmp_path: Path, kind: object, payload: object, run_id: object, error: type[Exception]
) -> None:
    path = tmp_path / "l"
    build(path, 3)
    before = (path / "data.mdb").read_bytes()
    with Ledger.open(path) as ledger:
        head = ledger.head()
        with pytest.raises(error) as caught:
            ledger.append_many([("note.ok", 1, None), (kind, payload, run_id)])  # type: ignore[list-item]
        assert str(caught.value)  # a message, naming the field
        assert ledger.head() == head
        assert len(list(ledger.events())) == 3
    assert (path / "data.mdb").read_bytes() == before


def test_payload_at_the_limit_is_accepted(tmp_path: Path) -> None:
    blob = b"\x00" * (MAX_PAYLOAD_BYTES - 5)  # 5-byte head for a byte string this long
    with Ledger.open(tmp_path / "l", create=True) as ledger:
        receipt = ledger.append("note.big", blob)
        assert ledger.get(receipt.seq).payload == blob
    assert verify(tmp_path / "l").ok


def test_map_grows_by_itself(tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "l", create=True, map_size=64 * 1024) as ledger:
        for round_ in range(5):
            ledger.append_many([("note.fill", {"pad": os.urandom(3000)}, RUN_A)] * 200)
            ledger.append("note.one", round_)
        assert ledger.head() is not None
    assert os.path.getsize(tmp_path / "l" / "data.mdb") > 3_000_000
    result = verify(tmp_path / "l")
    assert result.ok and result.events == 1005


def test_adopts_map_grown_by_another_process(tmp_path: Path) -> None:
    path = tmp_path / "l"
    with Ledger.open(path, create=True, map_size=1024 * 1024) as ledger:
        ledger.append("note.start", 0)
        code = (
            "from ledger import Ledger\n"
            f"l = Ledger.open({str(path)!r})\n"
            "for i in range(8):\n"
            "    l.append_many([('note.big', {'pad': bytes(4000)}, None)] * 500)\n"
        )
        subprocess.run(
            [sys.executable, "-c", code],
            check=True,
            cwd=REPO,
            env=dict(os.environ, PYTHONPATH=str(REPO)),
        )
        head = ledger.head()  # our 1 MiB map is now far too small for the data
        assert head is not None and head.seq == 4000
        ledger.append("note.after", 1)
        assert sum(1 for _ in ledger.events()) == 4002
    assert verify(path).ok


def test_directory_and_file_modes(tmp_path: Path) -> None:
    os.umask(0o022)
    path = tmp_path / "deep" / "ledger"
    build(path, 1)
    assert stat.S_IMODE(path.stat().st_mode) == 0o700
    for name in ("data.mdb", "lock.mdb"):
        assert stat.S_IMODE((path / name).stat().st_mode) == 0o600


def test_not_a_ledger(tmp_path: Path) -> None:
    with pytest.raises(LedgerNotFoundError, match="does not exist"):
        Ledger.open(tmp_path / "missing")
    (tmp_path / "file").write_text("x")
    with pytest.raises(LedgerNotFoundError, match="not a directory"):
        Ledger.open(tmp_path / "file")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("x")
    with pytest.raises(LedgerNotFoundError, match=r"no data\.mdb"):
        Ledger.open(tmp_path / "other")
    with pytest.raises(LedgerNotFoundError, match="other files"):
        Ledger.open(tmp_path / "other", create=True)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "data.mdb").write_bytes(os.urandom(8192))
    with pytest.raises(LedgerNotFoundError):
        Ledger.open(tmp_path / "junk", readonly=True)
    foreign = tmp_path / "foreign"  # an LMDB store that is not a ledger
    env = lmdb.open(str(foreign), max_dbs=2)
    env.open_db(b"something")
    env.close()
    with pytest.raises(LedgerNotFoundError, match="not a bvisor ledger"):
        Ledger.open(foreign)
    with pytest.raises(LedgerNotFoundError, match="not a bvisor ledger"):
        Ledger.open(foreign, readonly=True)


def test_unknown_format_version(tmp_path: Path) -> None:
    build(tmp_path / "l", 2)
    with raw(tmp_path / "l") as (txn, dbs):
        txn.put(b"format_version", (2).to_bytes(4, "big"), db=dbs["meta"])
    with pytest.raises(LedgerFormatError, match="format version 2 is not supported"):
        Ledger.open(tmp_path / "l", readonly=True)
    with pytest.raises(LedgerFormatError):
        verify(tmp_path / "l")


def test_refuses_to_extend_a_damaged_head(tmp_path: Path) -> None:
    build(tmp_path / "l", 4)
    with raw(tmp_path / "l") as (txn, dbs):
        txn.delete((3).to_bytes(8, "big"), db=dbs["events"])
    with Ledger.open(tmp_path / "l") as ledger, pytest.raises(LedgerCorruptError, match="verify"):
        ledger.append("note.x", 1)


def test_one_environment_per_process(tmp_path: Path) -> None:
    path = tmp_path / "l"
    build(path, 2)
    first = Ledger.open(path)
    second = Ledger.open(str(path) + "/")  # same directory, another spelling
    reader = Ledger.open(path, readonly=True)  # reuses the writable environment
    assert second.append("note.x", 1).seq == 2
    assert reader.get(2).payload == 1
    with pytest.raises(LedgerUsageError, match="read-only"):
        reader.append("note.x", 2)
    first.close()
    assert second.head() is not None  # still open: the environment is reference-counted
    second.close()
    reader.close()
    with pytest.raises(LedgerUsageError, match="closed"):
        reader.head()
    only_reader = Ledger.open(path, readonly=True)
    with pytest.raises(LedgerUsageError, match="already open read-only"):
        Ledger.open(path)
    only_reader.close()
    Ledger.open(path).close()
    with pytest.raises(LedgerUsageError):
        Ledger.open(path, create=True, readonly=True)


def test_refuses_use_after_fork(tmp_path: Path) -> None:
    path = tmp_path / "l"
    build(path, 1)
    with Ledger.open(path) as ledger:
        pid = os.fork()
        if pid == 0:  # child: every use must be refused, never touch LMDB
            code = 0
            for action in (
                lambda: ledger.append("note.x", 1),
                ledger.head,
                lambda: Ledger.open(path),
            ):
                try:
                    action()
                    code |= 1
                except LedgerForkError:
                    pass
                except BaseException:
                    code |= 2
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert ledger.append("note.parent", 1).seq == 1
    assert verify(path).ok


def test_verify_never_writes(tmp_path: Path) -> None:
    path = tmp_path / "l"
    build(path, 50)
    digest = hashlib.sha256((path / "data.mdb").read_bytes()).hexdigest()
    mtime = (path / "data.mdb").stat().st_mtime_ns
    assert verify(path).ok
    assert hashlib.sha256((path / "data.mdb").read_bytes()).hexdigest() == digest
    assert (path / "data.mdb").stat().st_mtime_ns == mtime


def test_default_ledger_path() -> None:
    assert default_ledger_path({"BVISOR_LEDGER": "/x/l", "XDG_DATA_HOME": "/d"}) == Path("/x/l")
    assert default_ledger_path({"XDG_DATA_HOME": "/d", "HOME": "/h"}) == Path("/d/bvisor/ledger")
    assert default_ledger_path({"XDG_DATA_HOME": "rel", "HOME": "/h"}) == Path(
        "/h/.local/share/bvisor/ledger"
    )
    assert default_ledger_path({"BVISOR_LEDGER": "", "HOME": "/h"}) == Path(
        "/h/.local/share/bvisor/ledger"
    )
