"""Replay judges runs only over a fully verified chain, and never hides a ledger finding.

Each ledger here is damaged through raw LMDB (``tests.ledger.testkit.raw``), the way an
attacker with write access to the directory could, *without* recomputing the whole chain.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bvisor.contract.report import BoundaryReportBody
from bvisor.front.cli.replay_cmd import main
from bvisor.ledger import Ledger
from bvisor.ledger.record import build_record, encode_payload
from bvisor.replay import FAILED, VERIFIED, audit
from tests.ledger.testkit import key, raw
from tests.replay.helpers import FakeRun, record_refusal, record_synthetic


def _two_runs(path: Path) -> tuple[bytes, bytes]:
    with Ledger.open(path, create=True) as ledger:
        first = record_synthetic(ledger, fake=FakeRun())  # failed, exit 3
        second = record_synthetic(ledger, fake=FakeRun())
    return first, second


def _rewrite_tail_as_completed(path: Path, run_id: bytes) -> int:
    """Rewrite run.terminal .. report.sealed of ``run_id`` as completed/exit 0, re-chaining
    only inside the run (nothing after it is recomputed, meta untouched). Returns its last seq.
    """
    with Ledger.open(path, readonly=True) as ledger:
        events = list(ledger.events())
    mine = [e for e in events if e.run_id == run_id]
    start = next(i for i, e in enumerate(events) if e.run_id == run_id and e.kind == "run.terminal")
    last = mine[-1].seq
    with raw(path) as (txn, dbs):
        prev = events[start - 1].hash
        for event in events[start : last + 1]:
            payload = event.payload
            assert isinstance(payload, dict)
            if event.kind == "run.terminal":
                payload = dict(payload, outcome="completed", exit={"code": 0, "signal": None})
            if event.kind == "report.sealed":
                body = dict(payload["body"], outcome="completed", exit={"code": 0, "signal": None})  # type: ignore[arg-type]
                payload = {"body": body, "seal": BoundaryReportBody.from_value(body).seal()}
            built = build_record(
                event.seq, prev, event.time_ns, event.kind, event.run_id, encode_payload(payload)
            )
            txn.put(key(event.seq), built.raw, db=dbs["events"])
            prev = built.hash
    return last


def _chain(report_run: object) -> object:
    return next(c for c in report_run.checks if c.name == "chain")  # type: ignore[attr-defined]


def test_named_run_with_rewritten_tail_fails_chain(tmp_path: Path) -> None:
    path = tmp_path / "l"
    first, _ = _two_runs(path)
    _rewrite_tail_as_completed(path, first)
    with Ledger.open(path, readonly=True) as ledger:
        report = audit(ledger, [first])
    assert not report.ok
    (run,) = report.runs
    assert run.verdict == FAILED and not _chain(run).ok  # type: ignore[attr-defined]
    assert report.ledger is not None and not report.ledger.ok


@pytest.mark.parametrize("damage", ["delete", "mask"])
def test_rewritten_tail_with_hidden_successor_fails_chain(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "l"
    first, _ = _two_runs(path)
    last = _rewrite_tail_as_completed(path, first)
    with raw(path) as (txn, dbs):
        if damage == "delete":
            txn.delete(key(last + 1), db=dbs["events"])
        else:  # the next slot now holds a copy of event 0's record
            txn.put(key(last + 1), bytes(txn.get(key(0), db=dbs["events"])), db=dbs["events"])
    with Ledger.open(path, readonly=True) as ledger:
        report = audit(ledger)
    verdicts = {run.run_id: run for run in report.runs}
    assert not _chain(verdicts[first]).ok  # type: ignore[attr-defined]
    assert verdicts[first].verdict == FAILED
    assert not report.ok


def test_run_hidden_from_the_index_is_still_audited(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "l"
    first, second = _two_runs(path)
    with raw(path) as (txn, dbs):
        rows = [bytes(k) for k, _ in txn.cursor(db=dbs["runs"]) if bytes(k).startswith(second)]
        for row in rows:
            txn.delete(row, db=dbs["runs"])
    with Ledger.open(path, readonly=True) as ledger:
        report = audit(ledger)
    assert [run.run_id for run in report.runs] == [first, second]
    assert not report.ok and report.ledger is not None
    assert any(f.code == "index-mismatch" for f in report.ledger.findings)
    assert main(["--ledger", str(path)]) == 1
    out = capsys.readouterr().out
    assert "index-mismatch" in out and "ledger" in out
    assert main(["--ledger", str(path), "--json"]) == 1
    document = json.loads(capsys.readouterr().out)
    assert document["ok"] is False
    ledger_doc = document["ledger"]
    assert ledger_doc["ok"] is False and ledger_doc["first_bad_seq"] is not None
    assert {f["code"] for f in ledger_doc["findings"]} >= {"index-mismatch"}
    assert [r["run_id"] for r in document["runs"]] == [first.hex(), second.hex()]


def test_truncated_tail_with_stale_meta_head_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "l"
    first, second = _two_runs(path)
    with raw(path) as (txn, dbs):
        rows = [
            (bytes(k), bytes(v))
            for k, v in txn.cursor(db=dbs["runs"])
            if bytes(k).startswith(second)
        ]
        for row, seq in rows:
            txn.delete(row, db=dbs["runs"])
            txn.delete(seq, db=dbs["events"])
    with Ledger.open(path, readonly=True) as ledger:
        report = audit(ledger)
    assert [run.run_id for run in report.runs] == [first]
    assert not report.ok
    assert report.ledger is not None
    # the stale head, and the stored tree that still covers the deleted events
    assert [f.code for f in report.ledger.findings] == ["head-mismatch", "tree-beyond-head"]
    assert main(["--ledger", str(path)]) == 1
    assert "head-mismatch" in capsys.readouterr().out


def test_clean_ledger_reports_its_verify_result(tmp_path: Path) -> None:
    path = tmp_path / "l"
    _two_runs(path)
    with Ledger.open(path, readonly=True) as ledger:
        report = audit(ledger)
    assert report.ok and report.ledger is not None and report.ledger.ok
    assert report.to_json()["ledger"] == {
        "ok": True,
        "events": report.ledger.events,
        "first_bad_seq": None,
        "findings": [],
    }


# -- note.* events attached to a run ---------------------------------------------------------


def test_notes_attached_to_runs_are_tolerated(tmp_path: Path) -> None:
    path = tmp_path / "l"
    with Ledger.open(path, create=True) as ledger:
        run = record_synthetic(ledger, fake=FakeRun(), stop_after_admission=True)
        ledger.append("note.external", {"who": "ci", "text": "started"}, run)
        refused = record_refusal(ledger)
        ledger.append("note.external", {"ticket": 7}, refused)
        ledger.append("note.review", {"ok": True}, run)
    with Ledger.open(path, readonly=True) as ledger:
        runs = {r.run_id: r for r in audit(ledger).runs}
    assert runs[refused].verdict == VERIFIED, runs[refused].checks
    grammar = next(c for c in runs[run].checks if c.name == "grammar")
    assert grammar.status == "pending", grammar  # incomplete, not failed


def test_notes_between_and_after_run_events_are_tolerated(tmp_path: Path) -> None:
    from tests.replay.helpers import forge

    source = tmp_path / "src"
    with Ledger.open(source, create=True) as ledger:
        run = record_synthetic(ledger, fake=FakeRun())

    def sprinkle(events: list) -> list:  # type: ignore[type-arg]
        from tests.replay.helpers import Copied

        out = []
        for event in events:
            out.append(event)
            out.append(Copied("note.external", run, {"after": event.kind}))
        return out

    with Ledger.open(source, readonly=True) as src:
        forged = forge(src, tmp_path / "forged", sprinkle)
    try:
        report = audit(forged)
    finally:
        forged.close()
    assert [r.verdict for r in report.runs] == [VERIFIED], report.runs[0].checks


def test_note_before_the_plan_still_fails_grammar(tmp_path: Path) -> None:
    path = tmp_path / "l"
    run = bytes(range(32))
    with Ledger.open(path, create=True) as ledger:
        ledger.append("note.external", {"early": True}, run)
        record_synthetic(ledger, fake=FakeRun(), attempt_id=run)
    with Ledger.open(path, readonly=True) as ledger:
        (audited,) = audit(ledger).runs
    grammar = next(c for c in audited.checks if c.name == "grammar")
    assert not grammar.ok and grammar.status == "checked"
