"""Wall-deadline overshoot when the host's stdout blocks, against a reader that keeps up.

Each run is ``bvisor run --spec`` on a workload that writes without end under an Enforced
1 s wall budget. The overshoot is the recorded wall witness minus the limit (the host's
monotonic clock from the start of the run to the moment the launcher was seen gone).
Rows: stdout is a pipe nobody reads (``| (sleep 30)``), and the reference measured in the
same run, stdout to ``/dev/null``. Also printed: how long the ``bvisor`` process itself
took to exit. Never asserts: numbers for notes.

Usage: python benchmarks/deadline.py [--runs N] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bvisor.contract.events import RUN_TERMINAL

REPO = Path(__file__).resolve().parents[1]
LIMIT_US = 1_000_000
SPEC = """
[workload]
exe = "/bin/sh"
args = ["-c", "while :; do echo 0123456789abcdef0123456789abcdef; done"]
[[capability]]
type = "child_spawn"
policy = "allow_descendants_within_boundary"
[[control]]
type = "launch_workload"
[[control]]
type = "capture_streams"
stdout = true
stderr = true
[[control]]
type = "kill"
target = "run_tree"
guarantee = "atomic"
[budgets]
wall_micros = { limit = 1000000, guarantee = "enforced" }
"""


def one_run(spec: Path, blocked: bool, work: Path) -> tuple[float, float]:
    """(overshoot in ms, seconds until bvisor exited) for one run."""
    read_end, write_end = os.pipe()
    sink = write_end if blocked else os.open(os.devnull, os.O_WRONLY)
    started = time.monotonic()
    argv = [sys.executable, "-m", "bvisor.front.cli.main", "run", "--spec", str(spec)]
    done = subprocess.run(
        [*argv, "--ledger", str(work / "ledger")],
        stdout=sink,
        stderr=subprocess.PIPE,
        cwd=work,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=120,
        check=False,
    )
    took = time.monotonic() - started
    os.close(write_end)
    os.close(read_end)
    if not blocked:
        os.close(sink)
    if done.returncode != 124:
        raise RuntimeError(f"expected a timeout (124), got {done.returncode}: {done.stderr!r}")
    wall = _last_wall(work / "ledger")
    return (wall - LIMIT_US) / 1000, took


def _last_wall(ledger: Path) -> int:
    export = subprocess.run(
        [sys.executable, "-m", "bvisor.front.cli.ledger_cmd", "--ledger", str(ledger), "export"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    for line in reversed(export.stdout.splitlines()):
        event = json.loads(line)
        if event.get("kind") == RUN_TERMINAL:
            for witness in event["payload"]["budget_witnesses"]:
                if witness["dimension"] == "wall_micros":
                    return int(witness["observed"])
    raise RuntimeError(f"no {RUN_TERMINAL} with a wall witness in the ledger")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bvisor-bench-deadline-") as tmp:
        work = Path(tmp)
        spec = work / "wall.toml"
        spec.write_text(SPEC)
        for name, blocked in (("stdout to /dev/null (reference)", False), ("blocked pipe", True)):
            samples = [one_run(spec, blocked, work) for _ in range(args.runs)]
            overshoot = [s[0] for s in samples]
            exits = [s[1] for s in samples]
            rows.append(
                {
                    "name": name,
                    "overshoot_ms_median": statistics.median(overshoot),
                    "overshoot_ms_max": max(overshoot),
                    "bvisor_exit_s_median": statistics.median(exits),
                }
            )
    reference = rows[0]["overshoot_ms_median"]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        ratio = row["overshoot_ms_median"] / reference if reference else float("nan")
        print(
            f"{row['name']:34} overshoot median {row['overshoot_ms_median']:7.1f} ms  "
            f"max {row['overshoot_ms_max']:7.1f} ms  ({ratio:4.2f}x ref)  "
            f"bvisor exited after {row['bvisor_exit_s_median']:.2f}s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
