"""Budgets the kernel enforces: process count, resident memory, wall clock.

Oracles: the kernel's own cgroup files (pids.current, pids.events) read by the test while
the workload runs, and the process table after the run.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from pathlib import Path

from bvisor.contract import Budget, BudgetDimension, MinGuarantee, Outcome
from tests.e2e.helpers import (
    descendants_spec,
    fact_kinds,
    find_pids_with,
    marked_sleep,
    run_execute,
    unique_marker,
    wait_for,
    with_budgets,
)
from tests.features import require_feature

ENFORCED = MinGuarantee.ENFORCED


def _pids_leaf_of(pid: int) -> Path:
    """The v1 pids cgroup directory the kernel says ``pid`` is in."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "pids" in controllers.split(","):
            return Path("/sys/fs/cgroup/pids") / path.lstrip("/")
    raise AssertionError(f"pid {pid} has no pids cgroup")


FORK_BOMB = """
import os, sys, time
children = refused = 0
for _ in range(40):
    try:
        pid = os.fork()
    except OSError:
        refused += 1
        continue
    if pid == 0:
        time.sleep(30)
        os._exit(0)
    children += 1
print(f"children={children} refused={refused}", flush=True)
time.sleep(1.5)
"""


def test_fork_bomb_stays_at_the_process_cap_and_the_kernel_counts_refusals() -> None:
    require_feature("cgroup1-pids")
    require_feature("cgroup2-kill")
    marker = unique_marker("BOMB")
    # A shell treats a refused fork as fatal, so the bomb is a Python loop that survives
    # refusals; every process carries the marker in its cmdline (forks share argv).
    spec = with_budgets(
        descendants_spec(["-c", FORK_BOMB, marker], exe=sys.executable),
        process_count=Budget(8, ENFORCED),
    )
    samples: list[tuple[int, str]] = []

    def watch() -> None:
        pids = wait_for(lambda: len(find_pids_with(marker)) >= 8 and find_pids_with(marker))
        if not pids:
            return
        leaf = _pids_leaf_of(pids[0])  # type: ignore[index]
        assert "/bvisor-" in str(leaf), f"the bomb is not in a run leaf: {leaf}"
        with contextlib.suppress(OSError):  # the run may already be over: no sample then
            samples.append(
                (int((leaf / "pids.current").read_text()), (leaf / "pids.events").read_text())
            )

    watcher = threading.Thread(target=watch)
    watcher.start()
    captured = bytearray()
    report = run_execute(spec, on_stdout=captured.extend)
    watcher.join()
    assert report is not None
    assert report.body.outcome is Outcome.COMPLETED, report.body.observed
    assert samples, "the test must have read the kernel's pids counters during the run"
    current, events = samples[0]
    # The leaf also holds the PID namespace's init, which the budget does not count.
    assert current - 1 <= 8, f"pids.current {current} exceeded the cap of 8 (+ init)"
    assert int(events.split()[1]) > 0, f"the kernel refused no fork: {events!r}"
    assert b"children=7 refused=33" in captured, captured
    witness = next(
        w for w in report.body.budget_witnesses if w.dimension is BudgetDimension.PROCESS_COUNT
    )
    assert witness.observed is not None and witness.observed <= 8
    assert not find_pids_with(marker), "every bomb child must be gone after the run"


def test_memory_budget_kills_an_allocation_loop() -> None:
    require_feature("cgroup1-memory")
    script = "import sys\nblocks = []\nwhile True:\n    blocks.append(b'x' * (4 << 20))\n"
    spec = with_budgets(
        descendants_spec(["-c", script], exe=sys.executable),
        resident_bytes=Budget(64 << 20, ENFORCED),
    )
    report = run_execute(spec)
    assert report is not None
    assert report.body.outcome is Outcome.KILLED, report.body.observed
    assert report.body.exit is not None and report.body.exit.signal == 9
    details = [f.detail for f in report.body.observed if f.kind == "budget_exceeded"]
    assert any("resident_bytes" in d for d in details), report.body.observed


def test_wall_budget_times_out_and_kills_the_tree() -> None:
    require_feature("cgroup2-kill")
    marker = unique_marker("SLEEPER")
    spec = with_budgets(
        descendants_spec(["-c", f"{marked_sleep(marker, 100)} & sleep 100"]),
        wall_micros=Budget(1_000_000, ENFORCED),
    )
    started = time.monotonic()
    report = run_execute(spec)
    elapsed = time.monotonic() - started
    assert report is not None
    assert report.body.outcome is Outcome.TIMEOUT, report.body.observed
    assert elapsed < 10, "the deadline must end the run, not the workload's own 100 s"
    assert "cgroup_teardown_incomplete" not in fact_kinds(report)
    assert not find_pids_with(marker)


def test_enforced_budget_below_the_derived_minimum_is_refused() -> None:
    spec = with_budgets(descendants_spec(["-c", "true"]), process_count=Budget(0, ENFORCED))
    assert run_execute(spec) is None


def test_mediated_budget_over_limit_is_a_finding_not_a_kill() -> None:
    spec = with_budgets(
        descendants_spec(["-c", "true"]), wall_micros=Budget(1, MinGuarantee.MEDIATED)
    )
    report = run_execute(spec)
    assert report is not None
    assert report.body.outcome is Outcome.COMPLETED
    assert any("wall_micros" in finding for finding in report.body.findings)
