"""Turn an admitted plan into a launch body and the authority fds it names.

The plan says *what* (lowering entries with typed parameters); the launch body says *with
which handles*: every path a parameter names — the executable, each root the workload's
private root binds or its Landlock domain grants — is opened here, and each cgroup leaf,
and each kept fd is duplicated, all generically from the parameters (a new mechanism that
names a path needs nothing here beyond its parameter type). Each is opened once, by the
host, and travels to the launcher as an fd at a declared slot: the launcher never
re-opens a path, and the child re-finds a root by path only to check it is the very inode
this fd names, so a rename or symlink swap cannot change what is confined.

A plan that commits its outputs also gets the run's artifact staging directory (made by
:mod:`bvisor.launcher.host.artifacts`) as an ``ArtifactStaging`` slot.

With a network allow list the host also makes the channel its proxy receives the
listener on: a socketpair, one end a ``NetProxy`` slot of the launcher's, the other kept
here for the proxy (:attr:`PreparedLaunch.netproxy_channel`, the caller's to close).

Slot layout: fds named by ``InheritedFds{Only}`` keep their own numbers (that is the
contract the workload was written against); authority slots start at ``FIRST_SLOT`` or
just above the highest inherited fd, whichever is higher.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
from dataclasses import dataclass, field

from bvisor.contract import mechanisms as mech
from bvisor.contract.plan import BoundaryPlan
from bvisor.launcher.basement import fds
from bvisor.launcher.basement.cgroups import RunCgroup
from bvisor.launcher.basement.paths import SymlinkInPath, open_no_symlinks
from bvisor.launcher.host import resident
from bvisor.launcher.host.launch import AuthorityFd
from bvisor.launcher.host.secrets import SecretResolver
from bvisor.launcher.wire.lowered import LoweredParams
from bvisor.launcher.wire.protocol import (
    DescriptorKind,
    DescriptorRole,
    DescriptorShape,
    DescriptorSlot,
    LaunchBody,
    LaunchPlan,
)

__all__ = ["FIRST_SLOT", "LaunchPreparationError", "PreparedLaunch", "prepare_launch"]

FIRST_SLOT = 10


class LaunchPreparationError(RuntimeError):
    """The host could not assemble the launch (a path vanished, a lease is missing...)."""


@dataclass
class PreparedLaunch:
    """A launch plan plus the fds it names; ``close()`` releases the host's copies."""

    plan: LaunchPlan
    authority: list[AuthorityFd]
    skipped_paths: list[str] = field(default_factory=list)
    granted_paths: list[str] = field(default_factory=list)
    netproxy_channel: socket.socket | None = None

    def close(self) -> None:
        _close_quietly(self.authority)


def _close_quietly(authorities: list[AuthorityFd]) -> None:
    """Release the host's copies of authority fds; a double close is harmless here."""
    for authority in authorities:
        if isinstance(authority.handle, int):
            with contextlib.suppress(OSError):
                os.close(authority.handle)


# Kinds a root (a bind source or a Landlock rule) can be.
_ROOT_KINDS = frozenset(
    {DescriptorKind.DIRECTORY, DescriptorKind.REGULAR, DescriptorKind.CHAR_DEVICE}
)


def _shape_of(fd: int) -> DescriptorShape:
    """What the kernel says ``fd`` is (the same facts the launcher will check it against)."""
    facts = fds.inspect(fd)
    try:
        kind = DescriptorKind(facts.kind)
    except ValueError:
        raise LaunchPreparationError(f"fd {fd} is a {facts.kind}, which cannot be passed") from None
    return DescriptorShape(kind=kind, writable=facts.writable)


class _SlotAllocator:
    """Hands out slot numbers and remembers the fds so a failure closes every one."""

    def __init__(self, first: int) -> None:
        self.next = first
        self.slots: list[DescriptorSlot] = []
        self.authority: list[AuthorityFd] = []

    def add(
        self,
        fd: int,
        role: DescriptorRole,
        shape: DescriptorShape,
        *,
        slot: int | None = None,
        path: str | None = None,
    ) -> int:
        index = self.next if slot is None else slot
        if slot is None:
            self.next += 1
        self.slots.append(DescriptorSlot(index, role, shape, path))
        self.authority.append(AuthorityFd(slot_index=index, handle=fd))
        return index

    def close_all(self) -> None:
        _close_quietly(self.authority)


