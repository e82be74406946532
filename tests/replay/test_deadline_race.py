"""The deadline race: a workload that exits with a code just as its wall deadline fires.

The host's deadline watches the *launcher*: when the workload exits in the last
milliseconds, the launcher is still reporting its status when the deadline passes, so the
run is classified ``timeout`` (it was past its budget: never ``completed``) with the
workload's real exit code (the kill came too late to change it). Seen about once in ten
with ``sleep 0.88`` under a 1 s budget; here the launcher's lines are built by hand, so
the race happens every time: the backend's own classifier, then replay of what it records.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bvisor.contract import Budget, BudgetDimension, ExitStatus, MinGuarantee, Outcome
from bvisor.contract import outputs as g
from bvisor.contract.report import BudgetWitness
from bvisor.ledger import Ledger
from bvisor.replay import FAILED, VERIFIED, audit
from tests.replay.helpers import SUCCESS_LINES, FakeRun, descendants_spec, record_synthetic

LIMIT = 1_000_000
RACE_LINES = (*SUCCESS_LINES, "# workload exit code=0")


def _observe(deadline_hit: bool, lines: tuple[str, ...] = RACE_LINES) -> Any:
    from bvisor.launcher.host.capture import StreamSink
    from bvisor.launcher.host.launch import _build_observation

    return _build_observation(
        list(lines),
        StreamSink(16),
        StreamSink(16),
        launcher_exit=0,
        deadline_hit=deadline_hit,
        launcher_identity="code=00 entry=00",
        test_hooks=frozenset(),
        streams_open=False,
    )


def _classified(deadline_hit: bool, lines: tuple[str, ...] = RACE_LINES) -> Any:
    from bvisor.launcher.host.backend import Execution, _classify

    run = Execution(attempt_id=b"\0" * 32, outcome=Outcome.SUPERVISOR_FAULT)
    _classify(run, _observe(deadline_hit, lines), 0)
    return run


def test_the_classifier_keeps_the_code_and_says_the_deadline_passed() -> None:
    run = _classified(deadline_hit=True)
    kinds = {fact.kind: fact.detail for fact in run.observed}
    assert run.outcome is Outcome.TIMEOUT and run.exit == ExitStatus.exited(0)
    assert kinds["budget_exceeded"].startswith("wall_micros:")
    assert "code 0" in kinds["deadline_race"]
    # Without the deadline the same lines are a plain completion, and no race is claimed.
    calm = _classified(deadline_hit=False)
    assert calm.outcome is Outcome.COMPLETED and not any(
        f.kind in ("budget_exceeded", "deadline_race") for f in calm.observed
    )
    # Killed by the deadline (a signal): timeout, and no race.
    killed = _classified(True, (*SUCCESS_LINES, "# workload exit signal=9"))
    assert killed.outcome is Outcome.TIMEOUT
    assert not any(f.kind == "deadline_race" for f in killed.observed)


def test_a_walk_the_deadline_cut_is_a_timeout_though_the_launcher_beat_the_watchdog() -> None:
    """The launcher stops its outputs walk at the deadline and may exit a moment before the
    host's watchdog fires (deadline not hit): the run still ran past its budget, so it is a
    timeout with the workload's code, never ``completed`` with its listing cut short."""
    cut = (
        f"# {g.format_item(g.TRUNCATED, root='/tmp', path='f0', limit=g.DEADLINE)}",
        "# "
        + g.format_item(
            g.SUMMARY,
            roots="/tmp",
            since=0,
            listed=0,
            skipped=0,
            bytes=0,
            artifacts=0,
            truncated="yes",
            commit="abandoned",
        ),
    )
    run = _classified(False, (*SUCCESS_LINES, *cut, "# workload exit code=0"))
    kinds = {fact.kind: fact.detail for fact in run.observed}
    assert run.outcome is Outcome.TIMEOUT and run.exit == ExitStatus.exited(0)
    assert kinds["budget_exceeded"].startswith("wall_micros:"), kinds
    assert "listed its outputs" in kinds["deadline_race"], kinds


def _wall(observed: int, limit: int | None = LIMIT) -> BudgetWitness:
    return BudgetWitness(
        dimension=BudgetDimension.WALL_MICROS,
        limit=limit,
        guarantee="enforced" if limit is not None else "unrequested",
        observed=observed,
        exceeded=limit is not None and observed > limit,
        source="host monotonic clock",
    )


def _record(tmp_path: Path, facts: tuple[tuple[str, str], ...], budgeted: bool = True) -> Any:
    """Record the classifier's raced run (its facts, or forged ones) and audit it."""
    ledger = Ledger.open(tmp_path / "ledger", create=True)
    try:
        budgets = {"wall_micros": Budget(LIMIT, MinGuarantee.ENFORCED)} if budgeted else {}
        record_synthetic(
            ledger,
            descendants_spec(("-c", "sleep 0.88"), **budgets),
            FakeRun(
                outcome=Outcome.TIMEOUT,
                exit=ExitStatus.exited(0),
                lines=RACE_LINES,
                witnesses=(_wall(LIMIT + 1_200, LIMIT if budgeted else None),),
                facts=facts,
            ),
        )
        (run,) = audit(ledger).runs
        return run
    finally:
        ledger.close()


def _facts_of_the_classifier() -> tuple[tuple[str, str], ...]:
    run = _classified(deadline_hit=True)
    return tuple((f.kind, f.detail) for f in run.observed)


def test_replay_verifies_the_raced_timeout(tmp_path: Path) -> None:
    run = _record(tmp_path, _facts_of_the_classifier())
    assert run.verdict == VERIFIED, run.checks


@pytest.mark.parametrize("budgeted", [True, False])
def test_a_timeout_with_a_code_but_no_deadline_fact_still_fails(
    tmp_path: Path, budgeted: bool
) -> None:
    """Without the deadline's fact — or without any wall budget to pass — a code is no timeout."""
    facts = _facts_of_the_classifier() if not budgeted else ()
    run = _record(tmp_path, facts, budgeted=budgeted)
    report = next(c for c in run.checks if c.name == "report")
    assert run.verdict == FAILED and not report.ok
    assert "outcome timeout with exit code=0" in str(report.detail)
