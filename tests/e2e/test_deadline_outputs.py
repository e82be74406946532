"""The outputs walk after the workload exits stops at the wall deadline: the run is a timeout.

The workload writes 480 MiB into its temp root (and a 500 MiB file of holes into its write
root) and exits 0.7 s before an Enforced 3 s wall budget ends; listing and committing that
(SHA-256 and BLAKE3 over every byte, each temp-root file copied and fsync'd) takes the
launcher seconds more. Before the fix the walk had no deadline of
its own: the host's watchdog let it run until its drain grace (2 s past the deadline) and
then killed the launcher, so ``bvisor run`` exited more than 2 s late, the wall witness
said so, and the run was recorded as ``supervisor_fault`` ("not run") though the workload
ran and exited 0.

Oracles, from outside the workload and the launcher: the moment the workload started (a
file it writes into its write root, read by the test, on the realtime clock) against the
moment ``bvisor run`` exited; the exit status; the ledger's own record (outcome, wall
witness, facts) re-verified by replay; the host's artifact directory, read by the test,
against what the report claims; the digests of each listed file, recomputed from the bytes
the test knows the workload wrote. Run both through a resident launcher's fork (the
default, and what ``bvisor serve`` uses) and through a launcher started for the run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import blake3
import pytest

from bvisor.contract import Budget, CommitArtifact, Durability, ListOutputs, MinGuarantee
from bvisor.contract import outputs as g
from bvisor.front.defaults import default_spec
from bvisor.front.specfile import dump_spec_toml
from bvisor.ledger import Ledger
from bvisor.replay import VERIFIED, audit
from tests.features import require_feature

REPO = Path(__file__).resolve().parents[2]
LIMIT_S = 3.0
# The workload exits this long after its start: 0.7 s before the limit, less the time the
# host took from its own start of the wall clock to the workload's (about 0.15 s here).
EXIT_AT_S = LIMIT_S - 0.7
# How late the end may come on a loaded 2-core machine (the walk stops within a chunk of
# the deadline; the run's tmpfs is freed as the launcher exits). Before the fix: > 2 s.
MARGIN_S = 1.5
FILES = 4
FILE_MB = 120  # 480 MiB of the temp root's 512 MiB: copied, hashed and fsync'd
STAGED_BEFORE_STOP = 4 << 20  # the walk is under way once this much is in its staging tree


def _staged_bytes(artifacts: Path) -> int:
    """The bytes the walk has copied into its staging tree under ``artifacts`` so far."""
    total = 0
    for folder, _dirs, files in os.walk(artifacts):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(folder, name)).st_size
    return total


SPARSE_MB = 500  # a write-root file of holes: hashed (not copied) without disk I/O
TIMEOUT_EXIT = 124


@pytest.fixture(autouse=True)
def _needs_a_private_root() -> None:
    for feature in ("landlock", "pidns", "seccomp", "netns"):
        require_feature(feature)


def _spec_file(tmp_path: Path, work: Path) -> Path:
    """The default boundary, its temp root listed and committed (synced), a 3 s wall.

    The workload writes what takes the walk seconds (about 1 to 4 s here: 980 MiB to hash,
    480 MiB of it to copy and fsync) and exits :data:`EXIT_AT_S` after it started, well
    within the budget, so only the launcher's work after it can pass the deadline."""
    exit_ns = int(EXIT_AT_S * 1e9)
    script = (
        f"s=$(date +%s%N); echo $s > {work}/started; i=0; "
        f"while [ $i -lt {FILES} ]; do head -c {FILE_MB}M /dev/zero > /tmp/f$i; i=$((i+1)); done; "
        f"truncate -s {SPARSE_MB}M {work}/sparse; "
        f"left=$(( (s + {exit_ns} - $(date +%s%N)) / 1000000 )); "
        "if [ $left -gt 0 ]; then sleep $((left / 1000)).$(printf %03d $((left % 1000))); fi; "
        "exit 0"
    )
    spec = default_spec(["/bin/sh", "-c", script], cwd=str(work))
    spec = dataclasses.replace(
        spec,
        controls=(*spec.controls, ListOutputs(), CommitArtifact(Durability.SYNCED)),
        budgets=dataclasses.replace(
            spec.budgets, wall_micros=Budget(int(LIMIT_S * 1e6), MinGuarantee.ENFORCED)
        ),
    )
    path = tmp_path / "outputs.toml"
    path.write_text(dump_spec_toml(spec))
    return path


