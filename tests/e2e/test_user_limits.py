"""A workload takes at most its share of its user's inotify instances (linux.userns.limits.v1).

The kernel counts inotify instances per user, so a workload that opens them until it
cannot would leave none for the user's other programs. The oracle is outside the
workload: while it holds everything it could get, the host counts its inotify fds in
``/proc/<pid>/fd`` and, as the same user, opens an instance of its own — which must still
work. The planted lie (``skip_userlimits``: the workload's user namespace left unlimited)
turns both red.
"""

from __future__ import annotations

import ctypes
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from bvisor.contract import Outcome
from bvisor.front.defaults import default_spec
from bvisor.launcher.host.backend import LinuxBackend
from bvisor.launcher.host.locate import default_launcher_path
from bvisor.launcher.host.runner import BoundaryRunner
from bvisor.planner.planning import BoundaryPlanner
from bvisor.planner.registry import BackendRegistry
from tests.e2e.helpers import wait_for
from tests.features import require_feature

# Open inotify instances until the kernel refuses, say how many, hold them a while.
_GRAB = """
import ctypes, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
held = 0
while libc.inotify_init1(os.O_CLOEXEC) >= 0:
    held += 1
    if held > 100000:
        break
open("grabbed", "w").write(f"{held} {ctypes.get_errno()}\\n")
time.sleep(4)
"""


def _host_can_open_one() -> bool:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.inotify_init1(os.O_CLOEXEC)
    if fd < 0:
        return False
    os.close(fd)
    return True


def _inotify_fds(pid: int) -> int:
    count = 0
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{name}") == "anon_inode:inotify":
                count += 1
        except OSError:
            continue
    return count


def _grab(work: Path, hooks: frozenset[str]) -> dict[str, Any]:
    backend = LinuxBackend.dangerous_with_test_hooks(default_launcher_path(), hooks)
    registry = BackendRegistry()
    registry.register(backend)
    spec = default_spec(["/usr/bin/python3", "-c", _GRAB], cwd=str(work))
    plan = BoundaryPlanner(registry).plan(spec, "linux")
    seen: dict[str, Any] = {}
    marker = work / "grabbed"

    def watch() -> None:
        if not wait_for(lambda: marker.exists() and marker.read_text().endswith("\n"), 30):
            return
        seen["workload"] = marker.read_text().split()
        seen["host_opens_one"] = _host_can_open_one()
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
                except OSError:
                    continue
                if b"inotify_init1" in cmdline:
                    seen["held"] = _inotify_fds(int(entry))

    watcher = threading.Thread(target=watch)
    watcher.start()
    report = BoundaryRunner(registry).run(plan)
    watcher.join()
    seen["outcome"] = report.body.outcome
    return seen


@pytest.fixture
def work(tmp_path: Path) -> Path:
    directory = tmp_path / "work"
    directory.mkdir()
    return directory


def _own_limit() -> int:
    return int(Path("/proc/sys/user/max_inotify_instances").read_text())


def test_the_workload_takes_half_and_the_user_keeps_the_rest(work: Path) -> None:
    require_feature("userns")
    seen = _grab(work, frozenset())
    assert seen["outcome"] is Outcome.COMPLETED
    held, err = (int(v) for v in seen["workload"])
    assert err == 24, "EMFILE: the kernel's limit stopped it"  # not some other failure
    assert held <= _own_limit() // 2, (held, _own_limit())
    assert seen["held"] == held, "the host counts what the workload says it holds"
    assert seen["host_opens_one"], "the user still has inotify instances of its own"


def test_skipping_the_limits_lets_the_workload_take_them_all(work: Path) -> None:
    require_feature("userns")
    seen = _grab(work, frozenset({"skip_userlimits"}))
    held = int(seen["workload"][0])
    assert held > _own_limit() // 2, (held, _own_limit())
    assert not seen["host_opens_one"], "the lie left the user no inotify instance"
