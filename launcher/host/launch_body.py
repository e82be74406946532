"""Turn an admitted plan into a launch body and the authority fds it names.

The plan says *what* (lowering entries with parameters); the launch body says *with which
handles*. Every path the plan mentions is opened here, once, by the host, and travels to
the launcher as an fd at a declared slot: the launcher and the child never re-open a path,
so a rename or symlink swap between planning and exec cannot change what is confined.

Slot layout: fds named by ``InheritedFds{Only}`` keep their own numbers (that is the
contract the workload was written against); authority slots start at ``FIRST_SLOT`` or
just above the highest inherited fd, whichever is higher.
"""

from __future__ import annotations

import contextlib
import os
import stat
from dataclasses import dataclass, field

from bvisor.contract.plan import BoundaryPlan
from bvisor.launcher.basement import fds
from bvisor.launcher.basement.cgroups import RunCgroup
from bvisor.launcher.basement.paths import SymlinkInPath, open_no_symlinks
from bvisor.launcher.host.launch import AuthorityFd
from bvisor.launcher.host.secrets import SecretResolver
from bvisor.launcher.wire.lowered import EnvSource, LandlockParams, LoweredParams
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

__all__ = ["FIRST_SLOT", "LaunchPreparationError", "PreparedLaunch", "prepare_launch"]

FIRST_SLOT = 10
SCOPE_ONLY_ABI = 6  # Landlock IPC scopes arrived in ABI 6


class LaunchPreparationError(RuntimeError):
    """The host could not assemble the launch (a path vanished, a lease is missing...)."""


@dataclass
class PreparedLaunch:
    """A launch plan plus the fds it names; ``close()`` releases the host's copies."""

    plan: LaunchPlan
    authority: list[AuthorityFd]
    skipped_paths: list[str] = field(default_factory=list)
    landlock_paths: list[str] = field(default_factory=list)

    def close(self) -> None:
        _close_quietly(self.authority)


def _close_quietly(authorities: list[AuthorityFd]) -> None:
    """Release the host's copies of authority fds; a double close is harmless here."""
    for authority in authorities:
        if isinstance(authority.handle, int):
            with contextlib.suppress(OSError):
                os.close(authority.handle)


# Kinds a Landlock path-beneath rule can be anchored on.
_LANDLOCK_KINDS = frozenset(
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
        self, fd: int, role: DescriptorRole, shape: DescriptorShape, slot: int | None = None
    ) -> int:
        index = self.next if slot is None else slot
        if slot is None:
            self.next += 1
        self.slots.append(DescriptorSlot(slot_index=index, role=role, expected=shape))
        self.authority.append(AuthorityFd(slot_index=index, handle=fd))
        return index

    def close_all(self) -> None:
        _close_quietly(self.authority)


def _env_table(
    sources: tuple[EnvSource, ...], resolver: SecretResolver
) -> tuple[tuple[str, str], ...]:
    """The child's environment; lease values are resolved here and go nowhere else."""
    return tuple(
        (
            source.name,
            source.literal if source.literal is not None else resolver.resolve(source.lease or ""),
        )
        for source in sources
    )


def _landlock(
    params: LandlockParams, alloc: _SlotAllocator, prepared: list[str], skipped: list[str]
) -> LandlockRequest:
    wanted: list[tuple[str, str, bool]] = [(path, access, True) for path, access in params.rules]
    wanted += [(path, "read", False) for path in params.system_read_roots]
    wanted += [(path, "read_write", False) for path in params.device_rw]
    wanted += [(path, "read", False) for path in params.device_read]
    rules: list[LandlockRule] = []
    for path, access, required in wanted:
        try:
            fd = open_no_symlinks(path, os.O_PATH | os.O_CLOEXEC)
        except SymlinkInPath as exc:
            if required:
                raise LaunchPreparationError(f"filesystem root {exc.strerror}") from None
            # An optional system root that is a link (/lib -> usr/lib): its target is
            # covered by the real root it points into, or not granted at all.
            skipped.append(f"{path} (symbolic link)")
            continue
        except OSError as exc:
            if required:
                raise LaunchPreparationError(
                    f"filesystem root {path} cannot be opened: {exc.strerror}"
                ) from None
            skipped.append(path)  # an optional system root this host does not have
            continue
        try:
            shape: DescriptorShape | None = _shape_of(fd)
        except LaunchPreparationError:
            shape = None
        if shape is None or shape.kind not in _LANDLOCK_KINDS:
            os.close(fd)
            if required:
                raise LaunchPreparationError(
                    f"filesystem root {path} is not a directory, file or device"
                )
            skipped.append(path)
            continue
        slot = alloc.add(fd, DescriptorRole.FS_ROOT, shape)
        rules.append(LandlockRule(slot=slot, access=access))
        prepared.append(f"{path}={access}")
    return LandlockRequest(abi_floor=params.abi_floor, rules=tuple(rules), scope=params.scope)


