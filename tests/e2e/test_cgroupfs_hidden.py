"""A workload cannot touch its own run cgroup: Enforced budgets and the atomic kill stay
true even for a uid-0 workload with no filesystem confinement.

The run's child gets a private mount namespace with an empty read-only tmpfs over the
cgroup mounts. Oracles on the host: the leaf's pids.max keeps its value, and the
workload's /proc/<pid>/cgroup still names its leaf after it tried to move itself out.
The planted lie (skip_cgroupfs_hide) must turn both red.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

from bvisor.contract import Budget, MinGuarantee
from bvisor.launcher.host.backend import LinuxBackend
from bvisor.launcher.host.locate import default_launcher_path
from bvisor.launcher.host.runner import BoundaryRunner
from bvisor.planner.planning import BoundaryPlanner
from bvisor.planner.registry import BackendRegistry
from tests.e2e.helpers import (
    descendants_spec,
    find_pids_with,
    unique_marker,
    wait_for,
    with_budgets,
)
from tests.features import require_feature


def _attack(hooks: frozenset[str]) -> tuple[str, str]:
    marker = unique_marker("CGESCAPE")
    script = (
        f": {marker}; "
        # Its own leaf only (named in /proc/self/cgroup), never another run's.
        "leaf=$(sed -n 's/^[0-9]*:pids://p' /proc/self/cgroup); "
        'echo max > "/sys/fs/cgroup/pids$leaf/pids.max" 2>/dev/null; '
        "echo $$ > /sys/fs/cgroup/unified/cgroup.procs 2>/dev/null; sleep 1; :"
    )
    spec = with_budgets(
        descendants_spec(["-c", script]), process_count=Budget(16, MinGuarantee.ENFORCED)
    )
    backend = LinuxBackend.dangerous_with_test_hooks(default_launcher_path(), hooks)
    registry = BackendRegistry()
    registry.register(backend)
    plan = BoundaryPlanner(registry).plan(spec, "linux")
    seen: dict[str, str] = {}

    def watch() -> None:
        pids = wait_for(lambda: find_pids_with(f": {marker};", program="sh"), timeout=20)
        if not pids:
            return
        pid = pids[0]  # type: ignore[index]
        time.sleep(0.5)  # the attack runs first thing; give it time to happen
        cgroups = Path(f"/proc/{pid}/cgroup").read_text()
        seen["v2"] = next(line[3:] for line in cgroups.splitlines() if line.startswith("0::"))
        pids_path = next(line.split(":", 2)[2] for line in cgroups.splitlines() if ":pids:" in line)
        seen["pids.max"] = (
            (Path("/sys/fs/cgroup/pids") / pids_path.lstrip("/") / "pids.max").read_text().strip()
        )

    watcher = threading.Thread(target=watch)
    watcher.start()
    BoundaryRunner(registry).run(plan)
    watcher.join()
    return seen["v2"], seen["pids.max"]


def test_the_workload_cannot_raise_its_limit_or_leave_its_leaf() -> None:
    require_feature("cgroup2-kill")
    require_feature("cgroup1-pids")
    v2, pids_max = _attack(frozenset())
    assert v2.startswith("/bvisor-"), f"the workload left its leaf: {v2}"
    assert pids_max == "17"  # the budget of 16, plus the PID namespace's init


def test_skipping_the_cover_turns_the_oracles_red() -> None:
    require_feature("cgroup2-kill")
    require_feature("cgroup1-pids")
    v2, pids_max = _attack(frozenset({"skip_cgroupfs_hide"}))
    assert v2 == "/" and pids_max == "max", (v2, pids_max)


RAISE_AND_FORK = """
import os, time
line = [l for l in open("/proc/self/cgroup").read().splitlines() if ":pids:" in l][0]
try:
    with open("/sys/fs/cgroup/pids" + line.split(":", 2)[2] + "/pids.max", "w") as f:
        f.write("max")
except OSError:
    pass
for _ in range(30):
    try:
        if os.fork() == 0:
            time.sleep(2)
            os._exit(0)
    except OSError:
        break
time.sleep(1)
"""


def test_a_breached_enforced_budget_is_reported_as_a_finding() -> None:
    require_feature("cgroup2-kill")
    require_feature("cgroup1-pids")
    budget = Budget(8, MinGuarantee.ENFORCED)
    spec = with_budgets(
        descendants_spec(["-c", RAISE_AND_FORK], exe=sys.executable), process_count=budget
    )
    findings = {}
    for hooks in (frozenset(), frozenset({"skip_cgroupfs_hide"})):
        backend = LinuxBackend.dangerous_with_test_hooks(default_launcher_path(), hooks)
        registry = BackendRegistry()
        registry.register(backend)
        report = BoundaryRunner(registry).run(BoundaryPlanner(registry).plan(spec, "linux"))
        findings[hooks] = [f for f in report.body.findings if "breached" in f]
    assert findings[frozenset()] == [], "the honest run held its cap"
    lied = findings[frozenset({"skip_cgroupfs_hide"})]
    assert lied and "process_count" in lied[0], lied
