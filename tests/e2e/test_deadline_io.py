"""A wall budget ends the run on time however the host's own output blocks.

Oracles from outside the workload: the workload's processes, found by a marker in their
command line, must be gone within the budget plus a small margin while the host's stdout
is a pipe nobody reads (or a callback that never returns); the run is then recorded as
``timeout`` — never ``completed`` — and the wall witness shows the overshoot. Before the
fix the host's observation loop sat in a blocking write, the deadline was only checked
between writes, and the workload ran on for as long as the reader slept.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from bvisor.contract import Budget, BudgetDimension, MinGuarantee, Outcome
from bvisor.front.api import run_confined
from tests.e2e.helpers import (
    descendants_spec,
    find_pids_with,
    ledger_runs_json,
    unique_marker,
    wait_for,
    with_budgets,
)
from tests.features import require_feature

REPO = Path(__file__).resolve().parents[2]
LIMIT_S = 1.0
# How late the kill may come on a loaded 2-core machine; the design target is milliseconds.
MARGIN_S = 1.5


def _chatty(marker: str) -> list[str]:
    return ["-c", "while :; do echo 0123456789abcdef0123456789abcdef; done", marker]


def _spec_file(tmp_path: Path, marker: str) -> Path:
    args = ", ".join(json.dumps(a) for a in _chatty(marker))
    spec = tmp_path / "wall.toml"
    spec.write_text(
        f'[workload]\nexe = "/bin/sh"\nargs = [{args}]\n'
        '[[capability]]\ntype = "child_spawn"\npolicy = "allow_descendants_within_boundary"\n'
        '[[control]]\ntype = "launch_workload"\n'
        '[[control]]\ntype = "capture_streams"\nstdout = true\nstderr = true\n'
        '[[control]]\ntype = "kill"\ntarget = "run_tree"\nguarantee = "atomic"\n'
        f'[budgets]\nwall_micros = {{ limit = {int(LIMIT_S * 1e6)}, guarantee = "enforced" }}\n'
    )
    return spec


def _lifetime(marker: str, timeout: float) -> float | None:
    """Seconds from the workload first seen to gone (None: never seen, or still alive)."""
    if not wait_for(lambda: find_pids_with(marker, program="sh"), timeout=30):
        return None
    seen = time.monotonic()
    gone = wait_for(lambda: not find_pids_with(marker, program="sh"), timeout=timeout)
    return time.monotonic() - seen if gone else None


def test_a_stdout_pipe_nobody_reads_does_not_stretch_the_wall_budget(tmp_path: Path) -> None:
    require_feature("cgroup2-kill")
    marker = unique_marker("BLOCKED-STDOUT")
    ledger = tmp_path / "ledger"
    read_end, write_end = os.pipe()  # held open, never read: `bvisor run ... | (sleep 30)`
    host = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bvisor.front.cli.main",
            "run",
            "--ledger",
            str(ledger),
            "--spec",
            str(_spec_file(tmp_path, marker)),
        ],
        stdout=write_end,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    os.close(write_end)
    try:
        lifetime = _lifetime(marker, timeout=LIMIT_S + 10)
        assert lifetime is not None, "the workload outlived its wall budget by 10 s"
        assert lifetime < LIMIT_S + MARGIN_S, f"killed {lifetime - LIMIT_S:.2f}s late"
        # The host itself is done soon too: it does not wait on a reader that takes nothing.
        _, err = host.communicate(timeout=15)
    finally:
        if host.poll() is None:
            host.kill()
        os.close(read_end)
    assert host.returncode == 124, err
    assert b"stream relay incomplete" in err, err
    runs = ledger_runs_json(ledger)
    assert '"timeout"' in runs and '"completed"' not in runs, runs


def test_a_callback_that_never_returns_does_not_stretch_the_wall_budget(tmp_path: Path) -> None:
    require_feature("cgroup2-kill")
    marker = unique_marker("BLOCKED-CALLBACK")
    spec = with_budgets(
        descendants_spec(_chatty(marker)),
        wall_micros=Budget(int(LIMIT_S * 1e6), MinGuarantee.ENFORCED),
    )
    release = threading.Event()

    def stuck(_chunk: bytes) -> None:
        release.wait(60)  # a caller's sink that stalls (a full disk, a lock...)

    lifetimes: list[float | None] = []
    watcher = threading.Thread(target=lambda: lifetimes.append(_lifetime(marker, LIMIT_S + 10)))
    watcher.start()
    result: list[object] = []
    runner = threading.Thread(
        target=lambda: result.append(
            run_confined(spec, ledger=tmp_path / "ledger", on_stdout=stuck)
        )
    )
    runner.start()
    watcher.join()
    release.set()
    runner.join(60)
    assert lifetimes and lifetimes[0] is not None, "the workload outlived its budget by 10 s"
    assert lifetimes[0] < LIMIT_S + MARGIN_S, f"killed {lifetimes[0] - LIMIT_S:.2f}s late"
    report = result[0]
    assert report.body.outcome is Outcome.TIMEOUT  # type: ignore[attr-defined]
    wall = next(
        w
        for w in report.body.budget_witnesses  # type: ignore[attr-defined]
        if w.dimension is BudgetDimension.WALL_MICROS
    )
    # The wall witness ends when the launcher was seen gone: the deadline's own overshoot.
    assert wall.exceeded and wall.observed < (LIMIT_S + MARGIN_S) * 1e6, wall
