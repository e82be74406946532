"""Denied attempts, end to end: what the workload was refused is in the sealed report.

Oracles from outside the report: the workload itself prints what it tried and the errno
each call answered (it chose the calls, their number and their flags), and the host sees
its pid; the report must list exactly those calls, counted exactly, answered as the
workload saw, and replay must re-derive the same entries from the ledger. The planted
lie (``skip_denial_notify``: plain EPERM, no listener, notes unchanged) leaves the
workload refused but the report silent, and the oracle turns red. A flood stays bounded,
the pid list is capped, and a seccomp kill is a kill entry.

The calls are ones no libc makes on its own (mount, keyctl, unshare with a namespace
flag, seccomp), so the workload's own count is the whole truth.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

import pytest

from bvisor import replay
from bvisor.contract import (
    BoundarySpec,
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
    Network,
    NetworkDenyAll,
    ProcessWorkload,
    SpawnPolicy,
    StdStreams,
)
from bvisor.contract.denials import DENIAL_FINDING, MAX_PIDS
from bvisor.contract.evidence import EvidenceClaim
from bvisor.contract.report import SealedReport
from bvisor.launcher.host.backend import LinuxBackend
from bvisor.launcher.host.locate import default_launcher_path
from bvisor.launcher.host.runner import BoundaryRunner
from bvisor.ledger import Ledger
from bvisor.planner.planning import BoundaryPlanner
from bvisor.planner.registry import BackendRegistry
from tests.features import require_feature

PYTHON = "/usr/bin/python3"
CLONE_NEWNET = 0x40000000
# x86_64 numbers, checked only there (the report says the arch it is for).
X86_64 = {"mount": 165, "keyctl": 250, "unshare": 272, "seccomp": 317}

PRELUDE = r"""
import ctypes, errno, json, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
seen = {}
# The workload's pid as the host sees it: without a private root its /proc is the host's,
# whose /proc/self names the reader in the host's PID namespace.
host_pid = int(os.readlink("/proc/self"))
def call(name, fn):
    ctypes.set_errno(0)
    rc = fn()
    answer = errno.errorcode.get(ctypes.get_errno(), "?") if rc < 0 else "OK"
    seen.setdefault(name, []).append(answer)
"""

TRIES = (
    PRELUDE
    + r"""
for _ in range(5):
    call("mount", lambda: libc.mount(b"none", b"/mnt", b"tmpfs", 0, None))
for _ in range(3):
    call("keyctl", lambda: libc.syscall(250, 0, 0, 0, 0, 0))  # KEYCTL_GET_KEYRING_ID
for _ in range(2):
    call("unshare", lambda: libc.unshare(0x40000000))  # CLONE_NEWNET
call("seccomp", lambda: libc.syscall(317, 1, 0, None))  # a filter of its own
fds = {}
for fd in os.listdir("/proc/self/fd"):
    try:
        fds[fd] = os.readlink(f"/proc/self/fd/{fd}")
    except FileNotFoundError:  # the directory listing's own fd, closed by now
        pass
print(json.dumps({"pid": host_pid, "seen": seen, "fds": fds}))
"""
)

FLOOD = (
    PRELUDE
    + r"""
n = int(sys.argv[1])
mount = libc.mount
refused = sum(1 for _ in range(n) if mount(b"none", b"/mnt", b"tmpfs", 0, None) < 0)
print(json.dumps({"pid": host_pid, "refused": refused}))
"""
)

CHILDREN = (
    PRELUDE
    + r"""
n = int(sys.argv[1])
pids = []
for _ in range(n):
    pid = os.fork()
    if pid == 0:
        libc.mount(b"none", b"/mnt", b"tmpfs", 0, None)
        os._exit(0 if ctypes.get_errno() == errno.EPERM else 1)
    pids.append(pid)
