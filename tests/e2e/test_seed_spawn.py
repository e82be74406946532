"""The seed's child-spawn checks, through the Python API (plan -> run -> sealed report).

Oracles are outside the workload: the kernel's view of the workload's cgroup and the
liveness of a double-forked daemon in /proc, plus the report the runner sealed.
"""

from __future__ import annotations

import errno
import os
import sys
import threading
from pathlib import Path

import pytest

from bvisor.contract import Outcome, SpawnPolicy
from tests.e2e.helpers import (
    descendants_spec,
    fact_kinds,
    find_pids_with,
    marked_sleep,
    run_execute,
    spawn_spec,
    unique_marker,
    wait_for,
)
from tests.features import feature_missing, require_feature

FORK_PROBE = """
import os
try:
    pid = os.fork()
except PermissionError as exc:
    print(f"fork=REFUSED errno={exc.errno}")
else:
    if pid == 0:
        os._exit(0)
    print("fork=OK")
"""


def test_deny_new_tasks_spec_runs_through_the_execute_path() -> None:
    """The seed's execute-path check, with the real exit status.

    The original recorded no exit status, so its ``sh -c 'if (exit 0) & ...'`` counted as
    Completed although dash and bash both exit non-zero when a fork is refused. We record
    the workload's real status, so the workload here is one that survives the refusal and
    reports it: Completed, and the fork was refused with EPERM.
    """
    require_feature("seccomp")
    captured = bytearray()
    report = run_execute(
        spawn_spec(SpawnPolicy.DENY_NEW_TASKS, ["-c", FORK_PROBE], exe=sys.executable),
        on_stdout=captured.extend,
    )
    assert report is not None, "DenyNewTasks must be admitted on a seccomp-capable kernel"
    assert report.body.outcome is Outcome.COMPLETED, report.body.observed
    assert "child_spawn_lowered" in fact_kinds(report)
    assert captured.strip() == f"fork=REFUSED errno={errno.EPERM}".encode()


def test_a_shell_whose_fork_is_refused_fails_with_its_real_status() -> None:
    require_feature("seccomp")
    report = run_execute(
        spawn_spec(
            SpawnPolicy.DENY_NEW_TASKS,
            ["-c", "if (exit 0) 2>/dev/null & then echo fork=OK; else echo fork=REFUSED; fi; true"],
        )
    )
    assert report is not None
    assert report.body.outcome is Outcome.FAILED
    assert report.body.exit is not None and report.body.exit.code not in (None, 0)


def test_deny_new_tasks_fork_is_refused_in_the_captured_output() -> None:
    require_feature("seccomp")
    captured = bytearray()
    report = run_execute(
        spawn_spec(
            SpawnPolicy.DENY_NEW_TASKS,
            ["-c", "echo before=ok; /bin/echo after=ok 2>/dev/null; true"],
        ),
        on_stdout=captured.extend,
    )
    assert report is not None
    assert b"before=ok" in captured
    assert b"after=ok" not in captured, "an external command needs a fork, which must be refused"


def test_allow_threads_fails_closed_under_the_original_rules(tmp_path: Path) -> None:
    """The seed's check, kept for the rules that had the original's gap (v1: "clone3's
    flags sit behind a pointer"): admission refuses, the target never runs. Rules v2 close
    the gap (clone3 answers ENOSYS, clone's flags are checked): the same spec now runs
    threads-only — its oracles are in test_threads_only.py."""
    import dataclasses

    from bvisor.contract.profile import ProfileSnapshot
    from bvisor.launcher.host.probe import probe_host
    from bvisor.planner.errors import PlanRefusal
    from bvisor.planner.planning import plan_boundary
    from bvisor.planner.rules import v1

    marker = tmp_path / "ran"
    spec = spawn_spec(SpawnPolicy.ALLOW_THREADS_WITHIN_BOUNDARY, ["-c", f": > {marker}"])
    facts = dataclasses.replace(probe_host(None), pidns=None)
    with pytest.raises(PlanRefusal) as refused:
        plan_boundary(spec, ProfileSnapshot("linux", facts, v1.RULES.ceiling(facts)), v1.RULES)
    assert (refused.value.code, refused.value.requirement) == (
        "unsupported",
        "child_spawn_allow_threads",
    )
    assert not marker.exists()
    if feature_missing("seccomp") is None:
        report = run_execute(spec)
        assert report is not None and report.body.outcome is Outcome.COMPLETED
        assert marker.exists(), "under rules v2 the threads-only spec runs"


def test_allow_descendants_is_born_in_its_cgroup_and_cgroup_kill_drains_the_tree() -> None:
    require_feature("cgroup2-kill")
    marker = unique_marker("DAEMON")
    # The workload double-forks a daemon, then lingers a second so the host can look.
    script = f"({marked_sleep(marker + '-daemon', 60)} &) ; : {marker}-main; sleep 1"
    seen: dict[str, object] = {}

    def watch() -> None:
        main = wait_for(lambda: find_pids_with(f"{marker}-main"))
        daemon = wait_for(lambda: find_pids_with(f"{marker}-daemon"))
        if main:
            seen["main_cgroup"] = Path(f"/proc/{main[0]}/cgroup").read_text()
            leaf = [line for line in seen["main_cgroup"].splitlines() if line.startswith("0::")]  # type: ignore[union-attr]
            if leaf:
                path = Path("/sys/fs/cgroup/unified") / leaf[0][3:].lstrip("/")
                seen["leaf_procs"] = (path / "cgroup.procs").read_text().split()
                seen["main_pid"] = main[0]
        seen["daemon"] = daemon

    watcher = threading.Thread(target=watch)
    watcher.start()
    report = run_execute(descendants_spec(["-c", script]))
    watcher.join()
    assert report is not None, "AllowDescendants must be admitted where cgroup.kill exists"
    kinds = fact_kinds(report)
    assert report.body.outcome is Outcome.COMPLETED, report.body.observed
    assert "child_spawn_lowered" in kinds
    assert "cgroup_leaf_prepared" in kinds
    assert "cgroup_teardown_incomplete" not in kinds, report.body.observed
    # Oracle 1: the workload was in a bvisor leaf, per the kernel and the leaf's own procs.
    assert "/bvisor-" in str(seen.get("main_cgroup")), seen
    assert str(seen["main_pid"]) in seen["leaf_procs"]  # type: ignore[operator]
    # Oracle 2: the double-forked daemon outlived the workload but not the run.
    daemon = seen.get("daemon")
    assert daemon, "the daemon must have started (else this test proves nothing)"
    for pid in daemon:  # type: ignore[union-attr]
        assert not os.path.exists(f"/proc/{pid}") or _is_zombie_or_gone(pid)


def _is_zombie_or_gone(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True
    return "State:\tZ" in status


def test_an_allow_descendants_spec_runs_through_the_execute_path() -> None:
    require_feature("cgroup2-kill")
    captured = bytearray()
    report = run_execute(descendants_spec(["-c", "echo ran; true"]), on_stdout=captured.extend)
    assert report is not None
    assert report.body.outcome is Outcome.COMPLETED, report.body.observed
    assert b"ran" in captured
