"""Run cgroups on the host side: create a leaf per run, cap it, watch it, kill it, remove it.

Why it looks like this:

* Leaves are created *beneath* the cgroup this process already belongs to, in every
  hierarchy the plan uses (the v2 tree for placement and ``cgroup.kill``; v1 ``pids`` and
  ``memory`` controllers on hybrid hosts). The bases come from the plan's recorded profile
  (the planner probed them), so the run uses exactly the hierarchy h_p committed to; we
  re-check here that each base is still an ancestor-or-self of our own cgroup and refuse
  otherwise, so a workload can never escape the accounting of whoever started bvisor.
* Limits are written before the workload exists; the child is born in the v2 leaf
  (CLONE_INTO_CGROUP) and joins each v1 leaf itself before the launcher releases it (which
  it does only once it sees the child in each leaf), so no instruction of the workload runs
  outside its leaf.
* Teardown always runs and never raises: ``cgroup.kill`` on the v2 leaf (which holds every
  descendant, whatever v1 leaves they are in), drain until empty, remove every leaf. What
  could not be done is returned as text for a ``cgroup_teardown_incomplete`` fact.
* A host that is SIGKILLed cannot tear down. Leaves are therefore named
  ``bvisor-<pid namespace>-<creator pid>-t<creator start time>-<attempt>``, and every new
  run first reaps the leaves of its own pid namespace whose creator is gone: ``cgroup.kill``,
  drain, remove. The creator is identified by pid *and* start time (``/proc/<pid>/stat``
  field 22, clock ticks since boot), so a process that later got the same pid — a
  survivor of the crashed run forking until the number comes round again — does not keep
  the leaf alive. A leaf whose creator is alive, or that another pid namespace made, is
  never touched (it may be a concurrent run), so the reaper can only err towards keeping.
  Leaves named by older versions (no ``t<start>``) are judged by pid alone, as before.
* Teardown reads what only the kernel saw before the leaf goes: the v2 leaf's
  ``cpu.stat`` ``usage_usec`` after every task has died, so the CPU of descendants nobody
  waited for is counted (rusage never sees it).
"""

from __future__ import annotations

import errno
import os
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from bvisor.launcher.basement.mounts import Mount, mount_table

__all__ = [
    "CgroupError",
    "RunCgroup",
    "create_run_cgroup",
    "leaf_name",
    "own_cgroup_path",
    "own_memory_limit",
    "process_start_time",
    "reap_stale_leaves",
]

_DRAIN_TIMEOUT_S = 5.0
_LEAF_NAME = re.compile(r"^bvisor-(\d+)-(\d+)-(?:t(\d+)-)?[0-9a-f]+\Z")


class CgroupError(RuntimeError):
    """A run cgroup could not be prepared; the workload must not start."""


def own_cgroup_path(controller: str | None) -> str | None:
    """This process's cgroup path in the v1 ``controller`` hierarchy, or in v2 for None."""
    with open("/proc/self/cgroup", encoding="utf-8") as handle:
        for line in handle:
            hierarchy_id, controllers, path = line.rstrip("\n").split(":", 2)
            if controller is None and hierarchy_id == "0" and controllers == "":
                return path
            if controller is not None and controller in controllers.split(","):
                return path
    return None


def _check_beneath_own(base: str, mount: str, own: str | None) -> None:
    """Refuse a base that is not our own cgroup or beneath it."""
    if own is None:
        raise CgroupError(f"this process has no cgroup in the hierarchy mounted at {mount}")
    own_dir = os.path.normpath(os.path.join(mount, own.lstrip("/")))
    base_norm = os.path.normpath(base)
    if base_norm != own_dir and not base_norm.startswith(own_dir + os.sep):
        raise CgroupError(
            f"cgroup base {base} is not beneath this process's own cgroup {own_dir}; "
            "refusing to place a workload outside the caller's accounting"
        )


