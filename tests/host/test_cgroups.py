"""Run cgroups: created beneath our own cgroup only, limits really written, teardown total.

Oracles are the cgroupfs files themselves and the directory tree.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from bvisor.launcher.basement.cgroups import CgroupError, create_run_cgroup, own_cgroup_path
from tests.features import cgroup_v1_dir, cgroup_v2_dir, require_feature


def _name(tag: str) -> str:
    return f"bvisor-test-{tag}-{os.getpid()}"


def test_a_base_above_our_own_cgroup_is_refused_and_nothing_is_created() -> None:
    require_feature("cgroup1-memory")
    own = cgroup_v1_dir("memory")
    assert own is not None
    if own.parent.name == "cgroup":  # we sit at the hierarchy root: nothing is above us
        pytest.skip("LOUD SKIP: this process is in the root memory cgroup; no cgroup above it")
    parent = own.parent  # the memory cgroup *above* ours: the caller's accounting ends there
    name = _name("above")
    with pytest.raises(CgroupError, match="not beneath this process's own cgroup"):
        create_run_cgroup(
            name, None, {"memory": str(parent)}, memory_limit=64 << 20, memory_hierarchy="v1"
        )
    assert not (parent / name).exists()


def test_a_base_another_user_owns_is_never_used() -> None:
    """Root inside a cgroup another user owns (a delegated subtree): found by attack, that
    user removed the run's leaf before the workload was in it, made one of their own under
    its name and lifted its memory limit (an Enforced 64 MiB budget held 300 MiB). Such a
    base is refused at launch, nothing made in it, and the probe does not offer it. The
    oracles are the cgroupfs tree and the probe's facts from a process placed there."""
    import json
    import sys

    require_feature("cgroup1-memory")
    if os.geteuid() != 0:
        pytest.skip("LOUD SKIP: giving a cgroup to another user needs root")
    own = cgroup_v1_dir("memory")
    assert own is not None
    theirs = own / _name("theirs")
    theirs.mkdir()
    try:
        for path in (theirs, theirs / "cgroup.procs", theirs / "tasks"):
            os.chown(path, 65534, 65534)
        name = _name("foreign")
        with pytest.raises(CgroupError, match="another user could replace the run's leaf"):
            create_run_cgroup(
                name, None, {"memory": str(theirs)}, memory_limit=64 << 20, memory_hierarchy="v1"
            )
        assert not (theirs / name).exists()
        probe = subprocess.run(
            [sys.executable, "-c", "import os, sys; "
             f"open('{theirs}/cgroup.procs', 'w').write(str(os.getpid())); "
             "os.execv(sys.executable, [sys.executable, '-m', 'bvisor.front.cli.main', "
             "'probe', '--json'])"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert probe.returncode == 0, probe.stderr
        facts = json.loads(probe.stdout)["facts"]
        assert facts["cgroup"]["v1_bases"].get("memory") != str(theirs), facts["cgroup"]
        assert any("not using" in note and str(theirs) in note for note in facts["probe_notes"])
    finally:
        for leaf in theirs.iterdir():  # what a run made there (the previous code did)
            if leaf.is_dir():
                leaf.rmdir()
        theirs.rmdir()


def test_a_base_outside_any_cgroup_mount_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CgroupError, match="not inside a mounted"):
        create_run_cgroup(_name("tmp"), str(tmp_path), {})
    assert list(tmp_path.iterdir()) == []


def test_limits_are_written_and_teardown_removes_every_leaf() -> None:
    require_feature("cgroup2-kill")
    require_feature("cgroup1-pids")
    require_feature("cgroup1-memory")
    v2, pids, memory = cgroup_v2_dir(), cgroup_v1_dir("pids"), cgroup_v1_dir("memory")
    assert v2 is not None and pids is not None and memory is not None
    run = create_run_cgroup(
        _name("limits"),
        str(v2),
        {"pids": str(pids), "memory": str(memory)},
        pids_limit=5,
        pids_hierarchy="v1",
        memory_limit=(32 << 20) + 100,  # the kernel rounds down to a page: still accepted
        memory_hierarchy="v1",
    )
    try:
        assert (run.v1_leaves["pids"] / "pids.max").read_text().strip() == "5"
        limit = int((run.v1_leaves["memory"] / "memory.limit_in_bytes").read_text())
        assert (32 << 20) <= limit <= (32 << 20) + 100
        assert run.v2_leaf is not None and (run.v2_leaf / "cgroup.kill").exists()
    finally:
        problems = run.teardown()
    assert problems == []
    assert run.v2_leaf is not None and not run.v2_leaf.exists()
    assert not any(leaf.exists() for leaf in run.v1_leaves.values())


def test_teardown_kills_what_is_still_running_in_the_leaf() -> None:
    require_feature("cgroup2-kill")
    v2 = cgroup_v2_dir()
    assert v2 is not None
    run = create_run_cgroup(_name("kill"), str(v2), {})
    assert run.v2_leaf is not None
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        (run.v2_leaf / "cgroup.procs").write_text(str(sleeper.pid))
        assert run.procs() == [sleeper.pid]
        assert run.teardown() == []
        assert sleeper.wait(timeout=5) == -9  # SIGKILL from cgroup.kill
        assert not run.v2_leaf.exists()
    finally:
        if sleeper.poll() is None:
            sleeper.kill()


def test_a_failed_limit_removes_the_leaves_already_made() -> None:
    require_feature("cgroup2-kill")
    v2 = cgroup_v2_dir()
    assert v2 is not None
    name = _name("partial")
    with pytest.raises(CgroupError, match="no v1 pids leaf"):
        create_run_cgroup(name, str(v2), {}, pids_limit=4, pids_hierarchy="v1")
    assert not (v2 / name).exists()


def test_own_cgroup_path_matches_proc() -> None:
    line = next(
        entry
        for entry in Path("/proc/self/cgroup").read_text().splitlines()
        if entry.startswith("0::")
    )
    assert own_cgroup_path(None) == line[3:]
