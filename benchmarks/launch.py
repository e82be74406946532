"""Per-run wall time of `/bin/true`, side by side in one process.

References measured in the same run: bare ``subprocess.run`` and bubblewrap
(``bwrap --unshare-all --die-with-parent`` over a read-only bind of /). bvisor is measured
with the full default confinement (userns + empty netns, Landlock, seccomp, cgroup leaf with
cgroup.kill, env and fd scrub), once recording to a ledger (the product path: probe, plan,
launch, seal, durable events) and once without recording (the launch path alone).
Prints medians and the ratio to bwrap. Never asserts anything: numbers are for notes.

Usage: python benchmarks/launch.py [--runs N] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bvisor.contract import Outcome
from bvisor.front.api import run_confined
from bvisor.front.defaults import default_spec
from bvisor.launcher.host.backend import LinuxBackend
from bvisor.launcher.host.runner import BoundaryRunner
from bvisor.planner.planning import BoundaryPlanner
from bvisor.planner.registry import BackendRegistry

BWRAP_ARGS = [
    "--unshare-all",
    "--die-with-parent",
    "--ro-bind",
    "/",
    "/",
    "--dev",
    "/dev",
    "--proc",
    "/proc",
]


def ensure_bwrap() -> tuple[str | None, str]:
    found = shutil.which("bwrap")
    if found:
        return found, "already installed"
    if os.geteuid() != 0:
        return None, "bwrap absent and not root: cannot install it"
    done = subprocess.run(["apt-get", "install", "-y", "-qq", "bubblewrap"], capture_output=True)
    if done.returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True)
        done = subprocess.run(
            ["apt-get", "install", "-y", "-qq", "bubblewrap"], capture_output=True
        )
    found = shutil.which("bwrap")
    return (
        (found, "installed from Debian now")
        if found
        else (None, "apt-get could not install bubblewrap")
    )


def measure(name: str, once: Callable[[], None], runs: int) -> dict[str, float]:
    once()  # warm-up: imports, page cache, compiled child window
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        once()
        samples.append(time.perf_counter() - started)
    return {
        "name": name,
        "median_ms": statistics.median(samples) * 1000,
        "p90_ms": sorted(samples)[int(0.9 * (len(samples) - 1))] * 1000,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    scratch = tempfile.mkdtemp(prefix="bvisor-bench-")
    workdir = os.path.join(scratch, "work")  # the run's root; the ledger must lie outside it
    os.mkdir(workdir)
    spec = default_spec(["/bin/true"], cwd=workdir)
    ledger_dir = Path(scratch) / "ledger"

    def bare() -> None:
        subprocess.run(["/bin/true"], check=True)

    def bvisor_recorded() -> None:
        report = run_confined(spec, ledger=ledger_dir)
        assert report.body.outcome is Outcome.COMPLETED, report.body.observed

    backend = LinuxBackend()
    registry = BackendRegistry()
    registry.register(backend)
    plan = BoundaryPlanner(registry).plan(spec, backend.id())
    runner = BoundaryRunner(registry)

    def bvisor_launch_only() -> None:
        report = runner.run(plan)
        assert report.body.outcome is Outcome.COMPLETED, report.body.observed

    rows = [measure("bare subprocess", bare, args.runs)]
    bwrap, bwrap_note = ensure_bwrap()
    if bwrap is not None:

        def bubblewrap() -> None:
            subprocess.run([bwrap, *BWRAP_ARGS, "/bin/true"], check=True)

        rows.append(measure("bwrap --unshare-all", bubblewrap, args.runs))
    rows.append(measure("bvisor launch (plan reused, no ledger)", bvisor_launch_only, args.runs))
    rows.append(
        measure("bvisor run_confined (probe+plan+launch+ledger)", bvisor_recorded, args.runs)
    )
    reference = next((r for r in rows if r["name"].startswith("bwrap")), rows[0])
    for row in rows:
        row["ratio_to_reference"] = row["median_ms"] / reference["median_ms"]
    if args.json:
        print(
            json.dumps(
                {"reference": reference["name"], "bwrap": bwrap_note, "rows": rows}, indent=2
            )
        )
        return 0
    print(f"bwrap: {bwrap_note}; runs per row: {args.runs}; reference: {reference['name']}")
    print(f"{'what':50} {'median ms':>10} {'p90 ms':>8} {'x ref':>7}")
    for row in rows:
        ratio = row["ratio_to_reference"]
        print(f"{row['name']:50} {row['median_ms']:10.2f} {row['p90_ms']:8.2f} {ratio:7.2f}")
    shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
