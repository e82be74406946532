"""ChildSpawn{AllowThreadsWithinBoundary}: threads yes, processes no (seccomp).

Oracles from outside: the host sees exactly one process with several tasks in
``/proc/<pid>/task`` while Python threads, a thread pool, a C pthread program and a Go
program run; every way to make a process — ``os.fork``, ``subprocess``, ``posix_spawn``,
``vfork``, raw ``clone3``, a fork-like raw ``clone`` — is refused (the host sees no child
appear); a clone that is neither kills the process (SIGSYS, in the report). The planted
lie (the filter skipped) lets a fork through.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from bvisor.contract import ChildSpawn, Outcome, SpawnPolicy
from bvisor.contract.report import SealedReport
from bvisor.front.defaults import default_spec
from bvisor.launcher.host.backend import LinuxBackend
from bvisor.launcher.host.locate import default_launcher_path
from bvisor.launcher.host.runner import BoundaryRunner
from bvisor.planner.planning import BoundaryPlanner
from bvisor.planner.registry import BackendRegistry
from tests.e2e.helpers import find_pids_with, unique_marker, wait_for
from tests.features import require_feature

PYTHON = "/usr/bin/python3"

THREADS = """
import sys, threading, time, concurrent.futures
marker = sys.argv[1]
stop = threading.Event()
workers = [threading.Thread(target=stop.wait) for _ in range(4)]
for w in workers: w.start()
with concurrent.futures.ThreadPoolExecutor(3) as pool:
    print("pool", sum(pool.map(lambda x: x * x, range(10))))
time.sleep(1.5)  # the host looks now
stop.set()
for w in workers: w.join()
print("threads ok")
"""

PROCESSES = r"""
import ctypes, os, subprocess, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def attempt(name, call):
    try:
        result = call()
    except OSError as exc:
        print(name, "refused", exc.errno)
        return
    if result == 0:
        os._exit(0)  # a child got through: it must not run the rest
    print(name, "ALLOWED", result)
def raw(number, *args):
    rc = libc.syscall(number, *args)
    if rc < 0:
        raise OSError(ctypes.get_errno(), "raw")
    return rc
attempt("fork", os.fork)
attempt("subprocess", lambda: subprocess.run(["/bin/true"]).returncode + 1)
attempt("posix_spawn", lambda: os.posix_spawn("/bin/true", ["true"], {}))
attempt("vfork", lambda: raw(58))
attempt("clone3", lambda: raw(435, ctypes.c_void_p(0), ctypes.c_size_t(0)))
attempt("clone", lambda: raw(56, ctypes.c_ulong(17), 0, 0, 0, 0))  # SIGCHLD: fork-like
print("done")
"""

# clone(CLONE_VM) alone: shares memory but is neither a thread nor a vfork.
ODD_CLONE = r"""
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
print("about to clone", flush=True)
libc.syscall(56, ctypes.c_ulong(0x100 | 17), 0, 0, 0, 0)
print("survived")
"""


def _spec(work: Path, code: str, *args: str) -> object:
    base = default_spec([PYTHON, "-c", code, *args], cwd=str(work))
    caps = tuple(
        ChildSpawn(SpawnPolicy.ALLOW_THREADS_WITHIN_BOUNDARY) if isinstance(c, ChildSpawn) else c
        for c in base.capabilities
    )
    return dataclasses.replace(base, capabilities=caps)


def _run(spec: object, hooks: frozenset[str] = frozenset()) -> tuple[SealedReport, str]:
    backend = LinuxBackend.dangerous_with_test_hooks(default_launcher_path(), hooks)
    registry = BackendRegistry()
    registry.register(backend)
    plan = BoundaryPlanner(registry).plan(spec, "linux")  # type: ignore[arg-type]
    out = bytearray()
    report = BoundaryRunner(registry).run(plan, on_stdout=out.extend, on_stderr=out.extend)
    return report, out.decode("utf-8", "replace")


def _tasks_and_children(marker: str) -> dict[str, int]:
    found = wait_for(lambda: find_pids_with(marker, program="python3"), timeout=20)
    if not found:
        return {}
    pid = found[0]  # type: ignore[index]
    wait_for(lambda: False, timeout=0.8)
    tasks = list(Path(f"/proc/{pid}/task").iterdir())
    children = sum(len((t / "children").read_text().split()) for t in tasks)
    return {"tasks": len(tasks), "children": children, "matches": len(find_pids_with(marker))}


def test_threads_run_and_the_host_sees_one_process_with_many_tasks(work: Path) -> None:
    require_feature("seccomp")
    marker = unique_marker("THREADS")
    seen: dict[str, int] = {}
    watcher = threading.Thread(target=lambda: seen.update(_tasks_and_children(marker)))
    watcher.start()
    report, out = _run(_spec(work, THREADS, marker))
    watcher.join()
    assert report.body.outcome is Outcome.COMPLETED, out
    assert "pool 285" in out and "threads ok" in out, out
    assert seen["tasks"] >= 5 and seen["children"] == 0 and seen["matches"] == 1, seen


def test_a_c_pthread_program_runs(work: Path) -> None:
    require_feature("seccomp")
    if shutil.which("gcc") is None:
        pytest.skip("LOUD SKIP: no gcc to build the pthread program")
    source = work / "threads.c"
    source.write_text(
        "#include <pthread.h>\n#include <stdio.h>\n"
        "static void *work(void *p) { return p; }\n"
        "int main(void) { pthread_t t[4]; void *r; int ok = 0;\n"
        "  for (long i = 0; i < 4; i++) pthread_create(&t[i], 0, work, (void *)i);\n"
        "  for (long i = 0; i < 4; i++) { pthread_join(t[i], &r); ok += r == (void *)i; }\n"
        '  printf("pthreads=%d\\n", ok); return ok != 4; }\n'
    )
    binary = work / "threads"
    subprocess.run(["gcc", "-pthread", "-o", str(binary), str(source)], check=True)
    spec = _spec(work, "")
    spec = dataclasses.replace(
        spec,  # type: ignore[type-var]
        workload=dataclasses.replace(spec.workload, exe=str(binary), args=()),  # type: ignore[attr-defined]
    )
    report, out = _run(spec)
    assert report.body.outcome is Outcome.COMPLETED and "pthreads=4" in out, out


GO_THREADS = """package main

