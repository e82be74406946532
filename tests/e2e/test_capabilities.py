"""The workload holds no capability, even when bvisor runs as root (PrivilegeDrop phase).

Oracle: the host reads the workload's /proc/<pid>/status while it runs — every capability
set must be empty — and a root workload's chown of a file to another uid must fail on
disk. The planted lie (skip_caps_drop) must turn the oracle red.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from bvisor.contract import SpawnPolicy
from bvisor.launcher.host.backend import LinuxBackend
from bvisor.launcher.host.locate import default_launcher_path
from bvisor.launcher.host.runner import BoundaryRunner
from bvisor.planner.planning import BoundaryPlanner
from bvisor.planner.registry import BackendRegistry
from tests.e2e.helpers import find_pids_with, spawn_spec, unique_marker, wait_for

CAP_SETS = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")


def _run(tmp_path: Path, hooks: frozenset[str]) -> tuple[dict[str, int], int]:
    target = tmp_path / "owned-by-root"
    target.write_text("x")
    marker = unique_marker("CAPS")
    script = f": {marker}; chown 4242 {target} 2>/dev/null; sleep 1; :"
    backend = LinuxBackend.dangerous_with_test_hooks(default_launcher_path(), hooks)
    registry = BackendRegistry()
    registry.register(backend)
    plan = BoundaryPlanner(registry).plan(
        spawn_spec(SpawnPolicy.ALLOW_DESCENDANTS_WITHIN_BOUNDARY, ["-c", script]), "linux"
    )
    seen: dict[str, int] = {}

    def watch() -> None:
        pids = wait_for(lambda: find_pids_with(f": {marker};", program="sh"), timeout=20)
        if pids:
            for line in Path(f"/proc/{pids[0]}/status").read_text().splitlines():  # type: ignore[index]
                name, _, value = line.partition(":")
                if name in CAP_SETS:
                    seen[name] = int(value.strip(), 16)

    watcher = threading.Thread(target=watch)
    watcher.start()
    BoundaryRunner(registry).run(plan)
    watcher.join()
    return seen, target.stat().st_uid


def test_a_root_started_workload_holds_no_capability(tmp_path: Path) -> None:
    caps, owner = _run(tmp_path, frozenset())
    assert set(caps) == set(CAP_SETS), "the host must have read the workload's status"
    assert all(value == 0 for value in caps.values()), caps
    assert owner == os.geteuid(), "chown to another uid needs CAP_CHOWN and must fail"


def test_skipping_the_drop_turns_the_oracle_red(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("LOUD SKIP: a non-root host has no capabilities to keep")
    caps, owner = _run(tmp_path, frozenset({"skip_caps_drop"}))
    assert caps["CapBnd"] != 0 and caps["CapEff"] != 0, caps
    assert owner == 4242, "with capabilities kept, root's chown goes through"