def _wanted_roots(lowered: LoweredParams) -> dict[str, tuple[bool, str]]:
    """Every host path the plan grants: ``path -> (required, access)``, in plan order.

    A bind's own flag says whether it is required; a Landlock rule without a bind (a root
    granted on the host tree itself) always is.
    """
    wanted: dict[str, tuple[bool, str]] = {}
    rootfs = lowered.rootfs
    for bind in () if rootfs is None else rootfs.binds():
        wanted[bind.source] = (bind.required, bind.access)
    landlock = lowered.landlock
    for rule in () if landlock is None else landlock.rules:
        wanted.setdefault(rule.path, (True, rule.access))
    return wanted


def _open_root(path: str, required: bool) -> tuple[int, DescriptorShape] | None:
    """An O_PATH fd for a granted root, opened without following any link on the way.

    A root whose last component is a link is passed as the link itself when it is
    optional (a system root such as ``/lib -> usr/lib``, recreated inside the root); a
    required one must be named by its real path. None: an optional root this host lacks.
    """
    try:
        fd = open_no_symlinks(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    except SymlinkInPath as exc:
        raise LaunchPreparationError(f"filesystem root {exc.strerror}") from None
    except FileNotFoundError:
        if required:
            raise LaunchPreparationError(f"filesystem root {path} does not exist") from None
        return None
    except OSError as exc:
        if required:
            raise LaunchPreparationError(
                f"filesystem root {path} cannot be opened: {exc.strerror}"
            ) from None
        return None
    shape = _shape_of(fd)
    if shape.kind is DescriptorKind.SYMLINK and not required:
        return fd, shape
    if shape.kind not in _ROOT_KINDS:
        os.close(fd)
        what = "a symbolic link" if shape.kind is DescriptorKind.SYMLINK else "not a directory"
        raise LaunchPreparationError(
            f"filesystem root {path} is {what}, file or device; name its real path"
        )
    return fd, shape


def _open_exe(path: str) -> int:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise LaunchPreparationError(f"workload executable {path}: {exc.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise LaunchPreparationError(f"workload executable {path} is not a regular file")
    return fd


def _cgroup_slots(run_cgroup: RunCgroup, alloc: _SlotAllocator) -> None:
    directory = DescriptorShape(DescriptorKind.DIRECTORY, False)
    v2_fd = run_cgroup.open_v2_fd()
    if v2_fd is not None:
        alloc.add(v2_fd, DescriptorRole.CGROUP_V2_LEAF, directory)
    for controller, fd in run_cgroup.open_v1_fds():
        alloc.add(fd, DescriptorRole.CGROUP_V1_LEAF, directory, path=controller)


def _secrets(lowered: LoweredParams, resolver: SecretResolver) -> tuple[tuple[str, str], ...]:
    """The value of every lease the environment names (they go into the body only)."""
    refs = sorted({source.lease for source in lowered.env if source.lease is not None})
    return tuple((ref, resolver.resolve(ref)) for ref in refs)


def prepare_launch(
    plan: BoundaryPlan,
    lowered: LoweredParams,
    attempt_id: bytes,
    resolver: SecretResolver,
    run_cgroup: RunCgroup | None,
    test_hooks: frozenset[str] = frozenset(),
    artifact_staging: int | None = None,
) -> PreparedLaunch:
    """Open every handle the plan needs and build the launch body; nothing leaks on error.

    ``artifact_staging``: the directory fd of the run's artifact staging directory when the
    plan commits its outputs (the launch then owns it: ``close()`` releases it).
    """
    inherited = [fd for fd in lowered.keep_fds if fd > 2]
    alloc = _SlotAllocator(max([FIRST_SLOT, *[fd + 1 for fd in inherited]]))
    skipped: list[str] = []
    granted: list[str] = []
    channel: socket.socket | None = None
    try:
        # The caller's fds first, before this function opens anything that could take a
        # number the spec names.
        for fd in inherited:
            duplicate = _dup_inherited(fd)
            alloc.add(
                duplicate, DescriptorRole.INHERITED, _inheritable_shape(fd, duplicate), slot=fd
            )
        alloc.add(
            _open_exe(lowered.exe),
            DescriptorRole.TARGET_EXE,
            DescriptorShape(DescriptorKind.REGULAR, False),
        )
        for path, (required, access) in _wanted_roots(lowered).items():
            opened = _open_root(path, required)
            if opened is None:
                skipped.append(path)
                continue
            fd, shape = opened
            alloc.add(fd, DescriptorRole.FS_ROOT, shape, path=path)
            if shape.kind is DescriptorKind.SYMLINK:
                skipped.append(f"{path} (symbolic link)")
            else:
                granted.append(f"{path}={access}")
        if lowered.has(mech.CGROUP_LEAF):
            if run_cgroup is None:
                raise LaunchPreparationError("the plan needs a run cgroup but none was prepared")
            _cgroup_slots(run_cgroup, alloc)
        if artifact_staging is not None:
            directory = DescriptorShape(DescriptorKind.DIRECTORY, False)
            alloc.add(artifact_staging, DescriptorRole.ARTIFACT_STAGING, directory)
            artifact_staging = None  # the allocator owns it now
        elif lowered.commits:
            raise LaunchPreparationError("the plan commits its outputs but has no staging")
        if lowered.netproxy is not None:
            channel, launcher_end = socket.socketpair(
                socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC
            )
            alloc.add(
                launcher_end.detach(),
                DescriptorRole.NET_PROXY,
                DescriptorShape(DescriptorKind.SOCKET, True),
            )
        body = LaunchBody(
            attempt_id=attempt_id,
            plan_id=plan.plan_id,
            h_a=plan.h_a,
            h_p=plan.h_p,
            h_l=plan.h_l,
            lowering=plan.entries,
            params=tuple(primitive.params for primitive in plan.lowering),
            descriptor_table=tuple(alloc.slots),
            secrets=_secrets(lowered, resolver),
            test_hooks=test_hooks,
        )
    except BaseException:
        alloc.close_all()
        if artifact_staging is not None:
            os.close(artifact_staging)
        if channel is not None:
            channel.close()
        raise
    return PreparedLaunch(LaunchPlan(body=body), alloc.authority, skipped, granted, channel)


def _inheritable_shape(fd: int, duplicate: int) -> DescriptorShape:
    """The shape of an inherited fd, refusing kinds that would reach past the roots.

    A directory fd (or an ``O_PATH`` one) lives on the host's mounts, not on the workload's
    read-only view, and names paths relative to itself (``..`` included): through it the
    workload could chmod, utime or set xattrs on host files Landlock never sees.
    """
    if resident.holds_socket_of(duplicate):
        os.close(duplicate)
        raise LaunchPreparationError(
            f"inherited fd {fd} is this process's resident launcher socket: through it the "
            "workload could hand the launcher a plan of its own; pass the fd you meant to give"
        )
    facts = fds.inspect(duplicate)
    if facts.kind == DescriptorKind.DIRECTORY.value or facts.access == "path":
        os.close(duplicate)
        what = "a directory" if facts.kind == DescriptorKind.DIRECTORY.value else "an O_PATH fd"
        raise LaunchPreparationError(
            f"inherited fd {fd} is {what}: it would reach host paths outside the filesystem "
            "roots; pass a regular file, pipe or socket instead"
        )
    return _shape_of(duplicate)


def _dup_inherited(fd: int) -> int:
    try:
        return os.dup(fd)
    except OSError as exc:
        raise LaunchPreparationError(
            f"inherited fd {fd} named by the spec is not open in the host: {exc.strerror}"
        ) from None