codes = [os.waitpid(p, 0)[1] for p in pids]
print(json.dumps({"pids": pids, "codes": codes}))
"""
)

# clone(CLONE_VM) alone: neither a thread nor a vfork; under threads-only it kills.
ODD_CLONE = r"""
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
libc.syscall(56, ctypes.c_ulong(0x100 | 17), 0, 0, 0, 0)
print("survived")
"""


def _spec(
    code: str,
    *args: str,
    policy: SpawnPolicy = SpawnPolicy.DENY_NEW_TASKS,
    evidence: frozenset[EvidenceClaim] = frozenset({EvidenceClaim.DENIED_ATTEMPTS}),
) -> BoundarySpec:
    controls: tuple[Any, ...] = (LaunchWorkload(), CaptureStreams(StdStreams.capture_out_err()))
    if policy is SpawnPolicy.ALLOW_DESCENDANTS_WITHIN_BOUNDARY:
        controls += (Kill(KillTarget.RUN_TREE, KillGuarantee.ATOMIC),)
    return BoundarySpec(
        workload=ProcessWorkload(PYTHON, ("-c", code, *args)),
        capabilities=(
            ChildSpawn(policy),
            Network(NetworkDenyAll()),
            Environment(EnvPolicy.exact(())),
        ),
        controls=controls,
        budgets=BudgetRequirements(),
        evidence=EvidenceRequirements.of(evidence),
    )


def _run(
    spec: BoundarySpec, ledger_dir: Path | None = None, hooks: frozenset[str] = frozenset()
) -> tuple[SealedReport, str, replay.RunAudit | None]:
    require_feature("seccomp")
    backend = LinuxBackend.dangerous_with_test_hooks(default_launcher_path(), hooks)
    registry = BackendRegistry()
    registry.register(backend)
    plan = BoundaryPlanner(registry).plan(spec, "linux")
    out = bytearray()
    if ledger_dir is None:
        report = BoundaryRunner(registry).run(plan, on_stdout=out.extend)
        return report, out.decode(), None
    with Ledger.open(ledger_dir, create=True) as store:
        report = BoundaryRunner(registry, sink=store).run(plan, on_stdout=out.extend)
        audit = replay.audit(store)
        events = [e for e in store.events() if e.kind == "run.denied"]
    assert len(audit.runs) == 1
    assert [e.payload["attempt"] for e in events] == [
        d.to_value() for d in report.body.denied_attempts
    ]
    return report, out.decode(), audit.runs[0]


def _by_syscall(report: SealedReport) -> dict[str | None, Any]:
    return {entry.syscall: entry for entry in report.body.denied_attempts}


def _matches(report: SealedReport, seen: dict[str, list[str]], pid: int) -> list[str]:
    """How the report disagrees with what the workload saw (empty: it agrees)."""
    problems = []
    entries = _by_syscall(report)
    for name, answers in seen.items():
        entry = entries.get(name)
        if entry is None:
            problems.append(f"{name}: the workload was refused {answers}, the report lists none")
            continue
        if (entry.count, entry.answer, entry.pids) != (len(answers), answers[0], (pid,)):
            problems.append(f"{name}: report {entry}, workload {answers} pid {pid}")
    return problems


def test_each_denied_call_is_in_the_report_as_the_workload_saw_it(tmp_path: Path) -> None:
    report, out, audit = _run(_spec(TRIES), tmp_path / "ledger")
    told = json.loads(out)
    seen, pid = told["seen"], told["pid"]
    assert seen == {
        "mount": ["EPERM"] * 5,
        "keyctl": ["EPERM"] * 3,
        "unshare": ["EPERM"] * 2,
        "seccomp": ["EPERM"],
    }
    assert _matches(report, seen, pid) == []
    # Neither the filter's listener nor the socket it was handed over on reached the
    # workload: it could answer its own notifications with either.
    leaked = [
        target for target in told["fds"].values() if "seccomp" in target or "socket:" in target
    ]
    assert leaked == [], told["fds"]
    entries = _by_syscall(report)
    for name in seen:
        entry = entries[name]
        assert (entry.mechanism, entry.arch, entry.tallied) == (
            "seccomp",
            platform.machine(),
            True,
        )
        if entry.arch == "x86_64":
            assert entry.number == X86_64[name]
    assert entries["unshare"].args[0] == CLONE_NEWNET  # the register the workload set
    assert not [f for f in report.body.findings if f.startswith(DENIAL_FINDING)]
    assert audit is not None and audit.verdict == replay.VERIFIED, audit.to_json()


def test_the_planted_lie_turns_the_oracle_red_and_marks_the_report() -> None:
    report, out, _ = _run(_spec(TRIES), hooks=frozenset({"skip_denial_notify"}))
    told = json.loads(out)
    assert told["seen"]["mount"] == ["EPERM"] * 5, "the boundary still refused the calls"
    assert _matches(report, told["seen"], told["pid"]) != [], "the oracle stayed green"
    facts = {(f.kind, f.detail) for f in report.body.observed}
    assert ("test_hook_active", "skip_denial_notify") in facts


def test_a_run_that_did_not_ask_reports_no_denials() -> None:
    report, out, _ = _run(_spec(TRIES, evidence=frozenset()))
    assert json.loads(out)["seen"]["mount"] == ["EPERM"] * 5
    assert report.body.denied_attempts == ()


def test_a_flood_of_denied_calls_is_counted_exactly_and_stays_bounded(tmp_path: Path) -> None:
    flood = 20_000
    report, out, audit = _run(_spec(FLOOD, str(flood)), tmp_path / "ledger")
    told = json.loads(out)
    assert told["refused"] == flood
    entry = _by_syscall(report)["mount"]
    assert (entry.count, entry.pids, entry.tallied) == (flood, (told["pid"],), True)
    notes = [f.detail for f in report.body.observed if f.kind == "launcher_note"]
    assert len([n for n in notes if n.startswith("denied ")]) <= 2 * len(
        report.body.denied_attempts
    )
    assert audit is not None and audit.verdict == replay.VERIFIED, audit.to_json()


def test_the_pids_of_a_kind_are_capped_and_say_so() -> None:
    require_feature("pidns")
    children = MAX_PIDS + 4
    report, out, _ = _run(
        _spec(CHILDREN, str(children), policy=SpawnPolicy.ALLOW_DESCENDANTS_WITHIN_BOUNDARY)
    )
    told = json.loads(out)
    assert told["codes"] == [0] * children, "every child was refused with EPERM"
    entry = _by_syscall(report)["mount"]
    assert entry.count == children
    # Host-visible pids (the children's own are their namespace's): distinct, capped.
    assert len(set(entry.pids)) == MAX_PIDS and entry.pids_complete is False


def test_a_seccomp_kill_is_a_kill_entry(tmp_path: Path) -> None:
    report, out, audit = _run(
        _spec(ODD_CLONE, policy=SpawnPolicy.ALLOW_THREADS_WITHIN_BOUNDARY), tmp_path / "ledger"
    )
    assert "survived" not in out
    assert report.body.exit is not None and report.body.exit.signal == 31
    (kill,) = [e for e in report.body.denied_attempts if e.answer == "SIGSYS"]
    assert (kill.syscall, kill.number, kill.count) == (None, None, 1)
    assert audit is not None and audit.verdict == replay.VERIFIED, audit.to_json()


def test_a_filesystem_boundary_with_denied_attempts_is_refused() -> None:
    from bvisor.contract import Filesystem, FsAccess
    from bvisor.planner.errors import PlanRefusal

    spec = _spec(TRIES)
    spec = BoundarySpec(
        workload=spec.workload,
        capabilities=(*spec.capabilities, Filesystem(FsAccess.READ, ("/usr",))),
        controls=spec.controls,
        budgets=spec.budgets,
        evidence=spec.evidence,
    )
    backend = LinuxBackend.with_launcher_path(default_launcher_path())
    registry = BackendRegistry()
    registry.register(backend)
    with pytest.raises(PlanRefusal) as caught:
        BoundaryPlanner(registry).plan(spec, "linux")
    assert caught.value.requirement == "evidence:denied_attempts:filesystem"
