"""A crashed host's leaf is reaped even when its creator's pid now belongs to someone else.

The oracle is cgroupfs and /proc: a leaf with a live task in it, named for a creator
whose pid is alive but whose start time is not the one recorded (what pid reuse looks
like), must be killed and removed by the next reaper pass; a leaf of a creator that is
really alive (same pid, same start time) must be left alone. Before the fix the reaper
judged creators by pid alone, so any process holding the number kept the leaf — and its
survivors — forever.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from bvisor.launcher.basement.cgroups import process_start_time, reap_stale_leaves
from tests.features import cgroup_v2_dir, require_feature


def _pidns() -> int:
    return os.stat("/proc/self/ns/pid").st_ino


def _leaf_with_task(base: Path, name: str) -> tuple[Path, subprocess.Popen[bytes]]:
    leaf = base / name
    leaf.mkdir()
    task = subprocess.Popen(["sleep", "120"])
    (leaf / "cgroup.procs").write_text(str(task.pid))
    return leaf, task


def _cleanup(leaf: Path, task: subprocess.Popen[bytes]) -> None:
    if task.poll() is None:
        task.kill()
        task.wait()
    for _ in range(200):
        try:
            leaf.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.01)


def test_a_reused_creator_pid_does_not_keep_a_stale_leaf() -> None:
    require_feature("cgroup2-kill")
    base = cgroup_v2_dir()
    assert base is not None
    own_start = process_start_time(os.getpid())
    assert own_start is not None
    # The creator "pid" is alive (it is this very process) but started at another tick:
    # the crashed host's number, handed on to someone else.
    name = f"bvisor-{_pidns()}-{os.getpid()}-t{own_start + 12345}-{os.urandom(8).hex()}"
    leaf, task = _leaf_with_task(base, name)
    try:
        lines = reap_stale_leaves([str(base)])
        assert any(name in line and "killed and removed" in line for line in lines), lines
        assert task.wait(timeout=10) == -9, "the survivor in the stale leaf must be killed"
        assert not leaf.exists()
    finally:
        _cleanup(leaf, task)


def test_a_live_creator_keeps_its_leaf() -> None:
    require_feature("cgroup2-kill")
    base = cgroup_v2_dir()
    assert base is not None
    start = process_start_time(os.getpid())
    name = f"bvisor-{_pidns()}-{os.getpid()}-t{start}-{os.urandom(8).hex()}"
    leaf, task = _leaf_with_task(base, name)
    try:
        lines = reap_stale_leaves([str(base)])
        assert not any(name in line for line in lines), lines
        assert task.poll() is None and leaf.exists()
    finally:
        _cleanup(leaf, task)


def test_start_time_is_read_past_a_hostile_command_name() -> None:
    """A process may name itself ``x) 1 2 3 (``; field 22 is still found after the last ')'."""
    code = (
        "import ctypes, sys, time; ctypes.CDLL(None).prctl(15, b'x) 1 2 3 (', 0, 0, 0); "
        "print('named', flush=True); time.sleep(30)"
    )
    task = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    try:
        assert task.stdout is not None and task.stdout.readline() == b"named\n"
        with open(f"/proc/{task.pid}/stat", encoding="ascii") as handle:
            raw = handle.read()
        assert "(x) 1 2 3 ()" in raw, raw
        expected = int(raw.rsplit(")", 1)[1].split()[19])
        assert process_start_time(task.pid) == expected
    finally:
        task.kill()
        task.wait()
