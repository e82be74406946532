"""The launcher that runs is the launcher the plan was admitted for (its digest is in h_p).

If the launcher file changes between planning and running, the host refuses to spawn it:
the run is Denied and the workload never starts (oracle: a marker file it would create).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from bvisor.contract import Outcome, SpawnPolicy
from bvisor.launcher.host.backend import LinuxBackend
from bvisor.launcher.host.locate import default_launcher_path
from bvisor.launcher.host.runner import BoundaryRunner
from bvisor.planner.planning import BoundaryPlanner
from bvisor.planner.registry import BackendRegistry
from tests.e2e.helpers import spawn_spec


def _plan_and_run(launcher: Path, marker: Path, tamper: bool) -> tuple[object, object]:
    backend = LinuxBackend.with_launcher_path(launcher)
    registry = BackendRegistry()
    registry.register(backend)
    plan = BoundaryPlanner(registry).plan(
        spawn_spec(SpawnPolicy.ALLOW_DESCENDANTS_WITHIN_BOUNDARY, ["-c", f": > {marker}"]),
        backend.id(),
    )
    if tamper:
        with launcher.open("a") as handle:
            handle.write("# changed after planning\n")
    return plan, BoundaryRunner(registry).run(plan)


def test_the_planned_launcher_runs_and_its_identity_is_reported(tmp_path: Path) -> None:
    launcher = tmp_path / "bvisor-linux-launcher"
    shutil.copy2(default_launcher_path(), launcher)
    marker = tmp_path / "ran"
    plan, report = _plan_and_run(launcher, marker, tamper=False)
    assert report.body.outcome is Outcome.COMPLETED  # type: ignore[attr-defined]
    identity = plan.profile.facts.launcher_identity  # type: ignore[attr-defined]
    facts = {(f.kind, f.detail) for f in report.body.observed}  # type: ignore[attr-defined]
    assert ("launcher_identity", identity) in facts
    assert marker.exists()


def test_a_launcher_changed_after_planning_is_refused_and_nothing_runs(tmp_path: Path) -> None:
    launcher = tmp_path / "bvisor-linux-launcher"
    shutil.copy2(default_launcher_path(), launcher)
    marker = tmp_path / "ran"
    _, report = _plan_and_run(launcher, marker, tamper=True)
    body = report.body  # type: ignore[attr-defined]
    assert body.outcome is Outcome.DENIED
    refusals = [f.detail for f in body.observed if f.kind == "launch_refused_by_host"]
    assert refusals and "refusing to run different code than planned" in refusals[0]
    assert not marker.exists(), "the workload must never have started"


def test_a_missing_launcher_is_a_sealed_refusal_not_a_crash(tmp_path: Path) -> None:
    backend = LinuxBackend.with_launcher_path(tmp_path / "no-such-launcher")
    registry = BackendRegistry()
    registry.register(backend)
    marker = tmp_path / "ran"
    plan = BoundaryPlanner(registry).plan(
        spawn_spec(SpawnPolicy.ALLOW_DESCENDANTS_WITHIN_BOUNDARY, ["-c", f": > {marker}"]),
        backend.id(),
    )
    report = BoundaryRunner(registry).run(plan)
    assert report.body.outcome is Outcome.DENIED
    refused = [f.detail for f in report.body.observed if f.kind == "launch_refused_by_host"]
    assert refused and "no-such-launcher" in refused[0], report.body.observed
    assert report.verify()
    assert not marker.exists()
