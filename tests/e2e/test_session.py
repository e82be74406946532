"""The workload runs in a session of its own, without a controlling terminal, so it can
neither open the caller's terminal nor receive the caller's job-control signals.

Oracle: the host reads /proc/<pid>/stat of the running workload (session id, tty_nr); the
planted lie (skip_fd_scrub, which skips the ambient scrub) must turn it red.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from bvisor.contract import SpawnPolicy
from bvisor.launcher.host.backend import LinuxBackend
from bvisor.launcher.host.locate import default_launcher_path
from bvisor.launcher.host.runner import BoundaryRunner
from bvisor.planner.planning import BoundaryPlanner
from bvisor.planner.registry import BackendRegistry
from tests.e2e.helpers import find_pids_with, spawn_spec, unique_marker, wait_for


def _session_of_workload(hooks: frozenset[str]) -> tuple[int, int, int]:
    marker = unique_marker("SESSION")
    backend = LinuxBackend.dangerous_with_test_hooks(default_launcher_path(), hooks)
    registry = BackendRegistry()
    registry.register(backend)
    plan = BoundaryPlanner(registry).plan(
        spawn_spec(
            SpawnPolicy.ALLOW_DESCENDANTS_WITHIN_BOUNDARY, ["-c", f": {marker}; sleep 1; :"]
        ),
        "linux",
    )
    seen: list[tuple[int, int, int]] = []

    def watch() -> None:
        pids = wait_for(lambda: find_pids_with(f": {marker};", program="sh"), timeout=20)
        if pids:
            pid = pids[0]  # type: ignore[index]
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            seen.append((pid, int(fields[3]), int(fields[4])))  # pid, session, tty_nr

    watcher = threading.Thread(target=watch)
    watcher.start()
    BoundaryRunner(registry).run(plan)
    watcher.join()
    assert seen, "the host must have read the workload's stat"
    return seen[0]


def test_the_workload_leads_its_own_session_without_a_terminal() -> None:
    pid, session, tty_nr = _session_of_workload(frozenset())
    assert session == pid and session != os.getsid(0)
    assert tty_nr == 0


def test_skipping_the_ambient_scrub_turns_the_oracle_red() -> None:
    pid, session, _ = _session_of_workload(frozenset({"skip_fd_scrub"}))
    assert session != pid, "without the scrub the workload stays in the caller's session"
