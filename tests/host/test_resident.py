"""The resident launcher, seen from outside: who it is, what it holds, how it ends.

Oracles are the kernel's own account (``/proc/<pid>/stat``, ``status``, ``fd``,
``/proc/net/unix``) and the run's transcript; nothing here trusts the resident's word
about itself beyond its hello, which the host checks against the process it started.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from bvisor.contract import BoundarySpec, FdsOnly, InheritedFds, Outcome
from bvisor.contract.report import SealedReport
from bvisor.launcher.host import resident
from bvisor.launcher.host.backend import LinuxBackend
from bvisor.launcher.host.locate import default_launcher_path
from bvisor.launcher.host.profile_cache import forget_profiles
from bvisor.launcher.host.runner import BoundaryRunner
from bvisor.launcher.wire import resident as wire
from bvisor.planner.planning import BoundaryPlanner
from bvisor.planner.registry import BackendRegistry
from tests.e2e.helpers import descendants_spec, find_pids_with, unique_marker, wait_for

_RESIDENT_NOTE = re.compile(
    r"identity measured once at the start of resident launcher pid=(\d+); "
    r"this run's launcher is its fork pid=(\d+)"
)


@pytest.fixture(autouse=True)
def fresh_residents(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv(resident.RESIDENT_ENV, "1")
    resident.stop_residents()
    yield
    resident.stop_residents()


class Run:
    """A sealed report and the launcher's lines (the ledger's ``launcher.phase`` lines)."""

    def __init__(self, report: SealedReport, lines: list[str]) -> None:
        self.body = report.body
        self.lines = lines


def _run(spec_args: list[str], backend: LinuxBackend | None = None) -> Run:
    chosen = backend or LinuxBackend()
    registry = BackendRegistry()
    registry.register(chosen)
    plan = BoundaryPlanner(registry).plan(descendants_spec(spec_args), chosen.id())
    lines: list[str] = []
    report = BoundaryRunner(registry).run(plan, on_phase=lambda _i, line: lines.append(line))
    return Run(report, lines)


def _notes(report: Run) -> list[str]:
    return report.lines


def _resident_of(report: Run) -> tuple[int, int]:
    for note in _notes(report):
        match = _RESIDENT_NOTE.search(note)
        if match:
            return int(match.group(1)), int(match.group(2))
    raise AssertionError(f"no resident note in {_notes(report)}")


def _ppid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _gone(pid: int) -> bool:
    try:
        return "State:\tZ" in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True


def test_runs_share_one_resident_and_each_run_has_its_own_launcher() -> None:
    first, second = _run(["-c", "true"]), _run(["-c", "true"])
    assert first.body.outcome is second.body.outcome is Outcome.COMPLETED
    (keeper, one), (keeper_again, two) = _resident_of(first), _resident_of(second)
    assert keeper == keeper_again and one != two
    # The kernel's view: the resident is this process's child, single-threaded, and lives on.
    assert _ppid(keeper) == os.getpid()
    status = Path(f"/proc/{keeper}/status").read_text()
    assert re.search(r"^Threads:\s+1$", status, re.M), status
    # Each report still attests the launcher: the host's digest of the file it started,
    # and the code and entry digests the resident measured, in the run's own transcript.
    for report in (first, second):
        facts = {f.kind: f.detail for f in report.body.observed}
        entry = next(n for n in _notes(report) if n.startswith("# identity code="))
        assert entry.endswith(f"entry={facts['launcher_identity']}"), (entry, facts)


def test_the_resident_holds_only_its_unnamed_socket_and_no_host_fd() -> None:
    leaked_r, leaked_w = os.pipe()  # inheritable on purpose: posix_spawn passes it on
    os.set_inheritable(leaked_r, True)
    os.set_inheritable(leaked_w, True)
    try:
        keeper, _ = _resident_of(_run(["-c", "true"]))
        # The run's reply socket and pidfd go right after the status is sent.
        wait_for(lambda: len(os.listdir(f"/proc/{keeper}/fd")) == 4, timeout=10)
        fds = {
            int(n): os.readlink(f"/proc/{keeper}/fd/{n}") for n in os.listdir(f"/proc/{keeper}/fd")
        }
    finally:
        os.close(leaked_r)
        os.close(leaked_w)
    assert sorted(fds) == [0, 1, 2, 3], fds
    assert {fds[0], fds[1], fds[2]} == {"/dev/null"}
    inode = re.fullmatch(r"socket:\[(\d+)\]", fds[3])
    assert inode, fds[3]
    # /proc/net/unix: the socket has no path — nothing in the filesystem leads to it. (It
    # may carry the abstract name the kernel autobinds for SO_PASSCRED; that name accepts
    # no connection, since the socket is one end of a connected pair, not a listener.)
    rows = [line.split() for line in Path("/proc/net/unix").read_text().splitlines()[1:]]
    row = next(r for r in rows if r[6] == inode.group(1))
    if len(row) == 8:
        name = row[7]
        assert name.startswith("@"), f"the resident's socket is bound to a path: {row}"
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with pytest.raises(ConnectionRefusedError):
            probe.connect(b"\0" + name[1:].encode())
        probe.close()


def test_a_resident_killed_between_runs_is_replaced() -> None:
    keeper, _ = _resident_of(_run(["-c", "true"]))
    os.kill(keeper, signal.SIGKILL)
    assert wait_for(lambda: _gone(keeper), timeout=10)
    report = _run(["-c", "true"])
    assert report.body.outcome is Outcome.COMPLETED
    assert _resident_of(report)[0] != keeper


def test_a_resident_killed_mid_run_ends_the_run_closed() -> None:
    marker = unique_marker("RESIDENT")
    reports: list[Run] = []
    worker = threading.Thread(target=lambda: reports.append(_run(["-c", f": {marker}; sleep 60"])))
    worker.start()
    try:
        assert wait_for(lambda: find_pids_with(marker, program="sh"), timeout=30)
        workload = find_pids_with(marker, program="sh")
        keepers = [r.pid for r in resident._residents.values()]
        assert keepers and all(_ppid(k) == os.getpid() for k in keepers), keepers
        for keeper in keepers:
            os.kill(keeper, signal.SIGKILL)
        worker.join(timeout=30)
        assert not worker.is_alive()
    finally:
        for pid in find_pids_with(marker):
            os.kill(pid, signal.SIGKILL)
    (report,) = reports
    # Not a completed run: the launcher's end was never reported, and the workload is gone.
    assert report.body.outcome is Outcome.SUPERVISOR_FAULT, report.body.outcome
    assert all(_gone(pid) for pid in workload)


def test_a_changed_launcher_file_gets_a_new_resident(tmp_path: Path) -> None:
    copy = tmp_path / "bvisor-linux-launcher"
    shutil.copy2(default_launcher_path(), copy)
    backend = LinuxBackend.with_launcher_path(copy)
    keeper, _ = _resident_of(_run(["-c", "true"], backend))
    copy.write_text(copy.read_text() + "\n# changed\n")
    forget_profiles()
    report = _run(["-c", "true"], backend)
    assert report.body.outcome is Outcome.COMPLETED
    assert _resident_of(report)[0] != keeper
    facts = {f.kind: f.detail for f in report.body.observed}
    entry = next(n for n in _notes(report) if n.startswith("# identity code="))
    assert entry.endswith(f"entry={facts['launcher_identity']}")


def test_malformed_requests_are_refused_and_the_resident_keeps_serving() -> None:
    path = default_launcher_path()
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        from bvisor.launcher.wire.identity import hash_fd

        keeper = resident.resident_for(fd, hash_fd(fd))
    finally:
        os.close(fd)
    null = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
    try:
        for message, extra in (
            (b"R" + b"\xff", 1),  # not CBOR
            (wire.encode_request(wire.Request([0, 3], 3, 3)), 2),  # plan and control alike
            (wire.encode_request(wire.Request([0, 3, 4], 3, 4)), 1),  # fewer fds than slots
            (b"Z", 0),  # no such message
        ):
            mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            socket.send_fds(keeper._sock, [message], [theirs.fileno(), *[null] * extra])
            theirs.close()
            mine.settimeout(10)
            answer = mine.recv(wire.MAX_MESSAGE)
            mine.close()
            assert answer[:1] == wire.REFUSED, (message, answer)
    finally:
        os.close(null)
    assert keeper.alive()
    report = _run(["-c", "true"])
    assert report.body.outcome is Outcome.COMPLETED
    assert _resident_of(report)[0] == keeper.pid


def test_the_resident_leaves_with_the_host_process(tmp_path: Path) -> None:
    host = textwrap.dedent(
        """
        import sys
        from bvisor.front.api import run_confined
        from tests.e2e.helpers import descendants_spec
        from bvisor.front.api import open_ledger
        store = open_ledger(sys.argv[1])
        report = run_confined(descendants_spec(["-c", "true"]), ledger=store)
        print(report.body.outcome.value)
        for event in store.events():
            if event.kind == "launcher.phase":
                print(event.payload["line"])
        """
    )
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, resident.RESIDENT_ENV: "1"}
    out = subprocess.run(
        [sys.executable, "-c", host, str(tmp_path / "ledger")],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    match = _RESIDENT_NOTE.search(out.stdout)
    assert match, out.stdout
    keeper = int(match.group(1))
    assert wait_for(lambda: _gone(keeper), timeout=10), "the resident outlived its host"


def test_without_residents_each_launcher_is_the_hosts_own_child(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(resident.RESIDENT_ENV, "0")
    report = _run(["-c", "true"])
    assert report.body.outcome is Outcome.COMPLETED
    assert not any(_RESIDENT_NOTE.search(n) for n in _notes(report))


def _spec_keeping(fd: int) -> BoundarySpec:
    spec = descendants_spec(["-c", "true"])
    kept = tuple(c for c in spec.capabilities if not isinstance(c, InheritedFds))
    return dataclasses.replace(spec, capabilities=(*kept, InheritedFds(FdsOnly((fd,)))))


def test_a_spec_cannot_hand_the_workload_a_resident_socket() -> None:
    _run(["-c", "true"])  # a resident is running, its start socket open in this process
    (keeper,) = resident._residents.values()
    target = keeper._sock.fileno()
    registry = BackendRegistry()
    backend = LinuxBackend()
    registry.register(backend)
    plan = BoundaryPlanner(registry).plan(_spec_keeping(target), backend.id())
    report = BoundaryRunner(registry).run(plan)
    assert report.body.outcome is Outcome.DENIED
    facts = {f.kind: f.detail for f in report.body.observed}
    assert "resident launcher socket" in facts["launch_refused_by_host"], facts


def test_the_resident_serves_no_process_but_the_host_and_its_forks(tmp_path: Path) -> None:
    _run(["-c", "true"])
    (keeper,) = resident._residents.values()
    # A grandchild of this process holding a copy of the start socket (as a workload would,
    # had the socket leaked): the kernel names it as the sender, and the resident refuses.
    sender = textwrap.dedent(
        """
        import os, socket, sys
        start = socket.socket(fileno=int(sys.argv[1]))
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        null = os.open("/dev/null", os.O_RDONLY)
        from bvisor.launcher.wire import resident as wire
        request = wire.encode_request(wire.Request([0, 3, 4], 3, 4))
        socket.send_fds(start, [request], [theirs.fileno(), null, null, null])
        mine.settimeout(10)
        print(mine.recv(4096).decode("utf-8", "replace"))
        """
    )
    copy = os.dup(keeper._sock.fileno())
    try:
        out = subprocess.run(
            ["sh", "-c", f'"{sys.executable}" -c "$0" {copy}; true', sender],
            pass_fds=[copy],
            cwd=Path(__file__).resolve().parents[2],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        os.close(copy)
    assert out.stdout.startswith("N") and "not by the host" in out.stdout, (out.stdout, out.stderr)
    assert keeper.alive()
