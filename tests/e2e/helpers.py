"""Shared builders for end-to-end tests: specs in the seed's shape, and a runner."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from bvisor.contract import (
    BoundarySpec,
    Budget,
    BudgetRequirements,
    CaptureStreams,
    ChildSpawn,
    Environment,
    EnvPolicy,
    EvidenceRequirements,
    Kill,
    KillGuarantee,
    KillTarget,
    LaunchWorkload,
    MinGuarantee,
    ProcessWorkload,
    SpawnPolicy,
    StdStreams,
)
from bvisor.contract.report import SealedReport
from bvisor.launcher.host.backend import LinuxBackend
from bvisor.launcher.host.locate import default_launcher_path
from bvisor.launcher.host.runner import BoundaryRunner
from bvisor.planner.errors import PlanRefusal
from bvisor.planner.planning import BoundaryPlanner
from bvisor.planner.registry import BackendRegistry


def spawn_spec(policy: SpawnPolicy, args: Sequence[str], exe: str = "/bin/sh") -> BoundarySpec:
    """The seed's spawn_spec: child-spawn policy, empty exact env, capture out/err."""
    return BoundarySpec(
        workload=ProcessWorkload(exe=exe, args=tuple(args)),
        capabilities=(ChildSpawn(policy=policy), Environment(policy=EnvPolicy.exact(()))),
        controls=(LaunchWorkload(), CaptureStreams(streams=StdStreams.capture_out_err())),
        budgets=BudgetRequirements.uniform(8, MinGuarantee.MEDIATED),
        evidence=EvidenceRequirements(),
    )


def descendants_spec(args: Sequence[str], exe: str = "/bin/sh") -> BoundarySpec:
    spec = spawn_spec(SpawnPolicy.ALLOW_DESCENDANTS_WITHIN_BOUNDARY, args, exe)
    return with_controls(spec, Kill(target=KillTarget.RUN_TREE, guarantee=KillGuarantee.ATOMIC))


def with_controls(spec: BoundarySpec, *controls: object) -> BoundarySpec:
    return BoundarySpec(
        workload=spec.workload,
        capabilities=spec.capabilities,
        controls=(*spec.controls, *controls),  # type: ignore[arg-type]
        budgets=spec.budgets,
        evidence=spec.evidence,
    )


def with_budgets(spec: BoundarySpec, **budgets: Budget) -> BoundarySpec:
    return BoundarySpec(
        workload=spec.workload,
        capabilities=spec.capabilities,
        controls=spec.controls,
        budgets=BudgetRequirements(**budgets),
        evidence=spec.evidence,
    )


def run_execute(spec: BoundarySpec, sink: object = None, **kwargs: object) -> SealedReport | None:
    """The seed's run_execute: None when admission refuses, else the sealed report."""
    backend = LinuxBackend.with_launcher_path(default_launcher_path())
    registry = BackendRegistry()
    registry.register(backend)
    try:
        plan = BoundaryPlanner(registry).plan(spec, backend.id())
    except PlanRefusal:
        return None
    return BoundaryRunner(registry, sink=sink).run(plan, **kwargs)  # type: ignore[arg-type]


def fact_kinds(report: SealedReport) -> list[str]:
    return [fact.kind for fact in report.body.observed]


def find_pids_with(marker: str, program: str | None = None) -> list[int]:
    """Pids whose cmdline contains ``marker`` (and whose argv[0] is named ``program``)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() not in cmdline:
            continue
        if program is not None and os.path.basename(cmdline.split(b"\0")[0]) != program.encode():
            continue
        pids.append(int(entry))
    return pids


def wait_for(predicate: Callable[[], object], timeout: float = 10.0) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.01)
    return None


def marked_sleep(marker: str, seconds: int) -> str:
    """A shell command whose process carries ``marker`` in its cmdline while it sleeps."""
    return f"sh -c 'sleep {seconds}; :' {marker}"


def unique_marker(tag: str) -> str:
    return f"BVISOR-{tag}-{os.getpid()}-{time.monotonic_ns()}"


def ledger_runs_json(ledger: Path) -> str:
    """``bvisor-ledger --json runs`` of ``ledger``: the runs as the ledger itself lists them."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bvisor.front.cli.ledger_cmd",
            "--ledger",
            str(ledger),
            "--json",
            "runs",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],  # the checkout: its package is the one tested
    )
    return done.stdout
