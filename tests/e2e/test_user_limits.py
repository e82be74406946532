"""A workload takes at most its share of its user's inotify instances and queued signals
(linux.userns.limits.v1).

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
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


def _run_watched(
    work: Path, code: str, hooks: frozenset[str], watch: Callable[[], None]
) -> Outcome:
    """Run ``code`` under the default spec (with ``hooks``) while ``watch`` looks on from
    a thread of the host; the run's outcome."""
    backend = LinuxBackend.dangerous_with_test_hooks(default_launcher_path(), hooks)
    registry = BackendRegistry()
    registry.register(backend)
    spec = default_spec(["/usr/bin/python3", "-c", code], cwd=str(work))
    plan = BoundaryPlanner(registry).plan(spec, "linux")
    watcher = threading.Thread(target=watch)
    watcher.start()
    report = BoundaryRunner(registry).run(plan)
    watcher.join()
    return report.body.outcome


def _written(marker: Path, timeout: float) -> bool:
    """Whether the workload finished writing ``marker`` (one line) within ``timeout``."""
    return bool(wait_for(lambda: marker.exists() and marker.read_text().endswith("\n"), timeout))


def _grab(work: Path, hooks: frozenset[str]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    marker = work / "grabbed"

    def watch() -> None:
        if not _written(marker, 30):
            return
        seen["workload"] = marker.read_text().split()
        seen["host_opens_one"] = _host_can_open_one()
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    # This run's workload is this user's (another user's suite on the
                    # machine may run the same code at the same time).
                    if os.stat(f"/proc/{entry}").st_uid != os.getuid():
                        continue
                    cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
                    if b"inotify_init1" in cmdline:
                        seen["held"] = _inotify_fds(int(entry))
                except OSError:
                    continue

    seen["outcome"] = _run_watched(work, _GRAB, hooks, watch)
    return seen


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


# Queue real-time signals to itself (blocked) until the kernel refuses, say how many, hold.
_QUEUE = """
import ctypes, os, signal, time
libc = ctypes.CDLL(None, use_errno=True)
class Value(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("pointer", ctypes.c_void_p)]
libc.sigqueue.argtypes = (ctypes.c_int, ctypes.c_int, Value)
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGRTMIN})
held = 0
while libc.sigqueue(os.getpid(), signal.SIGRTMIN, Value(0)) == 0:
    held += 1
    if held > 10**7:
        break
open("queued", "w").write(f"{held} {ctypes.get_errno()}\\n")
time.sleep(3)
"""


def _host_queued() -> tuple[int, int]:
    """This user's queued signals on the host and the limit, as the kernel reports them."""
    line = next(
        line
        for line in Path("/proc/self/status").read_text().splitlines()
        if line.startswith("SigQ:")
    )
    queued, limit = line.split()[1].split("/")
    return int(queued), int(limit)


def _queue(work: Path, hooks: frozenset[str]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    marker = work / "queued"

    def watch() -> None:
        if _written(marker, 60):
            seen["workload"] = [int(v) for v in marker.read_text().split()]
            seen["host"] = _host_queued()

    seen["outcome"] = _run_watched(work, _QUEUE, hooks, watch)
    return seen


def test_the_workload_queues_half_the_signals_and_the_user_keeps_the_rest(work: Path) -> None:
    """Queued signals are charged to the user at every namespace level up to the host's,
    where the user's other programs are checked against their own limit: a workload that
    queued until refused left its user (root too) unable to queue a signal or create a
    POSIX timer on the whole host. Oracle: the kernel's count for this user on the host
    (``SigQ`` in the host process's own ``/proc/self/status``) while the workload holds
    everything it could get."""
    require_feature("userns")
    seen = _queue(work, frozenset())
    assert seen["outcome"] is Outcome.COMPLETED
    held, err = seen["workload"]
    queued, limit = seen["host"]
    assert err == 11, "EAGAIN: the kernel's limit stopped it"
    assert held <= limit // 2, (held, limit)
    assert queued <= limit // 2 + 64, (queued, limit)  # what the user's others hold besides


def test_skipping_the_limits_lets_the_workload_queue_them_all(work: Path) -> None:
    require_feature("userns")
    seen = _queue(work, frozenset({"skip_userlimits"}))
    held, _err = seen["workload"]
    queued, limit = seen["host"]
    assert held > limit // 2, (held, limit)
    assert queued > limit // 2, "the lie left the user's host count all but spent"
