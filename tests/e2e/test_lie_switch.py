"""The test-only lie switch, end to end: a run whose launcher skipped a mechanism must be
marked in its sealed report, and the outside oracle must turn red. Without this the
honest-run oracles elsewhere would not be evidence."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from bvisor import replay
from bvisor.launcher.host.backend import LinuxBackend
from bvisor.launcher.host.locate import default_launcher_path
from bvisor.launcher.host.runner import BoundaryRunner
from bvisor.ledger import Ledger
from bvisor.planner.planning import BoundaryPlanner
from bvisor.planner.registry import BackendRegistry
from bvisor.replay.render import render_json, render_table
from tests.e2e.helpers import descendants_spec, find_pids_with, unique_marker, wait_for
from tests.features import require_feature


def _run_with(hooks: frozenset[str], marker: str) -> tuple[object, str | None]:
    backend = LinuxBackend.dangerous_with_test_hooks(default_launcher_path(), hooks)
    registry = BackendRegistry()
    registry.register(backend)
    plan = BoundaryPlanner(registry).plan(
        descendants_spec(["-c", f": {marker}; sleep 1"]), backend.id()
    )
    seen: dict[str, str] = {}

    def watch() -> None:
        pids = wait_for(lambda: find_pids_with(marker, program="sh"))
        if pids:
            seen["cgroup"] = Path(f"/proc/{pids[0]}/cgroup").read_text()  # type: ignore[index]

    watcher = threading.Thread(target=watch)
    watcher.start()
    report = BoundaryRunner(registry).run(plan)
    watcher.join()
    v2_line = next(
        (line for line in seen.get("cgroup", "").splitlines() if line.startswith("0::")), None
    )
    return report, v2_line


def test_honest_run_is_placed_in_its_leaf_and_unmarked() -> None:
    require_feature("cgroup2-kill")
    report, v2_line = _run_with(frozenset(), unique_marker("HONEST"))
    assert v2_line is not None and "/bvisor-" in v2_line
    kinds = [fact.kind for fact in report.body.observed]  # type: ignore[attr-defined]
    assert "test_hook_active" not in kinds
    assert not any("TEST HOOK" in f for f in report.body.findings)  # type: ignore[attr-defined]


def test_skipped_cgroup_placement_turns_the_oracle_red_and_marks_the_report() -> None:
    require_feature("cgroup2-kill")
    report, v2_line = _run_with(frozenset({"skip_cgroup_placement"}), unique_marker("LIAR"))
    assert v2_line is not None, "the workload must have run"
    assert "/bvisor-" not in v2_line, "oracle stayed green although placement was skipped"
    facts = {(fact.kind, fact.detail) for fact in report.body.observed}  # type: ignore[attr-defined]
    assert ("test_hook_active", "skip_cgroup_placement") in facts
    assert any("DANGEROUS TEST HOOK" in f for f in report.body.findings)  # type: ignore[attr-defined]
    notes = [d for k, d in facts if k == "launcher_note"]
    assert any("DANGER" in note for note in notes)


def _replayed(tmp_path: Path, hooks: frozenset[str]) -> replay.AuditReport:
    """One run with ``hooks`` recorded to a fresh ledger, and that ledger's audit."""
    backend = LinuxBackend.dangerous_with_test_hooks(default_launcher_path(), hooks)
    registry = BackendRegistry()
    registry.register(backend)
    plan = BoundaryPlanner(registry).plan(descendants_spec(["-c", "true"]), backend.id())
    with Ledger.open(tmp_path / "ledger", create=True) as store:
        BoundaryRunner(registry, sink=store).run(plan)
        return replay.audit(store)


def test_a_verified_run_with_a_test_hook_is_shown_as_not_evidence(tmp_path: Path) -> None:
    """Replay verifies a hooked run (its record is faithful), and must not let that verdict
    pass for evidence: the table's row, its note and summary, and the JSON name the hook."""
    require_feature("cgroup2-kill")
    report = _replayed(tmp_path, frozenset({"skip_cgroup_placement"}))
    (run,) = report.runs
    assert run.verdict == replay.VERIFIED, run.to_json()
    assert run.test_hooks == ("skip_cgroup_placement",)
    table = render_table(report)
    row = next(line for line in table.splitlines() if line.startswith(run.run_id.hex()[:16]))
    assert "verified (test hook)" in row, table
    assert "skip_cgroup_placement: the record is faithful" in table, table
    assert "1 ran with a dangerous test hook and is not evidence" in table, table
    shown = json.loads(render_json(report))
    assert shown["runs"][0]["test_hooks"] == ["skip_cgroup_placement"]


def test_an_honest_run_is_not_marked_in_the_replay(tmp_path: Path) -> None:
    require_feature("cgroup2-kill")
    report = _replayed(tmp_path, frozenset())
    (run,) = report.runs
    assert run.verdict == replay.VERIFIED and run.test_hooks == ()
    assert "test hook" not in render_table(report)
    assert "test_hooks" not in json.loads(render_json(report))["runs"][0]
