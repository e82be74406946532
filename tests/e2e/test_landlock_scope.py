"""Landlock ABI 6 scopes, and the PID namespace: the workload cannot signal processes
outside its boundary nor connect to abstract UNIX sockets made outside it.

Two layers hold the signal: the PID namespace (a host process is not even visible) and
Landlock's signal scope (refused even when visible). Each is shown holding on its own,
and each lie (skipping it with the other one off too) turns the oracle red.

Oracles are on the host side: a host process that must stay alive, and a host listening
socket that must see no connection.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from bvisor.contract import (
    BoundarySpec,
    BudgetRequirements,
    CaptureStreams,
    EvidenceRequirements,
    Filesystem,
    FsAccess,
    LaunchWorkload,
    Outcome,
    ProcessWorkload,
    StdStreams,
)
from bvisor.launcher.host.backend import LinuxBackend
from bvisor.launcher.host.locate import default_launcher_path
from bvisor.launcher.host.runner import BoundaryRunner
from bvisor.planner.planning import BoundaryPlanner
from bvisor.planner.registry import BackendRegistry
from tests.features import require_feature

PROBE = """
import os, socket, sys
victim, address = int(sys.argv[1]), sys.argv[2]
try:
    os.kill(victim, 0)
    print("signal=DELIVERED")
except PermissionError:
    print("signal=REFUSED")
except ProcessLookupError:
    print("signal=INVISIBLE")
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    s.connect("\\0" + address)
    print("abstract=CONNECTED")
except OSError:
    print("abstract=REFUSED")
os.kill(os.getpid(), 0)
print("self=OK")
"""


def _spec(workdir: Path, victim: int, address: str) -> BoundarySpec:
    return BoundarySpec(
        workload=ProcessWorkload(exe=sys.executable, args=("-c", PROBE, str(victim), address)),
        capabilities=(Filesystem(access=FsAccess.READ_WRITE, roots=(str(workdir),)),),
        controls=(LaunchWorkload(), CaptureStreams(streams=StdStreams.capture_out_err())),
        budgets=BudgetRequirements.none(),
        evidence=EvidenceRequirements(),
    )


def _run(tmp_path: Path, hooks: frozenset[str], *, filesystem: bool = True) -> tuple[str, object]:
    victim = subprocess.Popen(["sleep", "60"])
    address = f"bvisor-scope-{os.getpid()}-{len(hooks)}"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind("\0" + address)
    listener.listen(1)
    listener.settimeout(0.2)
    try:
        backend = LinuxBackend.dangerous_with_test_hooks(default_launcher_path(), hooks)
        registry = BackendRegistry()
        registry.register(backend)
        # The interpreter lives outside the admitted root: grant its prefix read-only too.
        spec = _spec(tmp_path, victim.pid, address)
        spec = _with_python(spec) if filesystem else _without_filesystem(spec)
        plan = BoundaryPlanner(registry).plan(spec, "linux")
        captured = bytearray()
        report = BoundaryRunner(registry).run(plan, on_stdout=captured.extend)
        try:
            connection, _ = listener.accept()
            connection.close()
            accepted = "accepted"
        except TimeoutError:
            accepted = "none"
        assert victim.poll() is None, "the host process must still be alive"
        return captured.decode() + f"host_accept={accepted}\n", report
    finally:
        listener.close()
        victim.kill()
        victim.wait()


def _without_filesystem(spec: BoundarySpec) -> BoundarySpec:
    return BoundarySpec(
        workload=spec.workload,
        capabilities=tuple(c for c in spec.capabilities if not isinstance(c, Filesystem)),
        controls=spec.controls,
        budgets=spec.budgets,
        evidence=spec.evidence,
    )


def _with_python(spec: BoundarySpec) -> BoundarySpec:
    prefix = Path(sys.base_prefix).resolve()
    extra = [str(prefix)]
    venv = Path(sys.prefix).resolve()
    if venv != prefix:
        extra.append(str(venv))
    read = Filesystem(access=FsAccess.READ, roots=tuple(sorted(extra)))
    return BoundarySpec(
        workload=spec.workload,
        capabilities=(*spec.capabilities, read),
        controls=spec.controls,
        budgets=spec.budgets,
        evidence=spec.evidence,
    )


ALONE = frozenset({"skip_pidns", "skip_rootfs"})  # Landlock without the namespaces


def test_the_workload_cannot_signal_or_reach_outside_its_domain(tmp_path: Path) -> None:
    require_feature("landlock")
    output, report = _run(tmp_path, frozenset())
    assert report.body.outcome is Outcome.COMPLETED, report.body.observed  # type: ignore[attr-defined]
    assert output.split() == [
        "signal=INVISIBLE",
        "abstract=REFUSED",
        "self=OK",
        "host_accept=none",
    ], output


def test_landlock_alone_refuses_the_signal_and_the_socket(tmp_path: Path) -> None:
    require_feature("landlock")
    output, report = _run(tmp_path, ALONE)
    assert report.body.outcome is Outcome.COMPLETED, report.body.observed  # type: ignore[attr-defined]
    assert output.split()[:2] == ["signal=REFUSED", "abstract=REFUSED"], output


def test_skipping_landlock_turns_the_signal_oracle_red(tmp_path: Path) -> None:
    require_feature("landlock")
    output, _ = _run(tmp_path, ALONE | {"skip_landlock"})
    assert "signal=DELIVERED" in output and "abstract=CONNECTED" in output, output


def test_without_a_filesystem_capability_a_scope_only_domain_still_applies(
    tmp_path: Path,
) -> None:
    require_feature("landlock")
    output, report = _run(tmp_path, frozenset({"skip_pidns"}), filesystem=False)
    assert report.body.outcome is Outcome.COMPLETED, report.body.observed  # type: ignore[attr-defined]
    assert output.split() == [
        "signal=REFUSED",
        "abstract=REFUSED",
        "self=OK",
        "host_accept=none",
    ], output
    notes = [f.detail for f in report.body.observed if f.kind == "launcher_note"]  # type: ignore[attr-defined]
    assert any("handled=0x0 scoped=0x3" in note for note in notes), notes


def test_skipping_the_scope_only_domain_turns_the_oracle_red(tmp_path: Path) -> None:
    require_feature("landlock")
    output, _ = _run(tmp_path, frozenset({"skip_landlock", "skip_pidns"}), filesystem=False)
    assert "signal=DELIVERED" in output, output


def test_the_pid_namespace_alone_hides_the_host_process(tmp_path: Path) -> None:
    """The namespace is a layer of its own: with Landlock skipped it still holds the
    signal (the victim does not exist for the workload) — and skipping it too (above)
    turns the oracle red."""
    require_feature("landlock")
    output, _ = _run(tmp_path, frozenset({"skip_landlock"}), filesystem=False)
    assert "signal=INVISIBLE" in output and "abstract=CONNECTED" in output, output
