"""`bvisor run -- CMD` asks for process, memory and storage limits by default.

Oracles from outside the workload: the run's own cgroup leaves, found from the workload's
``/proc/<pid>/cgroup`` while it runs, must carry ``pids.max`` and the memory limit the
default asks for; ``bvisor plan -- CMD`` shows them; on a host without the controllers the
same default still runs, Mediated, and the report and summary say they are not enforced.
Before the fix the default spec asked for no budget at all: no pids or memory leaf.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

from bvisor.contract import BudgetDimension, MinGuarantee, Outcome
from bvisor.contract.profile import ProfileSnapshot
from bvisor.front.api import run_confined
from bvisor.front.cli.run_cmd import _notes
from bvisor.front.defaults import DEFAULT_PROCESSES, default_memory, default_spec
from bvisor.launcher.host.backend import LinuxBackend
from bvisor.planner.rules import CURRENT
from tests.e2e.helpers import find_pids_with, unique_marker, wait_for
from tests.features import require_feature

REPO = Path(__file__).resolve().parents[2]


def _plan_json(*args: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-m", "bvisor.front.cli.main", "plan", "--json", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def test_bvisor_plan_shows_the_default_limits() -> None:
    budgets = {b["dimension"]: b for b in _plan_json("--", "/bin/true")["budgets"]}  # type: ignore[index, union-attr]
    assert set(budgets) == {"process_count", "resident_bytes", "storage_bytes"}
    assert budgets["process_count"]["limit"] == DEFAULT_PROCESSES
    assert budgets["resident_bytes"]["limit"] == default_memory()
    assert budgets["storage_bytes"]["enforcement"] == "Mediated"
    changed = {
        b["dimension"]: b  # type: ignore[index]
        for b in _plan_json("--limit-procs", "64", "--limit-memory", "off", "--", "/bin/true")[
            "budgets"
        ]  # type: ignore[union-attr]
    }
    assert changed["process_count"]["limit"] == 64 and "resident_bytes" not in changed


def _leaf_file(pid: int, controller: str, name: str) -> str | None:
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            try:
                return (Path(f"/sys/fs/cgroup/{controller}") / path.lstrip("/") / name).read_text()
            except OSError:
                return None
    return None


def test_the_default_limits_are_in_the_kernel_while_the_run_runs(tmp_path: Path) -> None:
    require_feature("cgroup1-pids")
    require_feature("cgroup1-memory")
    work = tmp_path / "work"
    work.mkdir()
    marker = unique_marker("DEFAULT-LIMITS")
    spec = default_spec(["/bin/sh", "-c", "sleep 3", marker], cwd=str(work))
    seen: dict[str, str | None] = {}

    def look() -> None:
        pids = wait_for(lambda: find_pids_with(marker, program="sh"), timeout=30)
        if pids:
            pid = pids[0]  # type: ignore[index]
            seen["pids.max"] = _leaf_file(pid, "pids", "pids.max")
            seen["memory"] = _leaf_file(pid, "memory", "memory.limit_in_bytes")

    watcher = threading.Thread(target=look)
    watcher.start()
    report = run_confined(spec, ledger=tmp_path / "ledger")
    watcher.join()
    assert report.body.outcome is Outcome.COMPLETED
    # The PID namespace's init is a task of the leaf too: the kernel cap is one above the
    # workload's budget, which the witness takes back off.
    assert seen.get("pids.max", "").strip() == str(DEFAULT_PROCESSES + 1), seen  # type: ignore[union-attr]
    limit = int((seen.get("memory") or "0").strip())
    assert default_memory() - 4096 <= limit <= default_memory(), seen


def _without_controllers(snapshot: ProfileSnapshot) -> ProfileSnapshot:
    facts = dataclasses.replace(snapshot.facts, cgroup_v1_bases=(), cgroup_v2_controllers=())
    return ProfileSnapshot(snapshot.backend, facts, CURRENT.ceiling(facts))


def test_without_the_controllers_the_default_still_runs_and_says_not_enforced(
    tmp_path: Path,
) -> None:
    require_feature("landlock")
    work = tmp_path / "work"
    work.mkdir()
    snapshot = _without_controllers(LinuxBackend().probe())
    spec = default_spec(["/bin/true"], cwd=str(work), snapshot=snapshot)
    for dimension in (BudgetDimension.PROCESS_COUNT, BudgetDimension.RESIDENT_BYTES):
        budget = spec.budgets.get(dimension)
        assert budget is not None and budget.guarantee is MinGuarantee.MEDIATED
    report = run_confined(spec, ledger=tmp_path / "ledger", snapshot=snapshot)
    assert report.body.outcome is Outcome.COMPLETED
    assert not any(f.kind == "budget_applied" for f in report.body.observed)
    unenforced = [f.detail for f in report.body.observed if f.kind == "budget_not_enforced"]
    assert [d.split(":")[0] for d in unenforced] == ["resident_bytes", "process_count"]
    notes = _notes(report.body, None)
    assert any("limits not enforced on this host" in note for note in notes), notes
