"""Helpers for launcher tests: plan builders, a stdin gate, /proc oracles, cgroup leaves.

Oracles here read kernel state from *outside* the workload (``/proc/<pid>/...``, cgroup
files, files on disk). To read ``/proc/<pid>`` while the workload is alive without any
timing assumption, workloads block reading stdin (a pipe the test holds, the "gate") and
the test releases them after looking.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bvisor import canonical
from bvisor.contract import mechanisms as mech
from bvisor.contract.lowering import LoweringEntry, lowering_digest, param_digest
from bvisor.launcher.host.launch import AuthorityFd, LaunchObservation, LaunchOptions, run_launcher
from bvisor.launcher.wire.protocol import (
    CgroupPlacement,
    DescriptorKind,
    DescriptorRole,
    DescriptorShape,
    DescriptorSlot,
    LandlockRequest,
    LandlockRule,
    LaunchBody,
    LaunchPlan,
    NetworkNamespaceRequest,
    SeccompRequest,
    TargetSpec,
    UserNamespaceRequest,
)
from tests.features import cgroup_v1_dir, cgroup_v2_dir, dev_launcher_path, require_feature

EXE_SLOT = 10
ZERO = bytes(32)
_counter = itertools.count()


@pytest.fixture(scope="session")
def launcher_path() -> str:
    return dev_launcher_path()


def entry(primitive: mech.Primitive, params: canonical.Value = None) -> LoweringEntry:
    """A schedule entry bound to the catalogue's declaration and to ``params``."""
    return LoweringEntry(
        primitive.id,
        primitive.version,
        int(primitive.phase),
        param_digest({} if params is None else params),
        mech.decl_digest(primitive),
    )


def schedule(
    planned: Sequence[tuple[mech.Primitive, canonical.Value]],
) -> tuple[tuple[LoweringEntry, ...], tuple[canonical.Value, ...]]:
    """Entries in the planner's order (phase, user namespace first) and their params."""
    ordered = sorted(
        planned,
        key=lambda item: (int(item[0].phase), 0 if item[0].id == mech.USERNS.id else 1, item[0].id),
    )
    return (
        tuple(entry(primitive, params) for primitive, params in ordered),
        tuple(params for _, params in ordered),
    )


@dataclass
class Auth:
    """Authority fds the test opened (closed by ``close``)."""

    fds: list[AuthorityFd] = field(default_factory=list)
    table: list[DescriptorSlot] = field(default_factory=list)
    next_slot: int = EXE_SLOT + 1

    def add(
        self, fd: int, role: DescriptorRole, kind: DescriptorKind, writable: bool = False
    ) -> int:
        slot = self.next_slot
        self.next_slot += 1
        self.fds.append(AuthorityFd(slot, fd))
        self.table.append(DescriptorSlot(slot, role, DescriptorShape(kind, writable)))
        return slot

    def close(self) -> None:
        for authority in self.fds:
            with contextlib.suppress(OSError):
                os.close(authority.fileno())


def landlock_params(rules: Sequence[tuple[str, str]]) -> canonical.Value:
    """The planner's Landlock parameters for exactly these roots (no system roots)."""
    return {
        "abi_floor": mech.LANDLOCK_ABI_FLOOR,
        "rules": [{"path": path, "access": access} for path, access in rules],
        "system_read_roots": [],
        "device_rw": [],
        "device_read": [],
        "scope": [],
    }