def foreign_base(base: str) -> str | None:
    """Why another user could replace a run's leaf under ``base``, or None.

    Leaves are made and then written, opened and joined by name: whoever may write
    ``base`` (or a directory above it) can remove a leaf before the workload is in it and
    make one of their own under that name, whose limit files are theirs to change. Found
    by attack: root running bvisor inside a cgroup another user owns (a delegated
    subtree) got its leaf replaced by that user, who then lifted ``memory.limit_in_bytes``;
    an Enforced 64 MiB budget let the workload hold 300 MiB, and that user could reset
    the peak the witness reads. Such a base is never used (the ledger's own ownership
    check, :mod:`bvisor.ownership`)."""
    from bvisor.ownership import others_may_change

    return others_may_change(base)


def _check_not_foreign(base: str) -> None:
    foreign = foreign_base(base)
    if foreign is not None:
        raise CgroupError(
            f"cgroup base {base}: {foreign}, so another user could replace the run's leaf "
            "there (and change its limits); refusing to place a workload in it"
        )


def _mount_of(base: str, controller: str | None, table: list[Mount]) -> str:
    """The mount point a recorded base lives under (v2 unified mount or /sys/fs/cgroup/X)."""
    best = ""
    for mount in table:
        if controller is None and mount.fstype != "cgroup2":
            continue
        if controller is not None and (mount.fstype != "cgroup" or controller not in mount.options):
            continue
        inside = base == mount.point or base.startswith(mount.point.rstrip("/") + "/")
        if inside and len(mount.point) > len(best):
            best = mount.point
    if not best:
        what = "cgroup2" if controller is None else f"cgroup v1 {controller}"
        raise CgroupError(f"{base} is not inside a mounted {what} hierarchy")
    return best


def _write(path: Path, text: str) -> None:
    with open(path, "w", encoding="ascii") as handle:
        handle.write(text)


def _read_int(path: Path) -> int | None:
    try:
        raw = path.read_text(encoding="ascii").strip()
    except OSError:
        return None
    if raw == "max":
        return None
    try:
        return int(raw.split()[0])
    except (ValueError, IndexError):
        return None


def _read_keyed(path: Path) -> dict[str, int]:
    result: dict[str, int] = {}
    try:
        text = path.read_text(encoding="ascii")
    except OSError:
        return result
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            result[parts[0]] = int(parts[1])
    return result


