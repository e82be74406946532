"""A listing the wall deadline cut short is never part of a run recorded as completed.

One real run, with a wall budget far away, lists more files than the walk's files bound
lets it report, so its listing ends in ``outputs_truncated ... limit:files`` and the run
completes. The forger (``forge``: every hash and the chain recomputed, the report
resealed) rewrites that bound as the deadline, in the launcher's note and in the report's
facts alike — a completed run whose outputs were silently cut by its wall budget — and
the ``report`` check must fail, as it must for such a note in a run with no wall budget.
The honest forms replay verified: this run as recorded, and a real deadline cut
(``tests/e2e/test_deadline_outputs.py``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bvisor.contract import Budget, CommitArtifact, Durability, ListOutputs, MinGuarantee
from bvisor.contract import outputs as g
from bvisor.front.api import run_confined
from bvisor.front.defaults import default_spec
from bvisor.ledger import Ledger, verify
from bvisor.planner.rules.v2.outputs import MAX_FILES
from bvisor.replay import FAILED, VERIFIED, audit
from tests.features import require_feature
from tests.replay.helpers import Copied, backend, forge, reseal

Edit = Callable[[list[Copied]], None]
# One more empty file than the walk may report: builtins only, so it takes no time.
SCRIPT = f"i=0; while [ $i -le {MAX_FILES} ]; do : > /tmp/f$i; i=$((i+1)); done"
FILES_CUT = "limit:files"
DEADLINE_CUT = f"limit:{g.DEADLINE}"


def _record(base: Path, wall: Budget | None) -> Ledger:
    work = base / "work"
    work.mkdir(parents=True)
    spec = default_spec(["/bin/sh", "-c", SCRIPT], cwd=str(work))
    spec = dataclasses.replace(
        spec,
        controls=(*spec.controls, ListOutputs(), CommitArtifact(Durability.BEST_EFFORT)),
        budgets=dataclasses.replace(spec.budgets, wall_micros=wall),
    )
    report = run_confined(
        spec, ledger=base / "ledger", artifacts=base / "artifacts", backend=backend()
    )
    assert report.body.outcome.value == "completed", report.body.observed
    assert any(FILES_CUT in f.detail for f in report.body.observed if f.kind == g.TRUNCATED)
    return Ledger.open(base / "ledger")


@pytest.fixture(scope="module")
def budgeted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ledger]:
    for feature in ("landlock", "pidns", "seccomp", "netns"):
        require_feature(feature)
    ledger = _record(
        tmp_path_factory.mktemp("deadline-cut"), Budget(60_000_000, MinGuarantee.ENFORCED)
    )
    yield ledger
    ledger.close()


def _cut_by_the_deadline(events: list[Copied]) -> None:
    """The files bound rewritten as the deadline everywhere it is written down."""
    for event in events:
        if event.kind == "launcher.phase" and FILES_CUT in event.payload["line"]:
            event.payload["line"] = event.payload["line"].replace(FILES_CUT, DEADLINE_CUT)
    (sealed,) = [e.payload for e in events if e.kind == "report.sealed"]
    for fact in sealed["body"]["observed"]:
        if fact["kind"] in (g.TRUNCATED, "launcher_note"):
            fact["detail"] = fact["detail"].replace(FILES_CUT, DEADLINE_CUT)


def _audit(source: Ledger, tmp_path: Path, edit: Edit) -> Any:
    def apply(events: list[Copied]) -> None:
        edit(events)
        reseal(events)

    forged = forge(source, tmp_path / "forged", apply)
    try:
        assert verify(forged).ok
        (run,) = audit(forged).runs
        return run
    finally:
        forged.close()


def _report_fails(run: Any) -> str:
    check = next(c for c in run.checks if c.name == "report")
    assert run.verdict == FAILED and not check.ok, run.checks
    return str(check.detail)


def test_the_honest_run_is_verified(budgeted: Ledger, tmp_path: Path) -> None:
    run = _audit(budgeted, tmp_path, lambda events: None)
    assert run.verdict == VERIFIED, run.checks


def test_a_completed_run_cut_by_its_deadline_fails_report(budgeted: Ledger, tmp_path: Path) -> None:
    detail = _report_fails(_audit(budgeted, tmp_path, _cut_by_the_deadline))
    assert "stopped at the wall deadline, but the outcome is completed" in detail, detail


def test_a_deadline_cut_without_a_wall_budget_fails_report(tmp_path: Path) -> None:
    for feature in ("landlock", "pidns", "seccomp", "netns"):
        require_feature(feature)
    unbudgeted = _record(tmp_path / "source", None)
    try:
        detail = _report_fails(_audit(unbudgeted, tmp_path, _cut_by_the_deadline))
    finally:
        unbudgeted.close()
    assert "but the run has no wall budget" in detail, detail
