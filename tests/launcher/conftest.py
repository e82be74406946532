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
    DescriptorKind,
    DescriptorRole,
    DescriptorShape,
    DescriptorSlot,
    LaunchBody,
    LaunchPlan,
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
    """Entries in the planner's order (phase, then id) and their params."""
    ordered = sorted(planned, key=lambda item: (int(item[0].phase), item[0].id))
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
        self,
        fd: int,
        role: DescriptorRole,
        kind: DescriptorKind,
        writable: bool = False,
        path: str | None = None,
    ) -> int:
        slot = self.next_slot
        self.next_slot += 1
        self.fds.append(AuthorityFd(slot, fd))
        self.table.append(DescriptorSlot(slot, role, DescriptorShape(kind, writable), path))
        return slot

    def close(self) -> None:
        for authority in self.fds:
            with contextlib.suppress(OSError):
                os.close(authority.fileno())


def landlock_params(rules: Sequence[tuple[str, str]]) -> mech.LandlockApply:
    """Landlock parameters for exactly these host roots (no private root's own paths)."""
    return mech.LandlockApply(
        mech.LANDLOCK_ABI_FLOOR,
        tuple(
            mech.PathRule(path, "read" if access == "read" else "write") for path, access in rules
        ),
        (),
        (),
    )


def deny_new_tasks() -> mech.Seccomp:
    """The seed's ``SeccompRequest::deny_new_tasks()``."""
    return mech.Seccomp(deny_new_tasks=True, deny_sockets=False, threads_only=False)


def private_root(
    roots: Sequence[tuple[str, str]], cwd: str = "/", *, tmp: bool = False
) -> mech.Rootfs:
    """A mount table like the planner's: ``roots`` (host path, access) at their own paths
    (system roots optional), a private /tmp when ``tmp``, /dev and /proc."""
    system = {"/usr", "/lib", "/lib64", "/bin", "/sbin", "/etc"}
    mounts: list[mech.Mount] = [
        mech.BindMount(path, path, "read" if access == "read" else "write", path not in system)
        for path, access in roots
    ]
    if tmp:
        mounts.append(mech.TmpfsMount("/tmp", 64 << 20, 0o1777))
    mounts += [mech.DevMount("/dev", ("null", "urandom", "zero"), 1 << 20, False)]
    mounts.append(mech.ProcMount("/proc"))
    ordered = sorted(mounts, key=lambda m: tuple(p for p in m.dest.split("/") if p))
    return mech.Rootfs(tuple(ordered), cwd)


def _kind_of(path: str) -> DescriptorKind:
    if Path(path).is_symlink():
        return DescriptorKind.SYMLINK
    return DescriptorKind.DIRECTORY if Path(path).is_dir() else DescriptorKind.REGULAR


