"""The test-only lie switch, end to end: a run whose launcher skipped a mechanism must be
marked in its sealed report, and the outside oracle must turn red. Without this the
honest-run oracles elsewhere would not be evidence."""

from __future__ import annotations

import threading
from pathlib import Path

from bvisor.launcher.host.backend import LinuxBackend
from bvisor.launcher.host.locate import default_launcher_path
from bvisor.launcher.host.runner import BoundaryRunner
from bvisor.planner.planning import BoundaryPlanner
from bvisor.planner.registry import BackendRegistry
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
