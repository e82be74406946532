"""Review fixes: what ``first_bad_seq`` may vouch for, argument bounds, reserved kinds, fsync.

``first_bad_seq`` is the first event ``verify`` cannot vouch for, and an event is vouched
for only when the next event's ``prev_hash`` link to it was checked. A finding at S that
stops S's link from being checked (a missing event, an undecodable record, a record of
another seq) therefore leaves S-1 unproven.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from bvisor.front.cli.ledger_cmd import main
from bvisor.ledger import Ledger, LedgerError, verify
from bvisor.ledger.record import build_record, decode_record, encode_payload
from tests.ledger.testkit import build, get_record, key, put_record, raw


@pytest.fixture
def path(tmp_path: Path) -> Path:
    build(tmp_path / "l", 10)
    return tmp_path / "l"


def _first_bad(path: Path) -> int | None:
    result = verify(path)
    assert not result.ok
    return result.first_bad_seq


def _rewrite_header(path: Path, seq: int) -> None:
    """Change event ``seq``'s time (a valid record with another hash), nothing else."""
    event = decode_record(get_record(path, seq)).event
    built = build_record(
        seq, event.prev_hash, event.time_ns + 1, event.kind, event.run_id,
        encode_payload(event.payload),
    )  # fmt: skip
    put_record(path, seq, built.raw)


def test_rewritten_event_then_deleted_successor_is_unproven(path: Path) -> None:
    _rewrite_header(path, 4)
    with raw(path) as (txn, dbs):
        assert txn.delete(key(5), db=dbs["events"])
    result = verify(path)
    assert result.first_bad_seq == 4  # nothing links to the rewritten event 4 any more
    breaks = [f for f in result.findings if f.code == "chain-break"]
    assert [f.seq for f in breaks] == [6]
    assert "event 4" in breaks[0].detail and "event 5" not in breaks[0].detail


def test_rewritten_event_then_masked_successor_is_unproven(path: Path) -> None:
    _rewrite_header(path, 4)
    put_record(path, 5, get_record(path, 7))  # sequence-mismatch at 5
    assert _first_bad(path) == 4


def test_rewritten_event_then_garbage_successor_is_unproven(path: Path) -> None:
    _rewrite_header(path, 4)
    put_record(path, 5, b"\xff\x00garbage")  # malformed-record at 5
    assert _first_bad(path) == 4


def test_first_bad_seq_never_below_zero(path: Path) -> None:
    put_record(path, 0, b"\xff\x00garbage")
    assert _first_bad(path) == 0


# -- --expect-head is a whole-prefix claim -------------------------------------------------


def test_expect_head_refuses_a_partial_range(
    path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with Ledger.open(path, readonly=True) as ledger:
        head = str(ledger.head())
    for extra in (["--to", "0"], ["--from", "8"], ["--from", "0", "--to", "9"]):
        code = main(["--ledger", str(path), "verify", *extra, "--expect-head", head])
        err = capsys.readouterr().err
        assert code == 2 and "--expect-head" in err and "--from" in err, (extra, err)
    with pytest.raises(LedgerError, match="expect_head"):
        verify(path, start=1, expect_head=head)
    with pytest.raises(LedgerError, match="expect_head"):
        verify(path, stop=3, expect_head=head)
    assert main(["--ledger", str(path), "verify", "--expect-head", head]) == 0


# -- seq arguments are bounded ---------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["show", str(2**64)],
        ["show", str(2**64 - 1)],
        ["verify", "--from", str(2**64)],
        ["verify", "--to", str(2**64 - 1)],
        ["verify", "--expect-head", f"{2**64}:{'00' * 32}"],
    ],
)
def test_huge_numbers_are_usage_errors(
    path: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    code = main(["--ledger", str(path), *argv])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and err.startswith("bvisor-ledger: "), err


def test_largest_seq_arguments_are_accepted(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--ledger", str(path), "show", str(2**64 - 2)]) == 1  # not found, no crash
    assert main(["--ledger", str(path), "verify", "--from", "3", "--to", str(2**64 - 2)]) == 0
    capsys.readouterr()


def test_library_bounds_seq_arguments(path: Path) -> None:
    with Ledger.open(path, readonly=True) as ledger:
        with pytest.raises(LedgerError):
            ledger.get(2**64)
        with pytest.raises(LedgerError):
            list(ledger.events(2**64))
    with pytest.raises(LedgerError):
        verify(path, start=2**64)
    with pytest.raises(LedgerError):
        verify(path, stop=2**64 + 5)


# -- reserved kinds ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind",
    [
        "plan.admitted",
        "plan.refused",
        "lowering.entry",
        "launcher.phase",
        "run.terminal",
        "run.streams",
        "report.sealed",
    ],
)
def test_cli_append_refuses_run_kinds(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
) -> None:
    import io
    import sys

    ledger = str(tmp_path / "l")
    code = main(["--ledger", ledger, "append", "--kind", kind, "--run", "aa" * 16, "--data", "{}"])
    err = capsys.readouterr().err
    assert code == 2 and "reserved" in err, err
    line = json.dumps({"kind": kind, "run": "aa" * 16, "data": {}}) + "\n"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(line.encode())))
    code = main(["--ledger", ledger, "append", "--batch"])
    err = capsys.readouterr().err
    assert code == 2 and "reserved" in err and "line 1" in err, err
    assert not (tmp_path / "l" / "data.mdb").exists() or verify(ledger).events == 0


# -- durability ----------------------------------------------------------------------------


def test_directory_is_fsynced_when_the_files_are_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bvisor.ledger.environment as environment

    synced: list[tuple[int, int]] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            synced.append((info.st_dev, info.st_ino))
        real_fsync(fd)

    monkeypatch.setattr(environment.os, "fsync", spy)
    target = tmp_path / "new" / "ledger"
    with Ledger.open(target, create=True) as ledger:
        ledger.append("note.x", {})
    directory = os.stat(target)
    assert (directory.st_dev, directory.st_ino) in synced
    parent = os.stat(target.parent)
    assert (parent.st_dev, parent.st_ino) in synced