def build_plan(
    exe: str,
    argv: Sequence[str],
    *,
    envp: Sequence[tuple[str, str]] = (("PATH", "/usr/bin:/bin"),),
    seccomp: mech.Seccomp | None = None,
    landlock: Sequence[tuple[str, str]] | None = None,
    rootfs: mech.Rootfs | None = None,
    userns: bool = False,
    netns: bool = False,
    pidns: bool = False,
    utsns: mech.UtsNamespace | None = None,
    cgroup_v2: int | None = None,
    cgroup_v1: Sequence[int] = (),
    hooks: frozenset[str] = frozenset(),
    keep_fds: Sequence[int] = (),
    secrets: Sequence[tuple[str, str]] = (),
    outputs: mech.Outputs | None = None,
    staging: int | None = None,
) -> tuple[LaunchPlan, Auth]:
    """A consistent launch body (schedule, typed params, slots) and its authority fds.

    ``landlock`` is a list of (host path, access); ``rootfs`` a mount table whose bind
    sources are opened here; ``cgroup_v2``/``cgroup_v1`` are dir fds the caller owns (the
    caller closes them; duplicates are added to the table here). ``secrets`` are
    (variable name, lease) pairs whose value is ``value-of-<lease>``. ``outputs`` schedules
    the outputs walk; ``staging`` is a directory fd (the caller's; a duplicate is passed)
    for its commit.
    """
    auth = Auth()
    exe_fd = os.open(exe, os.O_RDONLY | os.O_CLOEXEC)
    auth.fds.append(AuthorityFd(EXE_SLOT, exe_fd))
    auth.table.append(
        DescriptorSlot(
            EXE_SLOT, DescriptorRole.TARGET_EXE, DescriptorShape(DescriptorKind.REGULAR, False)
        )
    )
    planned: list[tuple[mech.Primitive, mech.Params]] = [
        (mech.EXEC, mech.Exec(exe, tuple(argv))),
        (mech.NO_NEW_PRIVS, mech.NoParams()),
    ]
    roots: list[str] = []
    if rootfs is not None:
        roots += [bind.source for bind in rootfs.binds() if os.path.lexists(bind.source)]
        planned.append((mech.ROOTFS, rootfs))
        pidns = True  # the private root is built by the namespace's init
        userns = userns or os.getuid() != 0
    if landlock is not None:
        roots += [path for path, _ in landlock]
        planned.append((mech.LANDLOCK, landlock_params(landlock)))
    for path in dict.fromkeys(roots):
        fd = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
        auth.add(fd, DescriptorRole.FS_ROOT, _kind_of(path), path=path)
    if cgroup_v2 is not None or cgroup_v1:
        if cgroup_v2 is not None:
            auth.add(os.dup(cgroup_v2), DescriptorRole.CGROUP_V2_LEAF, DescriptorKind.DIRECTORY)
        names = [f"controller{index}" for index in range(len(cgroup_v1))]
        for name, fd in zip(names, cgroup_v1, strict=True):
            auth.add(os.dup(fd), DescriptorRole.CGROUP_V1_LEAF, DescriptorKind.DIRECTORY, path=name)
        leaf = mech.CgroupLeaf(
            None if cgroup_v2 is None else "/sys/fs/cgroup/unified",
            tuple((name, "/sys/fs/cgroup") for name in names),
        )
        planned.append((mech.CGROUP_LEAF, leaf))
    uid, gid = os.getuid(), os.getgid()
    if userns:
        planned.append((mech.USERNS, mech.UserNamespace(uid, gid)))
    if netns:
        planned.append((mech.NETNS, mech.NoParams()))
    if pidns:
        planned.append((mech.PIDNS, mech.NoParams()))
    if utsns is not None:
        planned.append((mech.UTSNS, utsns))
    env = [mech.EnvSource(name, value, None) for name, value in envp]
    env += [mech.EnvSource(name, None, lease) for name, lease in secrets]
    planned.append((mech.AMBIENT_SCRUB, mech.AmbientScrub(tuple(env), (0, 1, 2, *keep_fds), False)))
    if seccomp is not None:
        planned.append((mech.SECCOMP, seccomp))
    if outputs is not None:
        planned.append((mech.OUTPUTS, outputs))
    if staging is not None:
        auth.add(os.dup(staging), DescriptorRole.ARTIFACT_STAGING, DescriptorKind.DIRECTORY)
    entries, params = schedule([(p, value.to_value()) for p, value in planned])
    body = LaunchBody(
        attempt_id=bytes([9]) * 32,
        plan_id=bytes([1]) * 32,
        h_a=bytes([2]) * 32,
        h_p=bytes([3]) * 32,
        h_l=lowering_digest(entries),
        lowering=entries,
        params=params,
        descriptor_table=tuple(auth.table),
        secrets=tuple(sorted({(lease, f"value-of-{lease}") for _, lease in secrets})),
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


@contextlib.contextmanager
def _made_leaf(base: Path, *, v2: bool) -> Iterator[Leaf]:
    """A fresh test cgroup beneath ``base``, emptied and removed afterwards."""
    path = base / f"bvisor-test-{os.getpid()}-{next(_counter)}"
    path.mkdir()
    leaf = Leaf(path, os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
    try:
        yield leaf
    finally:
        _remove_leaf(leaf, v2=v2)


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
    with _made_leaf(base, v2=True) as leaf:
        yield leaf


@pytest.fixture
def v1_pids_leaf() -> Iterator[Leaf]:
    require_feature("cgroup1-pids")
    base = cgroup_v1_dir("pids")
    assert base is not None
    with _made_leaf(base, v2=False) as leaf:
        yield leaf


@pytest.fixture
def v1_refusing_leaf() -> Iterator[Leaf]:
    """A v1 cpuset leaf with no CPUs: the kernel refuses any task joining it (ENOSPC)."""
    base = cgroup_v1_dir("cpuset")
    if base is None or not (base / "cpuset.cpus").exists():
        pytest.skip("no cgroup v1 cpuset hierarchy here (nothing claims one; this test needs it)")
    with _made_leaf(base, v2=False) as leaf:
        yield leaf
