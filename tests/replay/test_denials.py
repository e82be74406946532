"""Replay of denied attempts: notes, run.denied events and the report must agree, and the
plan must have asked for them. Every forgery re-chains the ledger (``chain`` passes); only
the meaning checks can catch it, and each names what it caught."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bvisor.contract import (
    BoundarySpec,
    BudgetRequirements,
    CaptureStreams,
    ChildSpawn,
    Environment,
    EnvPolicy,
    EvidenceRequirements,
    ExitStatus,
    LaunchWorkload,
    Outcome,
    ProcessWorkload,
    SpawnPolicy,
    StdStreams,
)
from bvisor.contract.denials import SUPERVISOR_NOTE, first_note, tally_note
from bvisor.contract.evidence import EvidenceClaim
from bvisor.ledger import Ledger, verify
from bvisor.replay import FAILED, VERIFIED, RunAudit, audit
from tests.features import require_feature
from tests.replay.helpers import (
    SUCCESS_LINES,
    Copied,
    FakeRun,
    first,
    forge,
    record_synthetic,
    renumber,
    reseal,
)

PID = 4242
DENIAL_LINES = (
    f"# {SUPERVISOR_NOTE}40 notified syscalls with their errno",
    "# "
    + first_note(
        0,
        mechanism="seccomp",
        pid=PID,
        syscall="mount",
        number=165,
        arch="x86_64",
        answer="EPERM",
        args=(1, 2, 3, 0, 0, 0),
    ),
    "# workload exit code=3",
    "# " + tally_note(0, 5, (PID,), True),
    "# workload rusage utime_us=1 stime_us=1 maxrss_kb=1",
)
KILL_LINES = (
    f"# {SUPERVISOR_NOTE}40 notified syscalls with their errno",
    "# workload exit signal=31",
    "# " + first_note(0, mechanism="seccomp", pid=PID, arch="x86_64", answer="SIGSYS"),
    "# " + tally_note(0, 1, (PID,), True),
    "# workload rusage utime_us=1 stime_us=1 maxrss_kb=1",
)


def _spec(evidence: bool = True) -> BoundarySpec:
    claims = {EvidenceClaim.DENIED_ATTEMPTS} if evidence else set()
    return BoundarySpec(
        workload=ProcessWorkload("/bin/sh", ("-c", "exit 3")),
        capabilities=(
            ChildSpawn(SpawnPolicy.DENY_NEW_TASKS),
            Environment(EnvPolicy.exact(())),
        ),
        controls=(LaunchWorkload(), CaptureStreams(StdStreams.capture_out_err())),
        budgets=BudgetRequirements(),
        evidence=EvidenceRequirements.of(claims),
    )


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ledger]:
    """Run 0: denials noted and reported; run 1: the same notes on a plan that did not ask
    (the runner reports what the notes say, so only the plan can say they do not belong);
    run 2: a workload killed by SIGSYS."""
    require_feature("seccomp")
    ledger = Ledger.open(tmp_path_factory.mktemp("denials") / "ledger", create=True)
    lines = (*SUCCESS_LINES, *DENIAL_LINES)
    record_synthetic(ledger, _spec(), FakeRun(lines=lines))
    record_synthetic(ledger, _spec(evidence=False), FakeRun(lines=lines))
    killed = FakeRun(
        outcome=Outcome.KILLED, exit=ExitStatus.signaled(31), lines=(*SUCCESS_LINES, *KILL_LINES)
    )
    record_synthetic(ledger, _spec(), killed)
    yield ledger
    ledger.close()


def _audit(ledger: Ledger) -> list[RunAudit]:
    return list(audit(ledger).runs)


def _forged(source: Ledger, tmp_path: Path, edit: Any) -> list[RunAudit]:
    forged = forge(source, tmp_path / "forged", edit)
    try:
        assert verify(forged).ok, "the forger re-chains; ledger verify must pass"
        return _audit(forged)
    finally:
        forged.close()


def _failed(run: RunAudit, name: str) -> str:
    assert run.verdict == FAILED, run.to_json()
    check = next(c for c in run.checks if c.name == name)
    assert not check.ok, check
    return check.detail


def _of_run(events: list[Copied], index: int) -> list[Copied]:
    runs = list(dict.fromkeys(e.run_id for e in events if e.run_id is not None))
    return [e for e in events if e.run_id == runs[index]]


def test_honest_denials_verify_and_a_plan_that_did_not_ask_does_not(source: Ledger) -> None:
    asked, not_asked, killed = _audit(source)
    assert asked.verdict == VERIFIED, asked.to_json()
    assert killed.verdict == VERIFIED, killed.to_json()
    assert "did not ask to report denials" in _failed(not_asked, "report")
    kinds = [e.kind for e in source.events() if e.run_id == asked.run_id]
    assert kinds.count("run.denied") == 1


def test_an_entry_dropped_from_the_report_is_caught(source: Ledger, tmp_path: Path) -> None:
    def edit(events: list[Copied]) -> None:
        sealed = first(_of_run(events, 0), "report.sealed")
        sealed.payload["body"]["denied_attempts"] = []
        reseal(events)

    runs = _forged(source, tmp_path, edit)
    detail = _failed(runs[0], "report")
    assert "denial notes" in detail and "run.denied events" in detail


def test_a_count_lowered_in_report_and_events_alike_is_caught(
    source: Ledger, tmp_path: Path
) -> None:
    def edit(events: list[Copied]) -> None:
        run = _of_run(events, 0)
        first(run, "report.sealed").payload["body"]["denied_attempts"][0]["count"] = 1
        first(run, "run.denied").payload["attempt"]["count"] = 1
        reseal(events)

    runs = _forged(source, tmp_path, edit)
    detail = _failed(runs[0], "report")
    assert "denial notes" in detail and "run.denied" not in detail


def test_a_dropped_run_denied_event_is_caught(source: Ledger, tmp_path: Path) -> None:
    def edit(events: list[Copied]) -> list[Copied]:
        doomed = first(_of_run(events, 0), "run.denied")
        return [e for e in events if e is not doomed]

    runs = _forged(source, tmp_path, edit)
    assert "run.denied events" in _failed(runs[0], "report")


def test_denial_notes_erased_from_the_transcript_are_caught(source: Ledger, tmp_path: Path) -> None:
    def edit(events: list[Copied]) -> list[Copied]:
        kept = [
            e
            for e in events
            if not (
                e.kind == "launcher.phase"
                and e.run_id == _of_run(events, 0)[0].run_id
                and e.payload["line"].startswith("# denied ")
            )
        ]
        renumber(kept, "launcher.phase")
        return kept

    runs = _forged(source, tmp_path, edit)
    assert "denial notes" in _failed(runs[0], "report")


def test_a_kill_entry_removed_while_the_transcript_says_sigsys_is_caught(
    source: Ledger, tmp_path: Path
) -> None:
    def edit(events: list[Copied]) -> list[Copied]:
        run = _of_run(events, 2)
        doomed = {id(e) for e in run if e.kind == "run.denied"}
        doomed |= {
            id(e)
            for e in run
            if e.kind == "launcher.phase" and e.payload["line"].startswith("# denied ")
        }
        kept = [e for e in events if id(e) not in doomed]
        renumber(kept, "launcher.phase")
        first(_of_run(kept, 2), "report.sealed").payload["body"]["denied_attempts"] = []
        reseal(kept)
        return kept

    runs = _forged(source, tmp_path, edit)
    assert "no kill entry" in _failed(runs[2], "report")


@pytest.mark.parametrize(
    ("edit_name", "expected"),
    [("unknown key", "unknown key"), ("after streams", "out of order"), ("index", "index")],
)
def test_a_malformed_run_denied_event_breaks_the_grammar(
    source: Ledger, tmp_path: Path, edit_name: str, expected: str
) -> None:
    def edit(events: list[Copied]) -> list[Copied] | None:
        run = _of_run(events, 0)
        denied = first(run, "run.denied")
        if edit_name == "unknown key":
            denied.payload["attempt"]["extra"] = 1
        elif edit_name == "index":
            denied.payload["index"] = 3
        else:
            events.remove(denied)
            events.insert(events.index(first(run, "report.sealed")), denied)
            return events
        return None

    runs = _forged(source, tmp_path, edit)
    assert expected in _failed(runs[0], "grammar")
