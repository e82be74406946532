"""The private root, the PID namespace and its init, /dev, /proc, /tmp, exposed paths, and
the atomic kill without a cgroup — each seen from outside the workload, each with the
planted lie (its mechanism skipped, the run still reporting it) that turns it red.

Oracles are the host's view of the running workload: ``/proc/<pid>/root`` (the workload's
root, as the kernel resolves it for the host), ``/proc/<pid>/status`` (``NSpid``),
``/proc/<pid>/mountinfo``, files on the host's disk, and host processes that must be gone.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bvisor.contract import (
    BoundarySpec,
    ExposePath,
    FsAccess,
    Outcome,
    ProcessWorkload,
)
from bvisor.contract.report import SealedReport
from bvisor.front.defaults import default_spec
from bvisor.launcher.host.backend import LinuxBackend
from bvisor.launcher.host.locate import default_launcher_path
from bvisor.launcher.host.runner import BoundaryRunner
from bvisor.planner.planning import BoundaryPlanner
from bvisor.planner.registry import BackendRegistry
from tests.e2e.helpers import descendants_spec, find_pids_with, unique_marker, wait_for
from tests.features import require_feature

SYSTEM = {"usr", "lib", "lib64", "bin", "sbin", "etc"}
DEVICES = {"full", "null", "random", "urandom", "zero", "fd", "stdin", "stdout", "stderr", "shm"}


def _spec(workdir: Path, script: str) -> BoundarySpec:
    spec = default_spec(["/bin/sh", "-c", script], cwd=str(workdir))
    return spec


def _run(
    spec: BoundarySpec,
    marker: str,
    look: Callable[[int], dict[str, Any]],
    hooks: frozenset[str] = frozenset(),
) -> tuple[dict[str, Any], SealedReport]:
    """Run ``spec``; while its marked shell lives, let the host ``look`` at it by pid."""
    backend = LinuxBackend.dangerous_with_test_hooks(default_launcher_path(), hooks)
    registry = BackendRegistry()
    registry.register(backend)
    plan = BoundaryPlanner(registry).plan(spec, "linux")
    seen: dict[str, Any] = {}

    def watch() -> None:
        pids = wait_for(lambda: find_pids_with(f": {marker};", program="sh"), timeout=20)
        if pids:
            seen.update(look(pids[0]))  # type: ignore[index]

    watcher = threading.Thread(target=watch)
    watcher.start()
    report = BoundaryRunner(registry).run(plan)
    watcher.join()
    return seen, report


def _root_listing(pid: int) -> dict[str, Any]:
    return {
        "root": set(os.listdir(f"/proc/{pid}/root")),
        "dev": set(os.listdir(f"/proc/{pid}/root/dev")),
        "nspid": _status(pid, "NSpid").split(),
        "ppid_nspid": _status(int(_status(pid, "PPid")), "NSpid").split(),
        "mounts": Path(f"/proc/{pid}/mountinfo").read_text(),
    }


def _status(pid: int, name: str) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no {name} in /proc/{pid}/status")


def _require() -> None:
    for feature in ("landlock", "userns", "pidns"):
        require_feature(feature)


def test_the_root_holds_only_what_was_granted(work: Path) -> None:
    _require()
    marker = unique_marker("ROOT")
    seen, report = _run(_spec(work, f": {marker}; sleep 1"), marker, _root_listing)
    assert report.body.outcome is Outcome.COMPLETED, report.body.observed
    top = work.parts[1]  # the working directory's first component is made to reach it
    present = {name for name in SYSTEM if os.path.lexists(f"/{name}")}
    assert seen["root"] == present | {"dev", "proc", "tmp", top}, seen["root"]
    assert seen["dev"] == DEVICES, seen["dev"]
    assert set(os.listdir("/")) - seen["root"], "the host's root must hold more than that"


def test_skipping_the_private_root_turns_the_root_oracle_red(work: Path) -> None:
    _require()
    marker = unique_marker("NOROOT")
    seen, _ = _run(
        _spec(work, f": {marker}; sleep 1"), marker, _root_listing, frozenset({"skip_rootfs"})
    )
    assert seen["root"] == set(os.listdir("/")), "the lie must show the host's own root"
    assert len(seen["dev"]) > len(DEVICES)


def test_the_workload_is_pid_2_under_a_c_init(work: Path) -> None:
    _require()
    marker = unique_marker("PIDNS")
    seen, _ = _run(_spec(work, f": {marker}; sleep 1"), marker, _root_listing)
    # NSpid: the pid in each namespace from the host's down; the workload's innermost is 2.
    assert len(seen["nspid"]) == 2 and seen["nspid"][-1] == "2", seen["nspid"]
    assert seen["ppid_nspid"][-1] == "1", "its parent is the namespace's init, pid 1"
    proc_lines = [line for line in seen["mounts"].splitlines() if " /proc " in line]
    assert proc_lines and " - proc " in proc_lines[0], proc_lines
    tmp_lines = [line for line in seen["mounts"].splitlines() if " /tmp " in line]
    assert tmp_lines and " - tmpfs " in tmp_lines[0], tmp_lines


def test_skipping_the_pid_namespace_turns_its_oracle_red(work: Path) -> None:
    _require()
    marker = unique_marker("NOPIDNS")
    # A private root needs the namespace's init for its /proc: the lie skips both.
    seen, _ = _run(
        _spec(work, f": {marker}; sleep 1"),
        marker,
        _root_listing,
        frozenset({"skip_pidns", "skip_rootfs"}),
    )
    assert len(seen["nspid"]) == 1, seen["nspid"]


def test_the_workload_sees_only_its_own_processes(work: Path) -> None:
    _require()
    result = _cli_like(work, "ls /proc | grep -E '^[0-9]+$' | sort -n | tr '\\n' ' '")
    pids = [int(p) for p in result.split()]
    assert pids and max(pids) < 50 and 1 in pids, result
    assert len(pids) < 10, f"a fresh PID namespace has a handful of processes: {result}"


def test_files_in_tmp_stay_in_the_run(work: Path) -> None:
    _require()
    name = f"bvisor-private-tmp-{os.getpid()}-{unique_marker('T')}"
    out = _cli_like(work, f"echo secret > /tmp/{name} && cat /tmp/{name} && echo $HOME")
    assert "secret" in out and "/tmp/home" in out, out
    assert not Path("/tmp", name).exists(), "a file of the private /tmp reached the host"


def test_skipping_the_private_root_lets_tmp_reach_the_host(work: Path) -> None:
    _require()
    name = f"bvisor-private-tmp-lie-{os.getpid()}-{unique_marker('T')}"
    target = Path("/tmp", name)
    try:
        _cli_like(work, f"echo leaked > /tmp/{name}", frozenset({"skip_rootfs", "skip_landlock"}))
        assert target.exists(), "the lie must write to the host's /tmp"
    finally:
        target.unlink(missing_ok=True)


def test_device_nodes_keep_their_mode_and_times(work: Path) -> None:
    _require()
    before = os.stat("/dev/null")
    out = _cli_like(
        work,
        "chmod 600 /dev/null 2>&1; touch /dev/null 2>&1; echo written > /dev/null && echo ok",
    )
    after = os.stat("/dev/null")
    assert "ok" in out, out
    assert (after.st_mode, after.st_mtime_ns, after.st_uid) == (
        before.st_mode,
        before.st_mtime_ns,
        before.st_uid,
    ), out


def test_an_exposed_path_is_there_with_its_access(work: Path, tmp_path: Path) -> None:
    _require()
    source = tmp_path / "source"
    source.mkdir()
    (source / "data.txt").write_text("exposed-data\n")
    script = "cat /data/data.txt; echo new > /data/new.txt 2>/dev/null || echo refused"
    spec = _spec(work, script)
    spec = dataclasses.replace(
        spec,
        controls=(*spec.controls, ExposePath(str(source), "/data", FsAccess.READ)),
    )
    out = _run_output(spec)
    assert "exposed-data" in out and "refused" in out, out
    assert not (source / "new.txt").exists()


# A descendant that leaves the workload's session and process group: only the namespace
# (or a cgroup) can still reach it.
_ESCAPE = "setsid sh -c 'sleep 60; : {marker}' & sleep 1; true"


def _run_seeing(spec: BoundarySpec, marker: str, hooks: frozenset[str]) -> bool:
    """Run ``spec``; True when the host saw the marked descendant alive during the run."""
    seen: list[bool] = []
    watcher = threading.Thread(
        target=lambda: seen.append(bool(wait_for(lambda: find_pids_with(marker), timeout=10)))
    )
    watcher.start()
    _run_output(spec, hooks)
    watcher.join()
    return bool(seen and seen[0])


def test_the_run_tree_dies_with_the_run_without_any_cgroup(tmp_path: Path) -> None:
    require_feature("pidns")
    marker = unique_marker("TREE")
    spec = descendants_spec(["-c", f"(exec -a {marker} sleep 60 &) ; true"])
    _run_output(spec, frozenset({"skip_cgroup_placement"}))
    assert wait_for(lambda: not find_pids_with(marker), timeout=5) is not False
    assert not find_pids_with(marker), "a descendant outlived its run"


def test_skipping_the_namespace_and_the_cgroup_lets_a_descendant_survive(tmp_path: Path) -> None:
    require_feature("pidns")
    marker = unique_marker("ESCAPE")
    spec = descendants_spec(["-c", _ESCAPE.format(marker=marker)])
    try:
        assert _run_seeing(spec, marker, frozenset({"skip_pidns", "skip_cgroup_placement"}))
        assert find_pids_with(marker), "the lie must let the descendant outlive the run"
    finally:
        for pid in find_pids_with(marker):
            os.kill(pid, 9)


def _run_output(spec: BoundarySpec, hooks: frozenset[str] = frozenset()) -> str:
    backend = LinuxBackend.dangerous_with_test_hooks(default_launcher_path(), hooks)
    registry = BackendRegistry()
    registry.register(backend)
    plan = BoundaryPlanner(registry).plan(spec, "linux")
    out = bytearray()
    BoundaryRunner(registry).run(plan, on_stdout=out.extend, on_stderr=out.extend)
    return out.decode("utf-8", "replace")


def _cli_like(work: Path, script: str, hooks: frozenset[str] = frozenset()) -> str:
    return _run_output(_spec(work, script), hooks)


def test_ls_slash_lists_the_granted_roots(work: Path) -> None:
    _require()
    spec = dataclasses.replace(_spec(work, ""), workload=ProcessWorkload("/bin/ls", ("/",)))
    listed = set(_run_output(spec).split())
    assert {"dev", "proc", "tmp", "usr", "etc"} <= listed, listed
    assert "root" not in listed or work.parts[1] == "root", listed
