"""Report fields that must be bound to the events: exit, outcome, budget witnesses, facts.

As in ``test_tamper``, each forged ledger is re-appended through ``Ledger.append`` (the
chain is recomputed, ``ledger verify`` passes) and every report is resealed, so only the
``report`` check (or ``h_a`` for a refusal) stands between the forger and ``verified``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bvisor.contract import Budget, BudgetDimension, ExitStatus, MinGuarantee, Outcome
from bvisor.contract.report import BudgetWitness
from bvisor.ledger import Ledger, verify
from bvisor.replay import FAILED, VERIFIED, audit
from tests.replay.helpers import (
    SUCCESS_LINES,
    Copied,
    FakeRun,
    base_spec,
    descendants_spec,
    forge,
    record_refusal,
    record_synthetic,
    reseal,
)

REQUESTED = BudgetWitness(
    dimension=BudgetDimension.WALL_MICROS,
    limit=8,
    guarantee="mediated",
    observed=5,
    exceeded=False,
    source="host monotonic clock",
)
UNREQUESTED = BudgetWitness(
    dimension=BudgetDimension.PROCESS_COUNT,
    limit=None,
    guarantee="unrequested",
    observed=1,
    exceeded=False,
    source="cgroup task count peak",
)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ledger]:
    """Run 0 failed (exit 3, noted), run 1 completed with an unrequested witness, a refusal."""
    ledger = Ledger.open(tmp_path_factory.mktemp("binding") / "ledger", create=True)
    record_synthetic(
        ledger,
        base_spec(),
        FakeRun(lines=(*SUCCESS_LINES, "# workload exit code=3"), witnesses=(REQUESTED,)),
    )
    record_synthetic(
        ledger,
        descendants_spec(("-c", "true"), wall_micros=Budget(1000, MinGuarantee.MEDIATED)),
        FakeRun(
            outcome=Outcome.COMPLETED,
            exit=ExitStatus.exited(0),
            lines=(*SUCCESS_LINES, "# workload exit code=0"),
            witnesses=(UNREQUESTED,),
        ),
    )
    record_refusal(ledger)
    yield ledger
    ledger.close()


Edit = Callable[[list[Copied], list[bytes]], None]


def _audit(source: Ledger, tmp_path: Path, edit: Edit) -> list[Any]:
    def apply(events: list[Copied]) -> None:
        runs: list[bytes] = []
        for event in events:
            if event.run_id not in runs:
                runs.append(event.run_id)  # type: ignore[arg-type]
        edit(events, runs)
        reseal(events)

    forged = forge(source, tmp_path / "forged", apply)
    try:
        assert verify(forged).ok
        return audit(forged).runs
    finally:
        forged.close()


def _of(events: list[Copied], run: bytes, kind: str) -> list[dict[str, Any]]:
    return [e.payload for e in events if e.run_id == run and e.kind == kind]


def _both(events: list[Copied], run: bytes) -> list[dict[str, Any]]:
    """The run.terminal payload and the report body: a forger edits them together."""
    (terminal,) = _of(events, run, "run.terminal")
    (sealed,) = _of(events, run, "report.sealed")
    return [terminal, sealed["body"]]


def _report_fails(runs: list[Any], index: int = 0) -> str:
    run = runs[index]
    check = next(c for c in run.checks if c.name == "report")
    assert run.verdict == FAILED and not check.ok and check.status == "checked", run.checks
    return str(check.detail)


def test_the_honest_source_is_verified(source: Ledger, tmp_path: Path) -> None:
    runs = _audit(source, tmp_path, lambda events, runs: None)
    assert [r.verdict for r in runs] == [VERIFIED] * 3, [r.checks for r in runs]


# -- (a) exit against the transcript's note ---------------------------------------------------


def test_exit_flipped_to_success_against_the_noted_exit(source: Ledger, tmp_path: Path) -> None:
    def flip(events: list[Copied], runs: list[bytes]) -> None:
        for value in _both(events, runs[0]):
            value["outcome"] = "completed"
            value["exit"] = {"code": 0, "signal": None}

    assert "code=3" in _report_fails(_audit(source, tmp_path, flip))


def test_exit_code_changed_against_the_noted_exit(source: Ledger, tmp_path: Path) -> None:
    def change(events: list[Copied], runs: list[bytes]) -> None:
        for value in _both(events, runs[0]):
            value["exit"] = {"code": 4, "signal": None}

    assert "code=3" in _report_fails(_audit(source, tmp_path, change))


# -- (b) outcome and exit agree ---------------------------------------------------------------


@pytest.mark.parametrize("outcome", ["timeout", "killed"])
def test_timeout_or_killed_with_an_exit_code(source: Ledger, tmp_path: Path, outcome: str) -> None:
    def relabel(events: list[Copied], runs: list[bytes]) -> None:
        for value in _both(events, runs[1]):
            value["outcome"] = outcome

    assert outcome in _report_fails(_audit(source, tmp_path, relabel), 1)


def test_supervisor_fault_with_an_exit_but_no_exec(source: Ledger, tmp_path: Path) -> None:
    def fault(events: list[Copied], runs: list[bytes]) -> None:
        for event in events:
            phase = event.run_id == runs[1] and event.kind == "launcher.phase"
            if phase and event.payload["line"] == "ExecSucceeded":
                event.payload["line"] = "SetupFaulted"
        for value in _both(events, runs[1]):
            value["outcome"] = "supervisor_fault"
        (sealed,) = _of(events, runs[1], "report.sealed")
        for fact in sealed["body"]["observed"]:
            if fact["kind"] == "launcher_terminal":
                fact["detail"] = "SetupFaulted"

    detail = _report_fails(_audit(source, tmp_path, fault), 1)
    assert "supervisor_fault" in detail and "ExecSucceeded" in detail


def test_output_claimed_by_a_run_that_never_reached_exec(source: Ledger, tmp_path: Path) -> None:
    """Found by attack: a transcript cut before ExecSucceeded, the run killed by a signal,
    still carried the workload's output and replayed verified: no workload ran to write
    it. (Run 0 captured "hi".)"""

    def cut(events: list[Copied], runs: list[bytes]) -> None:
        for event in events:
            phase = event.run_id == runs[0] and event.kind == "launcher.phase"
            if phase and event.payload["line"] == "ExecSucceeded":
                event.payload["line"] = "# a note in its place"
            elif phase and event.payload["line"].startswith("# workload exit"):
                event.payload["line"] = "# another note"
        for value in _both(events, runs[0]):
            value["outcome"] = "killed"
            value["exit"] = {"code": None, "signal": 9}

    detail = _report_fails(_audit(source, tmp_path, cut), 0)
    assert "never reached ExecSucceeded" in detail and "bytes of the workload's output" in detail


# -- (c) budget witnesses -----------------------------------------------------------------------


def _witness_edit(run_index: int, **changes: Any) -> Edit:
    def edit(events: list[Copied], runs: list[bytes]) -> None:
        for value in _both(events, runs[run_index]):
            value["budget_witnesses"][0].update(changes)

    return edit


@pytest.mark.parametrize(
    ("run_index", "changes", "words"),
    [
        (0, {"limit": 1}, "limit"),
        (0, {"guarantee": "enforced"}, "guarantee"),
        (0, {"observed": 999, "exceeded": False}, "exceeded"),
        (0, {"exceeded": True}, "exceeded"),
        (1, {"limit": 5}, "unrequested"),
        (1, {"guarantee": "enforced"}, "unrequested"),
        (1, {"exceeded": True}, "exceeded"),
    ],
)
def test_witnesses_bound_to_the_spec(
    source: Ledger, tmp_path: Path, run_index: int, changes: dict[str, Any], words: str
) -> None:
    detail = _report_fails(_audit(source, tmp_path, _witness_edit(run_index, **changes)), run_index)
    assert words in detail


def test_resident_bytes_exceeded_needs_an_oom_fact(source: Ledger, tmp_path: Path) -> None:
    def oom(fact: bool) -> Edit:
        def edit(events: list[Copied], runs: list[bytes]) -> None:
            for value in _both(events, runs[0]):
                value["budget_witnesses"][0].update(
                    dimension="resident_bytes", exceeded=True, observed=5, source="x"
                )
            if fact:
                (sealed,) = _of(events, runs[0], "report.sealed")
                sealed["body"]["observed"].append(
                    {"kind": "budget_exceeded", "detail": "resident_bytes: OOM-killed 1 task(s)"}
                )
                # As the backend writes it for any exceeded mediated budget.
                sealed["body"]["findings"].append(
                    "mediated budget resident_bytes exceeded: observed 5 > limit 8"
                )

        return edit

    assert "exceeded" in _report_fails(_audit(source, tmp_path / "a", oom(False)))
    runs = _audit(source, tmp_path / "b", oom(True))
    assert next(c for c in runs[0].checks if c.name == "report").ok, runs[0].checks


# -- (d) facts ----------------------------------------------------------------------------------


def _fact_edit(kind: str, detail: str) -> Edit:
    def edit(events: list[Copied], runs: list[bytes]) -> None:
        (sealed,) = _of(events, runs[0], "report.sealed")
        facts = [f for f in sealed["body"]["observed"] if f["kind"] == kind]
        assert facts, kind
        facts[0]["detail"] = detail

    return edit


@pytest.mark.parametrize(
    ("kind", "detail"),
    [
        ("stream_captured", "stdout bytes=999"),
        ("stream_captured", "stdout bytes=2"),
        ("workload_launched", "pid=1"),
        ("launcher_identity", "00" * 32),
    ],
)
def test_facts_bound_to_the_events(source: Ledger, tmp_path: Path, kind: str, detail: str) -> None:
    assert kind in _report_fails(_audit(source, tmp_path, _fact_edit(kind, detail)))


# -- (e) the refusal detail ----------------------------------------------------------------------


def test_refusal_detail_is_shown_not_compared(source: Ledger, tmp_path: Path) -> None:
    # A refusal's detail is prose: the rules-versioning issue demands that rewording it never
    # fails a recorded run, so replay compares code, requirement and missing fact, and shows
    # a differing wording in the check's detail for the auditor to read.
    def edit(events: list[Copied], runs: list[bytes]) -> None:
        (refused,) = _of(events, runs[2], "plan.refused")
        refused["refusal"]["detail"] = "operator cancelled; nothing wrong with the spec"

    runs = _audit(source, tmp_path, edit)
    check = next(c for c in runs[2].checks if c.name == "h_a")
    assert runs[2].verdict == VERIFIED and check.ok, check.detail
    assert "operator cancelled" in check.detail and "not compared" in check.detail

    def recode(events: list[Copied], runs: list[bytes]) -> None:
        (refused,) = _of(events, runs[2], "plan.refused")
        refused["refusal"]["missing_fact"] = "userns"

    runs = _audit(source, tmp_path / "b", recode)
    check = next(c for c in runs[2].checks if c.name == "h_a")
    assert runs[2].verdict == FAILED and not check.ok and "missing_fact" in check.detail


# -- marks a forger would drop or add ----------------------------------------------------------


def test_dropping_a_test_hook_mark_or_a_mediated_finding_fails_report(
    source: Ledger, tmp_path: Path
) -> None:
    def drop_hook_marks(events: list[Copied], runs: list[bytes]) -> None:
        (sealed,) = _of(events, runs[0], "report.sealed")
        sealed["body"]["findings"].append("DANGEROUS TEST HOOK ACTIVE: skip_seccomp — x")

    assert "test hooks" in _report_fails(_audit(source, tmp_path / "a", drop_hook_marks))

    def add_artifact(events: list[Copied], runs: list[bytes]) -> None:
        (sealed,) = _of(events, runs[0], "report.sealed")
        sealed["body"]["artifacts"].append("/tmp/forged")

    assert "artifacts" in _report_fails(_audit(source, tmp_path / "b", add_artifact))


def test_a_lowering_fact_or_a_filesystem_grant_the_plan_does_not_imply_fails_report(
    source: Ledger, tmp_path: Path
) -> None:
    def soften(events: list[Copied], runs: list[bytes]) -> None:
        (sealed,) = _of(events, runs[0], "report.sealed")
        for fact in sealed["body"]["observed"]:
            if fact["kind"] == "inherited_fds_lowered":
                fact["detail"] = "only fds 0,1,2,3 reach the workload"

    assert "lowering facts" in _report_fails(_audit(source, tmp_path / "a", soften))

    def widen(events: list[Copied], runs: list[bytes]) -> None:
        (sealed,) = _of(events, runs[0], "report.sealed")
        sealed["body"]["observed"].append({"kind": "filesystem_confined", "detail": "/=read"})

    assert "grants the plan does not make" in _report_fails(_audit(source, tmp_path / "b", widen))
