"""What the private root costs a launch: the default spec of ``/bin/true`` with and without it.

Both sides run the same plan (rules v2, full default confinement, not recorded) through the
same backend, interleaved, so load on this shared machine hits them alike. The reference
skips the new root with the test-only lie switch (``skip_rootfs``: the workload then runs on
the host's mount tree, as under rules v1, still in its PID namespace under the C init, so
teardown is the same on both sides), so the difference is what building the root costs:
cloning each granted root, the minimal /dev, a fresh /proc, the /tmp tmpfs, pivot_root.
Prints medians and the ratio.
Never asserts anything: numbers are for notes.

Usage: python benchmarks/private_root.py [--runs N] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bvisor.contract import Outcome
from bvisor.contract.plan import BoundaryPlan
from bvisor.front.defaults import default_spec
from bvisor.launcher.host.backend import LinuxBackend
from bvisor.launcher.host.locate import default_launcher_path
from bvisor.launcher.host.runner import BoundaryRunner
from bvisor.planner.planning import BoundaryPlanner
from bvisor.planner.registry import BackendRegistry

_WITHOUT_ROOT = frozenset({"skip_rootfs"})


def _runner(hooks: frozenset[str], workdir: str) -> tuple[BoundaryRunner, BoundaryPlan]:
    backend = LinuxBackend.dangerous_with_test_hooks(default_launcher_path(), hooks)
    registry = BackendRegistry()
    registry.register(backend)
    spec = default_spec(["/bin/true"], cwd=workdir, snapshot=backend.probe())
    plan = BoundaryPlanner(registry).plan(spec, "linux")
    return BoundaryRunner(registry), plan


def _once(runner: BoundaryRunner, plan: BoundaryPlan) -> float:
    start = time.perf_counter()
    report = runner.run(plan)
    elapsed = time.perf_counter() - start
    if report.body.outcome is not Outcome.COMPLETED:
        raise SystemExit(f"the benchmark run did not complete: {report.body.outcome.value}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bvisor-bench-root-") as workdir:
        return _measure(args, _runner(frozenset(), workdir), _runner(_WITHOUT_ROOT, workdir))


def _measure(
    args: argparse.Namespace,
    with_root: tuple[BoundaryRunner, BoundaryPlan],
    without_root: tuple[BoundaryRunner, BoundaryPlan],
) -> int:
    for side in (with_root, without_root):  # warm: resident launcher, caches
        _once(*side)
    timings: dict[str, list[float]] = {"private root": [], "host mount tree": []}
    for _ in range(args.runs):
        timings["private root"].append(_once(*with_root))
        timings["host mount tree"].append(_once(*without_root))
    medians = {name: statistics.median(values) * 1000 for name, values in timings.items()}
    extra = medians["private root"] - medians["host mount tree"]
    ratio = medians["private root"] / medians["host mount tree"]
    if args.json:
        print(json.dumps({"median_ms": medians, "extra_ms": extra, "ratio": ratio}))
        return 0
    print(f"/bin/true, default spec, not recorded, median of {args.runs} interleaved runs")
    for name, median in medians.items():
        print(f"  {name:<18} {median:8.2f} ms")
    print(f"  the private root costs {extra:+.2f} ms per launch ({ratio:.2f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
