"""Runs recorded by the real runner (``bvisor.front.api.run_confined``) replay as ``verified``.

Each spec really runs under the Linux backend: a clean exit, a failure (exit 3), a
wall-clock timeout (the deadline kills the run tree), a memory budget kill (the kernel's
OOM killer inside the run cgroup), two runs the host denied before the launcher started
(no such executable, an unresolvable secret lease) and a refusal at admission. Then a host
killed with SIGKILL after ``plan.admitted`` leaves a run that replays as ``incomplete``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bvisor.contract import (
    Budget,
    EnvEntry,
    Environment,
    EnvPolicy,
    MinGuarantee,
    SecretLease,
)
from bvisor.front.api import run_confined
from bvisor.ledger import Ledger, verify
from bvisor.ledger.errors import LedgerNotFoundError
from bvisor.planner.errors import PlanRefusal
from bvisor.replay import INCOMPLETE, VERIFIED, RunAudit, audit
from tests.features import feature_missing, require_feature
from tests.replay.helpers import (
    Copied,
    backend,
    base_spec,
    descendants_spec,
    forge,
    refused_spec,
)

REPO = Path(__file__).resolve().parents[2]
ENFORCED = MinGuarantee.ENFORCED
MEMORY_HOG = "blocks = []\nwhile True:\n    blocks.append(b'x' * (4 << 20))\n"


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, bytes]]]:
    """One ledger holding every kind of real run; name -> run id."""
    path = tmp_path_factory.mktemp("real") / "ledger"
    runs: dict[str, bytes] = {}
    with Ledger.open(path, create=True) as ledger:

        def record(name: str, spec: object) -> None:
            report = run_confined(spec, ledger=ledger, backend=backend())  # type: ignore[arg-type]
            runs[name] = report.body.attempt_id

        record("completed", base_spec(["-c", "echo hello; echo oops >&2"]))
        record("failed", base_spec(["-c", "echo about to fail; exit 3"]))
        if feature_missing("cgroup2-kill") is None:
            wall = Budget(1_000_000, ENFORCED)
            record("timeout", descendants_spec(["-c", "sleep 20"], wall_micros=wall))
        if feature_missing("cgroup1-memory") is None and feature_missing("cgroup2-kill") is None:
            memory = Budget(64 << 20, ENFORCED)
            record(
                "killed",
                descendants_spec(["-c", MEMORY_HOG], exe=sys.executable, resident_bytes=memory),
            )
        # Denied by the host before the launcher ever started: nothing to exec, and a
        # secret lease nobody can resolve. Both must still replay, terminal "none".
        record("denied_exe", descendants_spec(["-c", "true"], exe="/nonexistent/tool"))
        leased = base_spec(["-c", "true"])
        leased = dataclasses.replace(
            leased,
            capabilities=tuple(
                Environment(
                    policy=EnvPolicy.exact(
                        (EnvEntry(name="TOKEN", value=SecretLease(ref="absent-ref")),)
                    )
                )
                if isinstance(c, Environment)
                else c
                for c in leased.capabilities
            ),
        )
        record("denied_lease", leased)
        with pytest.raises(PlanRefusal):
            run_confined(refused_spec(), ledger=ledger, backend=backend())
        runs["refused"] = ledger.runs()[-1].run_id
    yield path, runs


def _audit(path: Path) -> dict[bytes, RunAudit]:
    with Ledger.open(path, readonly=True) as ledger:
        return {run.run_id: run for run in audit(ledger).runs}


@pytest.mark.parametrize(
    ("name", "outcome", "feature"),
    [
        ("completed", "completed", None),
        ("failed", "failed", None),
        ("timeout", "timeout", "cgroup2-kill"),
        ("killed", "killed", "cgroup1-memory"),
        ("refused", "refused", None),
        ("denied_exe", "denied", None),
        ("denied_lease", "denied", None),
    ],
)
def test_real_runs_are_verified(
    recorded: tuple[Path, dict[str, bytes]], name: str, outcome: str, feature: str | None
) -> None:
    if feature is not None:
        require_feature(feature)
    path, runs = recorded
    run = _audit(path)[runs[name]]
    assert run.verdict == VERIFIED, [(c.name, c.detail) for c in run.failing()]
    assert run.outcome == outcome


def test_real_failed_run_with_altered_output_fails_streams(
    recorded: tuple[Path, dict[str, bytes]], tmp_path: Path
) -> None:
    path, runs = recorded
    target = runs["failed"]

    def alter(events: list[Copied]) -> None:
        for event in events:
            if (
                event.run_id == target
                and event.kind == "run.streams"
                and event.payload["stream"] == "stdout"
            ):
                event.payload["data"] = event.payload["data"].replace(b"fail", b"pass")

    with Ledger.open(path, readonly=True) as source:
        forged = forge(source, tmp_path / "forged", alter)
    try:
        assert verify(forged).ok
        run = next(r for r in audit(forged).runs if r.run_id == target)
    finally:
        forged.close()
    failing = {c.name for c in run.failing()}
    assert failing == {"streams"}, [(c.name, c.detail) for c in run.failing()]


HOST = """
import sys
from bvisor.front.api import run_confined
from tests.replay.helpers import backend, descendants_spec
spec = descendants_spec(["-c", "exec /bin/sleep " + sys.argv[2]])
run_confined(spec, ledger=sys.argv[1], backend=backend())
"""


def _phase_lines(path: Path) -> list[str]:
    if not (path / "data.mdb").exists():
        return []
    try:
        opened = Ledger.open(path, readonly=True)
    except LedgerNotFoundError:
        return []  # the host has created the file but not yet committed the ledger in it
    with opened as ledger:
        return [
            str(e.payload["line"])  # type: ignore[index,call-overload]
            for e in ledger.events()
            if e.kind == "launcher.phase"
        ]


def _pids_with(marker: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if marker.encode() in Path(f"/proc/{entry}/cmdline").read_bytes():
                    found.append(int(entry))
            except OSError:
                pass
    return found


def test_host_killed_mid_flight_leaves_an_incomplete_run(tmp_path: Path) -> None:
    require_feature("cgroup2-kill")
    path = tmp_path / "ledger"
    marker = f"30.{os.getpid()}{time.monotonic_ns() % 10**6}"  # a unique sleep argument
    host = subprocess.Popen(
        [sys.executable, "-c", HOST, str(path), marker], cwd=REPO, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 30

        # The workload is seen from outside (its marker in /proc), not from the ledger: the
        # launcher's lines are written with the report, after the run.
        def workload() -> list[int]:
            # The host carries the marker too, as its argument, and so does a child it is
            # spawning until that child execs: only the sleep itself counts.
            found = []
            for pid in _pids_with(marker):
                try:
                    argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
                except OSError:
                    continue
                if pid != host.pid and argv0.endswith(b"sleep"):
                    found.append(pid)
            return found

        while not workload() and time.monotonic() < deadline:
            assert host.poll() is None, "the host exited before the workload started"
            time.sleep(0.05)
        assert workload(), "the workload never started"
        assert _phase_lines(path) == [], "launcher lines were committed before the end"
        os.kill(host.pid, signal.SIGKILL)
        host.wait()
    finally:
        if host.poll() is None:
            os.kill(host.pid, signal.SIGKILL)
            host.wait()
        for pid in _pids_with(marker):  # the orphaned workload (ours: it carries our marker)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    with Ledger.open(path, readonly=True) as ledger:
        assert verify(ledger).ok
        (run,) = audit(ledger).runs
    assert run.verdict == INCOMPLETE, [(c.name, c.detail) for c in run.checks]
    assert {c.name for c in run.checks if c.ok} == {"chain", "h_p", "h_a", "h_l", "plan_id"}
    assert run.outcome is None
