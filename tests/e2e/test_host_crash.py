"""A host killed with SIGKILL cannot tear down. Fail closed anyway:

* the launcher dies with its host (a fresh launcher by PR_SET_PDEATHSIG, checked against
  the host pid; a resident launcher when the host's end of its socket closes, killing the
  runs it holds), and the workload dies with the launcher — nobody runs on without the
  host's deadline;
* a descendant that escaped into the run cgroup is killed, and the leaf removed, by the
  next run on this host (its creator pid is dead), which records that it did so.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from bvisor.contract import Outcome
from bvisor.front.api import run_confined
from tests.e2e.helpers import (
    descendants_spec,
    find_pids_with,
    marked_sleep,
    unique_marker,
    wait_for,
)
from tests.features import require_feature

HOST = textwrap.dedent(
    """
    import sys
    from bvisor.front.api import run_confined
    from tests.e2e.helpers import descendants_spec
    run_confined(descendants_spec(["-c", sys.argv[1]]), ledger=sys.argv[2])
    """
)


def _children_of(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def _descendants_of(pid: int) -> list[int]:
    found, frontier = [], [pid]
    while frontier:
        children = [child for parent in frontier for child in _children_of(parent)]
        found += children
        frontier = children
    return found


def _alive(pid: int) -> bool:
    try:
        return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False


def test_a_killed_host_takes_its_run_down_and_the_next_run_reaps_the_leaf(
    tmp_path: Path,
) -> None:
    require_feature("cgroup2-kill")
    marker = unique_marker("CRASH")
    script = f": {marker}; {marked_sleep(marker + '-escapee', 120)} & sleep 120; :"
    repo = Path(__file__).resolve().parents[2]
    host = subprocess.Popen(
        [sys.executable, "-c", HOST, script, str(tmp_path / "ledger")], cwd=repo
    )
    try:
        assert wait_for(lambda: find_pids_with(marker + "-escapee", program="sh"), timeout=30)
        # Everything the host started: the launcher (or the resident and the run's launcher
        # it forked), the PID namespace's init and the workload below it.
        tree = _descendants_of(host.pid)
        leaves = {
            pid: next(
                (
                    line[3:]
                    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines()
                    if line.startswith("0::")
                ),
                "",
            )
            for pid in tree
        }
        confined = [pid for pid, leaf in leaves.items() if "/bvisor-" in leaf]
        launchers = [pid for pid in tree if pid not in confined]
        workload = confined
        assert workload and launchers, (workload, launchers)
        leaf = leaves[workload[0]]
        host.send_signal(signal.SIGKILL)
        host.wait(timeout=10)
        assert wait_for(lambda: not any(_alive(p) for p in launchers + workload), timeout=10), (
            "the launcher and the workload must die with their host"
        )
        # The escaped descendant is in the run's PID namespace: its init died with the
        # launcher, so the kernel killed it too (before the PID namespace, it outlived the
        # host until the next run reaped its leaf).
        assert wait_for(
            lambda: not find_pids_with(marker + "-escapee", program="sh"), timeout=10
        ), "the escaped descendant must die with its host"
        # The empty leaf is still there (nobody was left to remove it); the next run reaps it.
        assert (Path("/sys/fs/cgroup/unified") / leaf.lstrip("/")).exists()
        report = run_confined(descendants_spec(["-c", "true"]), ledger=tmp_path / "ledger2")
        assert report.body.outcome is Outcome.COMPLETED
        reaped = [f.detail for f in report.body.observed if f.kind == "cgroup_stale_leaf_reaped"]
        assert any(leaf.strip("/") in detail for detail in reaped), reaped
        assert not (Path("/sys/fs/cgroup/unified") / leaf.lstrip("/")).exists()
    finally:
        if host.poll() is None:
            host.kill()
        for pid in find_pids_with(marker):
            os.kill(pid, signal.SIGKILL)