import (
	"fmt"
	"os"
	"runtime"
	"sync"
	"time"
)

// Six goroutines, each locked to an OS thread of its own while the host looks.
func main() {
	runtime.GOMAXPROCS(4)
	var wg sync.WaitGroup
	for i := 0; i < 6; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			time.Sleep(1500 * time.Millisecond)
		}()
	}
	wg.Wait()
	fmt.Println("go threads ok", os.Args[1])
}
"""


def _go_build(work: Path) -> Path:
    """The Go program built with the system toolchain (golang-go; CI installs it, so there
    it can never be skipped). Go's runtime makes its threads with a plain clone, without
    CLONE_SETTLS or CLONE_CHILD_CLEARTID: the mask the filter checks must allow that."""
    go = shutil.which("go")
    if go is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI installs golang-go: the Go thread test must run")
        pytest.skip("LOUD SKIP: no Go toolchain (apt-get install golang-go)")
    source, binary = work / "gothreads.go", work / "gothreads"
    source.write_text(GO_THREADS)
    cache = work.parent / "go-cache"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(cache),
        "GOCACHE": str(cache / "build"),
        "GOPATH": str(cache / "path"),
        "GO111MODULE": "off",
        "CGO_ENABLED": "0",
    }
    subprocess.run([go, "build", "-o", str(binary), str(source)], check=True, env=env, cwd=work)
    return binary


def test_a_go_program_s_threads_run(work: Path) -> None:
    require_feature("seccomp")
    binary = _go_build(work)
    marker = unique_marker("GOTHREADS")
    spec = _spec(work, "")
    spec = dataclasses.replace(
        spec,  # type: ignore[type-var]
        workload=dataclasses.replace(spec.workload, exe=str(binary), args=(marker,)),  # type: ignore[attr-defined]
    )
    seen: dict[str, int] = {}

    def look() -> None:
        found = wait_for(lambda: find_pids_with(marker), timeout=20)
        if not found:
            return
        pid = found[0]  # type: ignore[index]
        wait_for(lambda: False, timeout=0.8)
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
        seen["processes"] = len(find_pids_with(marker))
        seen["tasks"] = len(tasks)
        seen["children"] = sum(len((t / "children").read_text().split()) for t in tasks)

    watcher = threading.Thread(target=look)
    watcher.start()
    report, out = _run(spec)
    watcher.join()
    assert report.body.outcome is Outcome.COMPLETED and f"go threads ok {marker}" in out, out
    assert seen["processes"] == 1 and seen["tasks"] >= 6 and seen["children"] == 0, seen


def test_every_way_to_make_a_process_is_refused(work: Path) -> None:
    require_feature("seccomp")
    report, out = _run(_spec(work, PROCESSES))
    assert report.body.outcome is Outcome.COMPLETED, out
    for name, errno in (
        ("fork", 1),
        ("subprocess", None),
        ("posix_spawn", None),
        ("vfork", 1),
        ("clone3", 38),
        ("clone", 1),
    ):
        line = next((line for line in out.splitlines() if line.startswith(name + " ")), "")
        assert " refused" in line, (name, out)
        if errno is not None:
            assert line.endswith(f" {errno}"), (name, line)
    assert "ALLOWED" not in out and "done" in out, out


def test_a_clone_that_is_neither_a_thread_nor_a_fork_kills_the_workload(work: Path) -> None:
    require_feature("seccomp")
    report, out = _run(_spec(work, ODD_CLONE))
    assert "about to clone" in out and "survived" not in out, out
    assert report.body.outcome is Outcome.KILLED, report.body.observed
    assert report.body.exit is not None and report.body.exit.signal == 31  # SIGSYS


FORK = """
import os
pid = os.fork()
if pid == 0:
    os._exit(0)
print("fork ALLOWED", pid, flush=True)
"""


def test_skipping_the_filter_lets_a_fork_through(work: Path) -> None:
    require_feature("seccomp")
    _, out = _run(_spec(work, FORK), frozenset({"skip_seccomp"}))
    assert "fork ALLOWED" in out, out
    _, honest = _run(_spec(work, FORK))
    assert "fork ALLOWED" not in honest, honest


def test_the_plan_says_threads_only(work: Path) -> None:
    require_feature("seccomp")
    report, _ = _run(_spec(work, "print('x')"))
    lowered = [f.detail for f in report.body.observed if f.kind == "child_spawn_lowered"]
    assert lowered == ["allow_threads_within_boundary: seccomp allows thread clones only"]