def build_plan(
    exe: str,
    argv: Sequence[str],
    *,
    envp: Sequence[tuple[str, str]] = (("PATH", "/usr/bin:/bin"),),
    seccomp: SeccompRequest | None = None,
    landlock: Sequence[tuple[str, str]] | None = None,
    userns: bool = False,
    netns: bool = False,
    cgroup_v2: int | None = None,
    cgroup_v1: Sequence[int] = (),
    hooks: frozenset[str] = frozenset(),
    keep_fds: Sequence[int] = (),
) -> tuple[LaunchPlan, Auth]:
    """A consistent plan (lowering agrees with the target) and its authority fds.

    ``landlock`` is a list of (path, access); ``cgroup_v2``/``cgroup_v1`` are dir fds the
    caller owns (the caller closes them; they are added to the table here).
    """
    auth = Auth()
    exe_fd = os.open(exe, os.O_RDONLY | os.O_CLOEXEC)
    auth.fds.append(AuthorityFd(EXE_SLOT, exe_fd))
    auth.table.append(
        DescriptorSlot(
            EXE_SLOT, DescriptorRole.TARGET_EXE, DescriptorShape(DescriptorKind.REGULAR, False)
        )
    )
    planned: list[tuple[mech.Primitive, canonical.Value]] = [
        (mech.EXEC, {"exe": exe, "argv": list(argv)})
    ]
    landlock_req = None
    if landlock is not None:
        rules = []
        for path, access in landlock:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            kind = DescriptorKind.DIRECTORY if Path(path).is_dir() else DescriptorKind.REGULAR
            slot = auth.add(fd, DescriptorRole.FS_ROOT, kind)
            rules.append(LandlockRule(slot, access))
        landlock_req = LandlockRequest(mech.LANDLOCK_ABI_FLOOR, tuple(rules))
        planned.append((mech.LANDLOCK, landlock_params(landlock)))
    placement = None
    if cgroup_v2 is not None or cgroup_v1:
        v2_slot = None
        if cgroup_v2 is not None:
            v2_slot = auth.add(
                os.dup(cgroup_v2), DescriptorRole.CGROUP_V2_LEAF, DescriptorKind.DIRECTORY
            )
        v1_slots = tuple(
            auth.add(os.dup(fd), DescriptorRole.CGROUP_V1_LEAF, DescriptorKind.DIRECTORY)
            for fd in cgroup_v1
        )
        placement = CgroupPlacement(v2_slot, v1_slots)
        cgroup_params: canonical.Value = {
            "v2_base": None if cgroup_v2 is None else "/sys/fs/cgroup/unified",
            "v1_bases": {f"controller{index}": "/sys/fs/cgroup" for index in range(len(v1_slots))},
        }
        planned.append((mech.CGROUP_LEAF, cgroup_params))
    uid, gid = os.getuid(), os.getgid()
    if userns:
        planned.append((mech.USERNS, {"uid": uid, "gid": gid}))
    if netns:
        planned.append((mech.NETNS, {}))
    env = [[name, {"literal": value}] for name, value in envp]
    planned.append((mech.AMBIENT_SCRUB, {"env": env, "keep_fds": [0, 1, 2, *keep_fds]}))
    if seccomp is not None:
        planned.append(
            (
                mech.SECCOMP,
                {"deny_new_tasks": seccomp.deny_new_tasks, "deny_sockets": seccomp.deny_sockets},
            )
        )
    entries, params = schedule(planned)
    target = TargetSpec(
        argv=tuple(argv),
        envp=tuple(envp),
        exe_slot=EXE_SLOT,
        user_namespace=UserNamespaceRequest(f"0 {uid} 1", f"0 {gid} 1") if userns else None,
        network_namespace=NetworkNamespaceRequest() if netns else None,
        seccomp=seccomp,
        landlock=landlock_req,
        cgroup=placement,
        keep_fds=tuple(keep_fds),  # the caller declares their INHERITED slots
    )
    body = LaunchBody(
        attempt_id=bytes([9]) * 32,
        plan_id=bytes([1]) * 32,
        h_a=bytes([2]) * 32,
        h_p=bytes([3]) * 32,
        h_l=lowering_digest(entries),
        lowering=entries,
        params=params,
        descriptor_table=tuple(auth.table),
        target=target,
        test_hooks=hooks,
    )
    return LaunchPlan(body), auth


class Gate:
    """Stdin for a workload that blocks until the test releases it."""

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe2(os.O_CLOEXEC)
        self.exec_done = threading.Event()
        self.lines: list[str] = []

    def on_line(self, line: str) -> None:
        self.lines.append(line)
        if line in ("ExecSucceeded", "SetupRefused", "SetupFaulted"):
            self.exec_done.set()

    def release(self, data: bytes = b"go\n") -> None:
        if self.write_fd >= 0:
            try:
                os.write(self.write_fd, data)
            finally:
                os.close(self.write_fd)
                self.write_fd = -1

    def close(self) -> None:
        self.release(b"")
        if self.read_fd >= 0:
            os.close(self.read_fd)
            self.read_fd = -1


