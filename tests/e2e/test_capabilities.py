"""The workload holds no capability, even when bvisor runs as root (PrivilegeDrop phase).

Oracle: the host reads the workload's /proc/<pid>/status while it runs — every capability
set must be empty — and a root workload's write to a root-owned file whose mode forbids
writing (which only CAP_DAC_OVERRIDE lets through, also inside the workload's user
namespace, where uid 0 is mapped to the host's root) must not reach the disk. The planted
lie (skip_caps_drop) must turn the oracle red.
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


def _run(tmp_path: Path, hooks: frozenset[str]) -> tuple[dict[str, int], str]:
    target = tmp_path / "owned-by-root"
    target.write_text("x")
    target.chmod(0o400)  # not even its owner may write it, without CAP_DAC_OVERRIDE
    marker = unique_marker("CAPS")
    script = f": {marker}; echo overridden >> {target} 2>/dev/null; sleep 1; :"
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
    return seen, target.read_text()


def test_a_root_started_workload_holds_no_capability(tmp_path: Path) -> None:
    caps, content = _run(tmp_path, frozenset())
    assert set(caps) == set(CAP_SETS), "the host must have read the workload's status"
    assert all(value == 0 for value in caps.values()), caps
    assert content == "x", "writing a 0400 file needs CAP_DAC_OVERRIDE and must fail"


def test_skipping_the_drop_turns_the_oracle_red(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("LOUD SKIP: a non-root host has no capabilities to keep")
    caps, content = _run(tmp_path, frozenset({"skip_caps_drop"}))
    assert caps["CapBnd"] != 0 and caps["CapEff"] != 0, caps
    assert "overridden" in content, "with capabilities kept, root's write goes through"
