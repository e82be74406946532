"""The seed's first test, in Python: DenyNewTasks under seccomp, seen from the host.

Like the original, the launcher runs in a driver thread while the host scans
``/proc/*/cmdline`` for a marker and reads ``Seccomp:`` from the workload's status. The
shell prints before its fork; the fork of ``/bin/echo`` must be refused.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from bvisor.launcher.host.launch import (
    LaunchObservation,
    launch_confinement_unavailable,
    run_launcher,
)
from tests.features import require_feature
from tests.launcher.conftest import build_plan, deny_new_tasks


def unique_marker() -> str:
    return f"BVISOR-SPAWN-MARKER-{os.getpid()}-{time.time_ns()}"


def scan_proc_cmdline(marker: str) -> int | None:
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            data = Path(f"/proc/{name}/cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in data:
            return int(name)
    return None


def seccomp_mode(pid: int) -> int | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("Seccomp:"):
            return int(line.split(":", 1)[1].strip())
    return None


def test_deny_new_tasks_fork_is_refused_and_host_sees_seccomp_filter(launcher_path: str) -> None:
    require_feature("seccomp")
    marker = unique_marker()
    script = (
        f": {marker}; echo before_fork=ok; "
        'i=0; while [ "$i" -lt 1200000 ]; do i=$((i+1)); done; '
        "/bin/echo after_fork=ok 2>/dev/null; true"
    )
    plan, auth = build_plan("/bin/sh", ["sh", "-c", script], seccomp=deny_new_tasks())  # type: ignore[operator]
    result: list[LaunchObservation] = []
    driver = threading.Thread(
        target=lambda: result.append(run_launcher(launcher_path, plan, auth.fds)),
        name="spawn-oracle-launcher",
    )
    driver.start()
    host_mode = None
    # Scan while the launcher is running (the workload's busy loop keeps it alive).
    while driver.is_alive() and host_mode is None:
        pid = scan_proc_cmdline(marker)
        if pid is not None:
            host_mode = seccomp_mode(pid)
        else:
            time.sleep(0.005)
    driver.join()
    auth.close()
    obs = result[0]
    assert not launch_confinement_unavailable(obs), obs.notes
    stdout = obs.captured_stdout.decode()
    failures = []
    if not obs.exec_succeeded():
        failures.append(f"terminal={obs.terminal} notes={obs.notes}")
    if not any("seccomp" in note for note in obs.notes):
        failures.append(f"no seccomp note: {obs.notes}")
    if host_mode != 2:
        failures.append(f"host read Seccomp={host_mode!r}, expected 2")
    if "before_fork=ok" not in stdout:
        failures.append(f"workload did not start: {stdout!r}")
    if "after_fork=ok" in stdout:
        failures.append(f"the fork was not refused: {stdout!r}")
    assert not failures, failures
    assert obs.transcript == (
        "LauncherStarted",
        "IdentityVerified",
        "PlanVerified",
        "HandlesVerified",
        "ChildCreated",
        "NamespacePhaseResolved",
        "FdPhaseResolved",
        "FilesystemPhaseResolved",
        "PolicyPhaseResolved",
        "ReadyToExec",
        "ExecSucceeded",
    )
    assert obs.launcher_exit == 0
    assert obs.workload_pid is not None