class GatedRun:
    """Run the launcher in a thread with a gated stdin; look at /proc, then release."""

    def __init__(
        self,
        launcher_path: str,
        plan: LaunchPlan,
        auth: Auth,
        ready: bytes | None = None,
        **options: object,
    ) -> None:
        self.gate = Gate()
        self.result: LaunchObservation | None = None
        self.error: BaseException | None = None
        self.pid: int | None = None
        self._ready = ready
        self._stdout = bytearray()
        self._ready_event = threading.Event()
        opts = LaunchOptions(
            stdin_fd=self.gate.read_fd,
            on_control_line=self._line,
            on_stdout=self._out,
            **options,  # type: ignore[arg-type]
        )

        def work() -> None:
            try:
                self.result = run_launcher(launcher_path, plan, auth.fds, options=opts)
            except BaseException as exc:  # surfaced by finish()
                self.error = exc
            finally:
                self.gate.exec_done.set()
                self._ready_event.set()

        self.thread = threading.Thread(target=work, name="launcher-under-test")
        self.thread.start()

    def _line(self, line: str) -> None:
        if line.startswith("# workload pid="):
            self.pid = int(line.split("=", 1)[1])
        self.gate.on_line(line)

    def _out(self, chunk: bytes) -> None:
        self._stdout.extend(chunk)
        if self._ready is not None and self._ready in self._stdout:
            self._ready_event.set()

    def wait_exec(self) -> int:
        """Block until the launcher reached a terminal (and, if a ``ready`` marker was
        given, until the workload printed it); return the workload pid.

        The ready marker matters for fd oracles: right after exec the dynamic loader
        briefly holds its own fds (ld.so.cache, libraries), which are not leaks.
        """
        self.gate.exec_done.wait()
        if self._ready is not None:
            self._ready_event.wait()
        assert self.error is None, self.error
        assert self.pid is not None, f"no workload pid reported: {self.gate.lines}"
        assert "ExecSucceeded" in self.gate.lines, self.gate.lines
        return self.pid

    def finish(self) -> LaunchObservation:
        self.gate.release()
        self.thread.join()
        self.gate.close()
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


def open_sentinel() -> int:
    """A non-CLOEXEC fd the host leaks on purpose, numbered far above any slot or channel
    fd (so the host's own placements cannot overwrite it before it reaches the launcher).
    """
    fd = os.open("/", os.O_RDONLY | os.O_CLOEXEC)
    try:
        high = fcntl.fcntl(fd, fcntl.F_DUPFD, 400)
    finally:
        os.close(fd)
    os.set_inheritable(high, True)
    return high


def proc_fds(pid: int) -> list[int]:
    return sorted(int(name) for name in os.listdir(f"/proc/{pid}/fd"))


def proc_status_field(pid: int, name: str) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"/proc/{pid}/status has no {name}")


@dataclass
class Leaf:
    """A test cgroup directory and an O_DIRECTORY fd on it."""

    path: Path
    fd: int

    def procs(self) -> list[int]:
        return [int(x) for x in (self.path / "cgroup.procs").read_text().split()]


def _remove_leaf(leaf: Leaf, v2: bool) -> None:
    os.close(leaf.fd)
    if v2 and (leaf.path / "cgroup.kill").exists():
        (leaf.path / "cgroup.kill").write_text("1")
    for _ in range(100000):
        pids = leaf.procs()
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, 9)
        os.sched_yield()
    leaf.path.rmdir()


@pytest.fixture
def v2_leaf() -> Iterator[Leaf]:
    require_feature("cgroup2-kill")
    base = cgroup_v2_dir()
    assert base is not None
    path = base / f"bvisor-test-{os.getpid()}-{next(_counter)}"
    path.mkdir()
    leaf = Leaf(path, os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
    try:
        yield leaf
    finally:
        _remove_leaf(leaf, v2=True)


@pytest.fixture
def v1_pids_leaf() -> Iterator[Leaf]:
    require_feature("cgroup1-pids")
    base = cgroup_v1_dir("pids")
    assert base is not None
    path = base / f"bvisor-test-{os.getpid()}-{next(_counter)}"
    path.mkdir()
    leaf = Leaf(path, os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
    try:
        yield leaf
    finally:
        _remove_leaf(leaf, v2=False)
