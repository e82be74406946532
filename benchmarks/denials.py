"""The cost of a denied call when it is reported: notified to the launcher vs a plain errno.

The same workload (a tight loop of ``mount`` calls the boundary refuses, timed by the
workload itself) runs twice in one process under the same spec: once with
``require_denied_attempts`` (each call a seccomp user notification the launcher answers)
and once without (the filter answers EPERM in the kernel). Prints the per-call time of
each and their ratio. Never asserts anything: numbers are for notes.

Usage: python benchmarks/denials.py [--calls N] [--runs R] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bvisor.contract import (
    BoundarySpec,
    BudgetRequirements,
    CaptureStreams,
    ChildSpawn,
    Environment,
    EnvPolicy,
    EvidenceRequirements,
    LaunchWorkload,
    ProcessWorkload,
    SpawnPolicy,
    StdStreams,
)
from bvisor.contract.evidence import EvidenceClaim
from bvisor.launcher.host.backend import LinuxBackend
from bvisor.launcher.host.locate import default_launcher_path
from bvisor.launcher.host.runner import BoundaryRunner
from bvisor.planner.planning import BoundaryPlanner
from bvisor.planner.registry import BackendRegistry

LOOP = r"""
import ctypes, sys, time
libc = ctypes.CDLL(None, use_errno=True)
mount = libc.mount
n = int(sys.argv[1])
start = time.perf_counter_ns()
for _ in range(n):
    mount(b"none", b"/mnt", b"tmpfs", 0, None)
print((time.perf_counter_ns() - start) / n)
"""


def _spec(calls: int, report: bool) -> BoundarySpec:
    claims = {EvidenceClaim.DENIED_ATTEMPTS} if report else set()
    return BoundarySpec(
        workload=ProcessWorkload("/usr/bin/python3", ("-c", LOOP, str(calls))),
        capabilities=(ChildSpawn(SpawnPolicy.DENY_NEW_TASKS), Environment(EnvPolicy.exact(()))),
        controls=(LaunchWorkload(), CaptureStreams(StdStreams.capture_out_err())),
        budgets=BudgetRequirements(),
        evidence=EvidenceRequirements.of(claims),
    )


def per_call_ns(calls: int, report: bool, runs: int) -> float:
    registry = BackendRegistry()
    registry.register(LinuxBackend.with_launcher_path(default_launcher_path()))
    plan = BoundaryPlanner(registry).plan(_spec(calls, report), "linux")
    samples = []
    for _ in range(runs):
        out = bytearray()
        sealed = BoundaryRunner(registry).run(plan, on_stdout=out.extend)
        if report:
            counted = sum(d.count for d in sealed.body.denied_attempts if d.syscall == "mount")
            assert counted == calls, f"the report counted {counted} of {calls} mounts"
        samples.append(float(out.decode()))
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    errno_ns = per_call_ns(args.calls, False, args.runs)
    notify_ns = per_call_ns(args.calls, True, args.runs)
    result = {
        "calls": args.calls,
        "runs": args.runs,
        "errno_ns_per_call": round(errno_ns, 1),
        "notified_ns_per_call": round(notify_ns, 1),
        "ratio": round(notify_ns / errno_ns, 1),
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"denied mount, answered in the kernel (errno): {errno_ns:10.0f} ns/call")
    print(f"denied mount, notified and reported:          {notify_ns:10.0f} ns/call")
    print(f"ratio notified / errno:                       {result['ratio']:10.1f}x")


if __name__ == "__main__":
    main()