def _open_exe(path: str) -> int:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise LaunchPreparationError(f"workload executable {path}: {exc.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise LaunchPreparationError(f"workload executable {path} is not a regular file")
    return fd


def _cgroup_slots(run_cgroup: RunCgroup, alloc: _SlotAllocator) -> CgroupPlacement:
    directory = DescriptorShape(DescriptorKind.DIRECTORY, False)
    v2_fd = run_cgroup.open_v2_fd()
    v2_slot = None if v2_fd is None else alloc.add(v2_fd, DescriptorRole.CGROUP_V2_LEAF, directory)
    v1_slots = tuple(
        alloc.add(fd, DescriptorRole.CGROUP_V1_LEAF, directory)
        for _, fd in run_cgroup.open_v1_fds()
    )
    return CgroupPlacement(v2_slot=v2_slot, v1_slots=v1_slots)


def prepare_launch(
    plan: BoundaryPlan,
    lowered: LoweredParams,
    attempt_id: bytes,
    resolver: SecretResolver,
    run_cgroup: RunCgroup | None,
    test_hooks: frozenset[str] = frozenset(),
) -> PreparedLaunch:
    """Open every handle the plan needs and build the launch body; nothing leaks on error."""
    inherited = [fd for fd in lowered.keep_fds if fd > 2]
    alloc = _SlotAllocator(max([FIRST_SLOT, *[fd + 1 for fd in inherited]]))
    skipped: list[str] = []
    landlock_paths: list[str] = []
    try:
        # The caller's fds first, before this function opens anything that could take a
        # number the spec names.
        for fd in inherited:
            duplicate = _dup_inherited(fd)
            alloc.add(
                duplicate, DescriptorRole.INHERITED, _inheritable_shape(fd, duplicate), slot=fd
            )
        exe_slot = alloc.add(
            _open_exe(lowered.exe),
            DescriptorRole.TARGET_EXE,
            DescriptorShape(DescriptorKind.REGULAR, False),
        )
        landlock = None
        if lowered.landlock is not None:
            landlock = _landlock(lowered.landlock, alloc, landlock_paths, skipped)
        elif lowered.landlock_scope_only is not None:
            landlock = LandlockRequest(
                abi_floor=SCOPE_ONLY_ABI,
                rules=(),
                scope=lowered.landlock_scope_only,
                handle_filesystem=False,
            )
        cgroup = None
        if lowered.cgroup is not None:
            if run_cgroup is None:
                raise LaunchPreparationError("the plan needs a run cgroup but none was prepared")
            cgroup = _cgroup_slots(run_cgroup, alloc)
        target = TargetSpec(
            argv=lowered.argv,
            envp=_env_table(lowered.env, resolver),
            exe_slot=exe_slot,
            user_namespace=None
            if lowered.userns is None
            else UserNamespaceRequest(
                uid_map=f"0 {lowered.userns[0]} 1", gid_map=f"0 {lowered.userns[1]} 1"
            ),
            network_namespace=NetworkNamespaceRequest() if lowered.netns else None,
            seccomp=None
            if lowered.seccomp is None
            else SeccompRequest(deny_new_tasks=lowered.seccomp[0], deny_sockets=lowered.seccomp[1]),
            landlock=landlock,
            cgroup=cgroup,
            keep_fds=tuple(inherited),  # stdio is always kept; these are the extra slots
            no_new_privs=True,
            drop_capabilities=lowered.caps_drop,
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
            target=target,
            test_hooks=test_hooks,
        )
    except BaseException:
        alloc.close_all()
        raise
    return PreparedLaunch(LaunchPlan(body=body), alloc.authority, skipped, landlock_paths)


def _inheritable_shape(fd: int, duplicate: int) -> DescriptorShape:
    """The shape of an inherited fd, refusing kinds that would reach past the roots.

    A directory fd (or an ``O_PATH`` one) lives on the host's mounts, not on the workload's
    read-only view, and names paths relative to itself (``..`` included): through it the
    workload could chmod, utime or set xattrs on host files Landlock never sees.
    """
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