def _sealed_body(ledger: Path) -> dict[str, Any]:
    """The one run's sealed report body, once replay has verified the ledger."""
    with Ledger.open(ledger, readonly=True) as store:
        runs = audit(store).runs
        sealed = [e.payload for e in store.events() if e.kind == "report.sealed"]
    assert [run.verdict for run in runs] == [VERIFIED], [run.checks for run in runs]
    (payload,) = sealed
    body: dict[str, Any] = payload["body"]
    return body


def _facts(body: dict[str, Any], kind: str) -> list[str]:
    return [f["detail"] for f in body["observed"] if f["kind"] == kind]


def _listed(body: dict[str, Any]) -> list[g.OutputItem]:
    items = [g.parse_item(f"{g.LISTED} {detail}") for detail in _facts(body, g.LISTED)]
    return [item for item in items if item is not None]


def _run_cli(tmp_path: Path, work: Path, resident: str) -> subprocess.CompletedProcess[bytes]:
    """``bvisor run --spec`` as a caller types it (not served: the suite never is)."""
    command = [sys.executable, "-m", "bvisor.front.cli.main", "run"]
    command += ["--ledger", str(tmp_path / "ledger"), "--artifacts", str(tmp_path / "artifacts")]
    command += ["--spec", str(_spec_file(tmp_path, work))]
    return subprocess.run(
        command,
        capture_output=True,
        cwd=work,
        env={**os.environ, "PYTHONPATH": str(REPO), "BVISOR_RESIDENT": resident},
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def _check_the_cut(body: dict[str, Any], work: Path) -> str:
    """One ``deadline`` truncation; nothing listed past it; what was listed, intact.
    Returns the truncation's detail."""
    (stop,) = _facts(body, g.TRUNCATED)
    cut = g.parse_item(f"{g.TRUNCATED} {stop}")
    assert cut is not None and cut.get("limit") == g.DEADLINE, stop
    listed = _listed(body)
    write_root = g.escape_path(os.fsencode(work))
    roots = [item.get("root") for item in listed]
    assert set(roots) <= {"/tmp", write_root}, roots
    if cut.get("root") == "/tmp":  # the temp root is walked first: the write root not at all
        assert write_root not in roots, roots
    in_cut = [item.get("path") for item in listed if item.get("root") == cut.get("root")]
    assert all(path < cut.get("path") for path in in_cut), (stop, in_cut)
    zeros = bytes(FILE_MB << 20)  # what the workload wrote to each temp-root file
    digests = (hashlib.sha256(zeros).hexdigest(), blake3.blake3(zeros).hexdigest())
    for item in listed:
        if item.get("root") == "/tmp":
            assert (item.get("sha256"), item.get("blake3")) == digests, item
    return stop


def _check_nothing_committed(body: dict[str, Any], artifacts: Path) -> None:
    """All or nothing: the commit was abandoned and said so; no file of the run reached
    the artifact directory, not even its staging directory."""
    assert _facts(body, g.NOT_COMMITTED) == ["reason:listing-incomplete"]
    assert body["artifacts"] == [] and not _facts(body, g.COMMITTED)
    assert list(artifacts.iterdir()) == [], list(artifacts.iterdir())


@pytest.mark.parametrize("resident", ["1", "0"], ids=["resident-fork", "fresh-launcher"])
def test_the_outputs_walk_does_not_outrun_the_wall_budget(tmp_path: Path, resident: str) -> None:
    work = tmp_path / "work"
    work.mkdir()
    done = _run_cli(tmp_path, work, resident)
    ended_ns = time.time_ns()
    assert (work / "started").exists(), done.stderr  # the workload ran
    late = (ended_ns - int((work / "started").read_text())) / 1e9 - LIMIT_S
    # bvisor itself is done in time: from the workload's first instant to the host's exit.
    assert late < MARGIN_S, f"bvisor exited {late:.2f}s past the wall limit: {done.stderr!r}"
    assert done.returncode == TIMEOUT_EXIT, done.stderr
    body = _sealed_body(tmp_path / "ledger")
    assert body["outcome"] == "timeout", body["outcome"]
    assert body["exit"] == {"code": 0, "signal": None}  # the workload's own, real status
    (wall,) = [w for w in body["budget_witnesses"] if w["dimension"] == "wall_micros"]
    assert wall["exceeded"] and wall["observed"] < (LIMIT_S + MARGIN_S) * 1e6, wall
    stop = _check_the_cut(body, work)
    _check_nothing_committed(body, tmp_path / "artifacts")
    assert f"outputs truncated: {stop}".encode() in done.stderr, done.stderr


def _descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid``, read from the kernel's children lists."""
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            tids = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{parent}/task/{tid}/children") as file:
                    children = [int(c) for c in file.read().split()]
            except OSError:
                continue
            found += children
            todo += children
    return found


def _run_launcher_of(cli: int) -> int:
    """The run's launcher: the parent of the one descendant of ``cli`` that is a PID
    namespace's init (its innermost pid is 1)."""
    for pid in _descendants(cli):
        try:
            with open(f"/proc/{pid}/status") as file:
                status = dict(line.split(":", 1) for line in file if ":" in line)
        except OSError:
            continue
        if status.get("NSpid", "").split()[-1:] == ["1"]:
            return int(status["PPid"])
    raise AssertionError("no init among the command's descendants")


def _state(pid: int) -> str | None:
    """The process's state letter (``T``: stopped), None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as file:
            return file.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def test_a_walk_stuck_past_the_grace_is_a_timeout_with_the_real_status(tmp_path: Path) -> None:
    """An outputs walk that one step holds past the deadline and the host's grace (an
    fsync to a slow disk; here the test stops the launcher mid-walk, from outside) ends
    in the grace's kill of the launcher. Before the fix the launcher noted the workload's
    exit only after the walk, so the killed launcher had said nothing of it and the run
    was recorded as ``supervisor_fault`` ("not run"), though the workload ran and exited
    7. Now the exit is noted first: the run is a timeout with the real status, the
    listing incomplete and nothing committed, and replay verifies it.

    Oracles: the launcher's state in /proc (stopped by the test, killed by the host), the
    exit status of ``bvisor run``, the ledger's record re-verified by replay, the host's
    artifact directory."""
    work = tmp_path / "work"
    work.mkdir()
    script = (
        # Data, not zeros: a page of zeros is a hole in the copy, which costs nothing to
        # write or sync, so a walk of zeros could be over before the test stops it.
        f"s=$(date +%s%N); i=0; "
        f"while [ $i -lt {FILES} ]; do yes | head -c {FILE_MB}M > /tmp/f$i; i=$((i+1)); done; "
        f"touch {work}/exiting; exit 7"
    )
    spec = default_spec(["/bin/sh", "-c", script], cwd=str(work))
    spec = dataclasses.replace(
        spec,
        controls=(*spec.controls, ListOutputs(), CommitArtifact(Durability.SYNCED)),
        budgets=dataclasses.replace(
            spec.budgets, wall_micros=Budget(8_000_000, MinGuarantee.ENFORCED)
        ),
    )
    spec_path = tmp_path / "outputs.toml"
    spec_path.write_text(dump_spec_toml(spec))
    command = [sys.executable, "-m", "bvisor.front.cli.main", "run"]
    command += ["--ledger", str(tmp_path / "ledger"), "--artifacts", str(tmp_path / "artifacts")]
    command += ["--spec", str(spec_path)]
    cli = subprocess.Popen(
        command,
        cwd=work,
        env={**os.environ, "PYTHONPATH": str(REPO), "BVISOR_RESIDENT": "0"},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        launcher = None
        for _ in range(2000):
            if launcher is None:
                with contextlib.suppress(AssertionError):
                    launcher = _run_launcher_of(cli.pid)
            if (work / "exiting").exists():
                break
            time.sleep(0.01)
        assert launcher is not None and (work / "exiting").exists(), "the workload never ran"
        # Stopped once the walk is seen copying (a fixed wait let a fast walk of 480 MiB
        # finish first on an unloaded machine): the staged bytes are the sign.
        for _ in range(10_000):
            if _staged_bytes(tmp_path / "artifacts") >= STAGED_BEFORE_STOP:
                break
            time.sleep(0.001)
        os.kill(launcher, signal.SIGSTOP)
        for _ in range(200):
            if _state(launcher) == "T":
                break
            time.sleep(0.005)
        assert _state(launcher) == "T", f"the launcher is not stopped: {_state(launcher)}"
        _, stderr = cli.communicate(timeout=60)
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()
    assert _state(launcher) in (None, "Z"), "the host left its launcher stopped"
    assert cli.returncode == TIMEOUT_EXIT, stderr
    body = _sealed_body(tmp_path / "ledger")
    assert body["outcome"] == "timeout", (body["outcome"], _facts(body, "budget_exceeded"))
    assert body["exit"] == {"code": 7, "signal": None}  # the workload's own, real status
    (exceeded,) = _facts(body, "budget_exceeded")
    assert "killed when the grace ran out" in exceeded, exceeded
    _check_nothing_committed(body, tmp_path / "artifacts")