@dataclass
class RunCgroup:
    """The leaves of one run, with the limits written into them and a peak-pids sampler."""

    name: str
    v2_leaf: Path | None
    v1_leaves: dict[str, Path]
    pids_limit: int | None = None
    pids_hierarchy: str | None = None
    memory_limit: int | None = None
    memory_hierarchy: str | None = None
    _peak_pids: int = 0
    final_cpu_usec: int | None = None  # read by teardown once every task is gone
    _sampler: threading.Thread | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    # -- descriptors handed to the launcher -------------------------------------------
    def open_v2_fd(self) -> int | None:
        if self.v2_leaf is None:
            return None
        return os.open(self.v2_leaf, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)

    def open_v1_fds(self) -> list[tuple[str, int]]:
        return [
            (name, os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
            for name, path in sorted(self.v1_leaves.items())
        ]

    # -- observation --------------------------------------------------------------------
    def procs(self) -> list[int]:
        """Pids in the v2 leaf (every task of the run, whatever v1 leaves it is in)."""
        leaf = self.v2_leaf or next(iter(self.v1_leaves.values()), None)
        if leaf is None:
            return []
        try:
            text = (leaf / "cgroup.procs").read_text(encoding="ascii")
        except OSError:
            return []
        return [int(tok) for tok in text.split()]

    def tasks(self) -> int | None:
        """Threads in the v2 leaf (``cgroup.threads``): what a pids limit counts."""
        if self.v2_leaf is None:
            return None
        try:
            text = (self.v2_leaf / "cgroup.threads").read_text(encoding="ascii")
        except OSError:
            return None
        return len(text.split())

    def _pids_current(self) -> int | None:
        # pids.current counts tasks (threads), as pids.max does; without a pids controller
        # the v2 leaf's thread list is counted, never its process list.
        if "pids" in self.v1_leaves:
            return _read_int(self.v1_leaves["pids"] / "pids.current")
        if self.v2_leaf is not None and (self.v2_leaf / "pids.current").exists():
            return _read_int(self.v2_leaf / "pids.current")
        return self.tasks()

    def start_sampler(self, interval_s: float = 0.01) -> None:
        """Sample the task count so a peak is known even without a kernel pids.peak.

        Where the kernel keeps pids.peak no thread is started: the kernel's high-water
        mark of the same count is never below a sample of it, so :meth:`peak_pids` would
        be the kernel's anyway.
        """
        if self._peak_file() is not None:
            return

        def sample() -> None:
            while not self._stop.wait(interval_s):
                current = self._pids_current()
                if current is not None and current > self._peak_pids:
                    self._peak_pids = current

        self._sampler = threading.Thread(target=sample, name="bvisor-cgroup-sampler", daemon=True)
        self._sampler.start()

    def stop_sampler(self) -> None:
        self._stop.set()
        if self._sampler is not None:
            self._sampler.join()

    def peak_pids(self) -> int | None:
        """The highest task count seen: kernel pids.peak where it exists, else sampled."""
        kernel_peak = self.kernel_peak_pids()
        sampled = self._peak_pids or None
        if kernel_peak is not None and sampled is not None:
            return max(kernel_peak, sampled)
        return kernel_peak if kernel_peak is not None else sampled

    def kernel_peak_pids(self) -> int | None:
        """pids.peak, the kernel's own high-water mark of tasks, where there is one."""
        peak = self._peak_file()
        return None if peak is None else _read_int(peak)

    def _peak_file(self) -> Path | None:
        for leaf in (self.v1_leaves.get("pids"), self.v2_leaf):
            if leaf is not None and (leaf / "pids.peak").exists():
                return leaf / "pids.peak"
        return None

    def cpu_usage_usec(self) -> int | None:
        """CPU time of every task the leaf ever held (v2 ``cpu.stat`` ``usage_usec``)."""
        if self.v2_leaf is None:
            return None
        return _read_keyed(self.v2_leaf / "cpu.stat").get("usage_usec")

    def pids_max_events(self) -> int:
        """How many forks the kernel refused at pids.max (pids.events "max")."""
        leaf = self.v1_leaves.get("pids") if self.pids_hierarchy == "v1" else self.v2_leaf
        if leaf is None:
            return 0
        return _read_keyed(leaf / "pids.events").get("max", 0)

    def peak_memory(self) -> int | None:
        if "memory" in self.v1_leaves:
            return _read_int(self.v1_leaves["memory"] / "memory.max_usage_in_bytes")
        if self.v2_leaf is not None and (self.v2_leaf / "memory.peak").exists():
            return _read_int(self.v2_leaf / "memory.peak")
        return None

    def oom_kills(self) -> int:
        """How many tasks the kernel OOM-killed for this leaf's memory limit."""
        if "memory" in self.v1_leaves:
            control = _read_keyed(self.v1_leaves["memory"] / "memory.oom_control")
            return control.get("oom_kill", 0)
        if self.v2_leaf is not None:
            return _read_keyed(self.v2_leaf / "memory.events").get("oom_kill", 0)
        return 0

    # -- teardown -----------------------------------------------------------------------
    def kill(self) -> bool:
        """Kill every task of the run at once (cgroup.kill); False if not possible."""
        if self.v2_leaf is None:
            return False
        try:
            _write(self.v2_leaf / "cgroup.kill", "1")
        except OSError:
            return False
        return True

    def teardown(self) -> list[str]:
        """Kill, drain, remove. Never raises; returns what was left behind."""
        self.stop_sampler()
        problems: list[str] = []
        if self.v2_leaf is not None and self.v2_leaf.exists() and not self.kill():
            problems.append(f"cgroup.kill failed on {self.v2_leaf}")
        deadline = time.monotonic() + _DRAIN_TIMEOUT_S
        while self.procs() and time.monotonic() < deadline:
            time.sleep(0.005)
        left = self.procs()
        if left:
            problems.append(f"{len(left)} task(s) still in the run cgroup: {left[:8]}")
        else:
            self.final_cpu_usec = self.cpu_usage_usec()
        leaves = [*self.v1_leaves.values(), *([self.v2_leaf] if self.v2_leaf else [])]
        for leaf in leaves:
            problems.extend(_remove_leaf(leaf, deadline))
        return problems


def _remove_leaf(leaf: Path, deadline: float) -> list[str]:
    while True:
        try:
            os.rmdir(leaf)
            return []
        except FileNotFoundError:
            return []
        except OSError as exc:
            if exc.errno == errno.EBUSY and time.monotonic() < deadline:
                time.sleep(0.005)
                continue
            return [f"could not remove {leaf}: {exc.strerror}"]


def create_run_cgroup(
    name: str,
    v2_base: str | None,
    v1_bases: Mapping[str, str],
    *,
    pids_limit: int | None = None,
    pids_hierarchy: str | None = None,
    memory_limit: int | None = None,
    memory_hierarchy: str | None = None,
) -> RunCgroup:
    """Create the run's leaves and write its limits; on any failure remove what was made."""
    if "/" in name or name in {"", ".", ".."}:
        raise CgroupError(f"invalid run cgroup name {name!r}")
    run = RunCgroup(name=name, v2_leaf=None, v1_leaves={})
    try:
        table = mount_table()
        if v2_base is not None:
            _check_beneath_own(v2_base, _mount_of(v2_base, None, table), own_cgroup_path(None))
            _check_not_foreign(v2_base)
            run.v2_leaf = _make_leaf(Path(v2_base), name)
        for controller, base in sorted(v1_bases.items()):
            mount = _mount_of(base, controller, table)
            _check_beneath_own(base, mount, own_cgroup_path(controller))
            _check_not_foreign(base)
            run.v1_leaves[controller] = _make_leaf(Path(base), name)
        if pids_limit is not None:
            _write_pids_limit(run, pids_limit, pids_hierarchy)
        if memory_limit is not None:
            _write_memory_limit(run, memory_limit, memory_hierarchy)
    except (OSError, CgroupError) as exc:
        leftovers = run.teardown()
        detail = f"; cleanup: {'; '.join(leftovers)}" if leftovers else ""
        if isinstance(exc, CgroupError):
            raise CgroupError(f"{exc}{detail}") from None
        raise CgroupError(f"preparing the run cgroup failed: {exc}{detail}") from None
    return run


def _make_leaf(base: Path, name: str) -> Path:
    leaf = base / name
    os.mkdir(leaf, 0o755)
    return leaf


def _write_pids_limit(run: RunCgroup, limit: int, hierarchy: str | None) -> None:
    leaf = run.v1_leaves.get("pids") if hierarchy == "v1" else run.v2_leaf
    if leaf is None:
        raise CgroupError(f"no {hierarchy} pids leaf for the process_count budget")
    _write(leaf / "pids.max", str(limit))
    if _read_int(leaf / "pids.max") != limit:
        raise CgroupError(f"pids.max did not take the value {limit}")
    run.pids_limit, run.pids_hierarchy = limit, hierarchy


def _write_memory_limit(run: RunCgroup, limit: int, hierarchy: str | None) -> None:
    if hierarchy == "v1":
        leaf = run.v1_leaves.get("memory")
        if leaf is None:
            raise CgroupError("no v1 memory leaf for the resident_bytes budget")
        _write(leaf / "memory.limit_in_bytes", str(limit))
        swap_limit = leaf / "memory.memsw.limit_in_bytes"
        if swap_limit.exists():  # without it the workload could page out past its budget
            _write(swap_limit, str(limit))
        applied = _read_int(leaf / "memory.limit_in_bytes")
    else:
        if run.v2_leaf is None:
            raise CgroupError("no v2 leaf for the resident_bytes budget")
        leaf = run.v2_leaf
        _write(leaf / "memory.max", str(limit))
        if (leaf / "memory.swap.max").exists():
            _write(leaf / "memory.swap.max", "0")
        applied = _read_int(leaf / "memory.max")
    # The kernel rounds limits down to a page multiple; accept that, nothing looser.
    if applied is None or applied > limit or applied < limit - os.sysconf("SC_PAGE_SIZE"):
        raise CgroupError(f"memory limit did not take the value {limit} (kernel has {applied})")
    run.memory_limit, run.memory_hierarchy = limit, hierarchy


def _pid_namespace() -> int:
    return os.stat("/proc/self/ns/pid").st_ino


def process_start_time(pid: int) -> int | None:
    """Field 22 of ``/proc/<pid>/stat`` (start time in clock ticks since boot), or None."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            text = handle.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ")".
    fields = text.rpartition(")")[2].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def leaf_name(attempt_id: bytes) -> str:
    """The run's leaf name: creator pid namespace, pid and start time (for the reaper),
    attempt id."""
    start = process_start_time(os.getpid())
    started = f"t{start}-" if start is not None else ""
    return f"bvisor-{_pid_namespace()}-{os.getpid()}-{started}{attempt_id[:8].hex()}"


def _creator_alive(pid: int, start: int | None = None) -> bool:
    """Is the leaf's creator still there: that pid, started at that very tick?"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    if start is None:
        return True  # a leaf named before start times: the pid is all there is to go on
    now = process_start_time(pid)
    # None: /proc hides it from us (hidepid); keep the leaf, erring towards keeping.
    return now is None or now == start


def reap_stale_leaves(bases: list[str]) -> list[str]:
    """Kill and remove run leaves under ``bases`` whose creating process is gone.

    Returns one line per leaf reaped (or that could not be), for the run's facts.
    """
    reaped: list[str] = []
    v2_first = sorted(bases, key=lambda base: not (Path(base) / "cgroup.procs").exists())
    for base in v2_first:
        try:
            entries = list(os.scandir(base))
        except OSError:
            continue
        for entry in entries:
            match = _LEAF_NAME.match(entry.name)
            if match is None or not entry.is_dir():
                continue
            # A pid means something only in its own pid namespace: never judge a leaf that
            # another namespace's bvisor made (its creator may be alive over there).
            start = None if match.group(3) is None else int(match.group(3))
            if int(match.group(1)) != _pid_namespace() or _creator_alive(
                int(match.group(2)), start
            ):
                continue
            leaf = Path(entry.path)
            stale = RunCgroup(name=entry.name, v2_leaf=None, v1_leaves={})
            if (leaf / "cgroup.kill").exists():
                stale.v2_leaf = leaf
            else:
                stale.v1_leaves["stale"] = leaf
            problems = stale.teardown()
            detail = f"{leaf}: " + ("; ".join(problems) if problems else "killed and removed")
            reaped.append(detail)
    return reaped


def own_memory_limit() -> int | None:
    """The tightest memory limit on the cgroup this process is in, ancestors included
    (v2 ``memory.max``, v1 ``memory.limit_in_bytes``); None if there is none to read."""
    limits: list[int] = []
    for mount in mount_table():
        if mount.fstype == "cgroup2":
            own, names = own_cgroup_path(None), ("memory.max",)
        elif mount.fstype == "cgroup" and "memory" in mount.options:
            own, names = own_cgroup_path("memory"), ("memory.limit_in_bytes",)
        else:
            continue
        if own is None:
            continue
        directory = Path(os.path.normpath(os.path.join(mount.point, own.lstrip("/"))))
        root = Path(mount.point)
        while True:
            for name in names:
                value = _read_int(directory / name)
                if value is not None and value < (1 << 62):  # v1 says "unlimited" this way
                    limits.append(value)
            if directory == root or root not in directory.parents:
                break
            directory = directory.parent
    return min(limits) if limits else None
