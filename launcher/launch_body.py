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

import fcntl
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field

from bvisor.contract import mechanisms
from bvisor.contract.plan import BoundaryPlan
from launcher.cgroups import RunCgroup
from launcher.launch import AuthorityFd
from launcher.protocol import (
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
from launcher.secrets import SecretResolver

__all__ = ["FIRST_SLOT", "PreparedLaunch", "LaunchPreparationError", "prepare_launch"]

FIRST_SLOT = 10


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
        for authority in self.authority:
            handle = authority.handle
            if isinstance(handle, int):
                try:
                    os.close(handle)
                except OSError:
                    pass


def _kind_of(mode: int) -> DescriptorKind:
    if stat.S_ISDIR(mode):
        return DescriptorKind.DIRECTORY
    if stat.S_ISREG(mode):
        return DescriptorKind.REGULAR
    if stat.S_ISCHR(mode):
        return DescriptorKind.CHAR_DEVICE
    raise LaunchPreparationError("unsupported file type for a landlock rule")


class _SlotAllocator:
    """Hands out slot numbers and remembers the fds so a failure closes every one."""

    def __init__(self, first: int) -> None:
        self.next = first
        self.slots: list[DescriptorSlot] = []
        self.authority: list[AuthorityFd] = []

    def add(self, fd: int, role: DescriptorRole, shape: DescriptorShape, slot: int | None = None) -> int:
        index = self.next if slot is None else slot
        if slot is None:
            self.next += 1
        self.slots.append(DescriptorSlot(slot_index=index, role=role, expected=shape))
        self.authority.append(AuthorityFd(slot_index=index, handle=fd))
        return index

    def close_all(self) -> None:
        for authority in self.authority:
            if isinstance(authority.handle, int):
                try:
                    os.close(authority.handle)
                except OSError:
                    pass


def _env_table(params: Mapping[str, object], resolver: SecretResolver) -> tuple[tuple[str, str], ...]:
    table: list[tuple[str, str]] = []
    for name, value in params.get("env", []):  # type: ignore[union-attr]
        if "literal" in value:
            table.append((name, value["literal"]))
        else:
            table.append((name, resolver.resolve(value["lease"])))
    return tuple(table)


def _landlock(
    params: Mapping[str, object], alloc: _SlotAllocator, prepared_paths: list[str], skipped: list[str]
) -> LandlockRequest:
    wanted: list[tuple[str, str, bool]] = []  # (path, access, required)
    for rule in params["rules"]:  # type: ignore[union-attr]
        wanted.append((rule["path"], rule["access"], True))
    for path in params.get("system_read_roots", []):  # type: ignore[union-attr]
        wanted.append((path, "read", False))
    for path in params.get("device_rw", []):  # type: ignore[union-attr]
        wanted.append((path, "read_write", False))
    for path in params.get("device_read", []):  # type: ignore[union-attr]
        wanted.append((path, "read", False))
    rules: list[LandlockRule] = []
    for path, access, required in wanted:
        try:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except OSError as exc:
            if required:
                raise LaunchPreparationError(
                    f"filesystem root {path} cannot be opened: {exc.strerror}"
                ) from None
            skipped.append(path)
            continue
        try:
            kind = _kind_of(os.fstat(fd).st_mode)
        except LaunchPreparationError:
            os.close(fd)
            if required:
                raise LaunchPreparationError(f"filesystem root {path} is not a directory or file") from None
            skipped.append(path)
            continue
        slot = alloc.add(fd, DescriptorRole.FS_ROOT, DescriptorShape(kind=kind, writable=False))
        rules.append(LandlockRule(slot=slot, access=access))
        prepared_paths.append(f"{path}={access}")
    return LandlockRequest(abi_floor=int(params["abi_floor"]), rules=tuple(rules))  # type: ignore[call-overload]


def prepare_launch(
    plan: BoundaryPlan,
    attempt_id: bytes,
    resolver: SecretResolver,
    run_cgroup: RunCgroup | None,
    test_hooks: frozenset[str] = frozenset(),
) -> PreparedLaunch:
    """Open every handle the plan needs and build the launch body; nothing leaks on error."""
    params = {primitive.entry.id: primitive.params for primitive in plan.lowering}
    scrub = params.get(mechanisms.AMBIENT_SCRUB.id, {"env": [], "keep_fds": [0, 1, 2]})
    keep_fds = tuple(sorted(int(fd) for fd in scrub.get("keep_fds", [0, 1, 2])))
    inherited = [fd for fd in keep_fds if fd > 2]
    alloc = _SlotAllocator(max([FIRST_SLOT, *[fd + 1 for fd in inherited]]))
    skipped: list[str] = []
    landlock_paths: list[str] = []
    try:
        exec_params = params[mechanisms.EXEC.id]
        exe = str(exec_params["exe"])
        try:
            exe_fd = os.open(exe, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise LaunchPreparationError(f"workload executable {exe}: {exc.strerror}") from None
        if not stat.S_ISREG(os.fstat(exe_fd).st_mode):
            os.close(exe_fd)
            raise LaunchPreparationError(f"workload executable {exe} is not a regular file")
        exe_slot = alloc.add(
            exe_fd, DescriptorRole.TARGET_EXE, DescriptorShape(DescriptorKind.REGULAR, False)
        )
        for fd in inherited:
            duplicate = _dup_inherited(fd)
            alloc.add(duplicate, DescriptorRole.INHERITED, _shape_of(duplicate), slot=fd)

        landlock = None
        if mechanisms.LANDLOCK.id in params:
            landlock = _landlock(params[mechanisms.LANDLOCK.id], alloc, landlock_paths, skipped)

        cgroup = None
        if mechanisms.CGROUP_LEAF.id in params:
            if run_cgroup is None:
                raise LaunchPreparationError("the plan needs a run cgroup but none was prepared")
            v2_slot = None
            v2_fd = run_cgroup.open_v2_fd()
            if v2_fd is not None:
                v2_slot = alloc.add(
                    v2_fd, DescriptorRole.CGROUP_V2_LEAF, DescriptorShape(DescriptorKind.DIRECTORY, False)
                )
            v1_slots = tuple(
                alloc.add(fd, DescriptorRole.CGROUP_V1_LEAF, DescriptorShape(DescriptorKind.DIRECTORY, False))
                for _, fd in run_cgroup.open_v1_fds()
            )
            cgroup = CgroupPlacement(v2_slot=v2_slot, v1_slots=v1_slots)

        userns = None
        if mechanisms.USERNS.id in params:
            ids = params[mechanisms.USERNS.id]
            userns = UserNamespaceRequest(uid_map=f"0 {ids['uid']} 1", gid_map=f"0 {ids['gid']} 1")
        netns = NetworkNamespaceRequest() if mechanisms.NETNS.id in params else None
        seccomp = None
        if mechanisms.SECCOMP.id in params:
            rules = params[mechanisms.SECCOMP.id]
            seccomp = SeccompRequest(
                deny_new_tasks=bool(rules["deny_new_tasks"]),
                deny_non_unix_sockets=bool(rules["deny_non_unix_sockets"]),
            )
        target = TargetSpec(
            argv=tuple(str(arg) for arg in exec_params["argv"]),
            envp=_env_table(scrub, resolver),
            exe_slot=exe_slot,
            user_namespace=userns,
            network_namespace=netns,
            seccomp=seccomp,
            landlock=landlock,
            cgroup=cgroup,
            keep_fds=tuple(inherited),  # stdio is always kept; these are the extra slots
            no_new_privs=True,
        )
        body = LaunchBody(
            attempt_id=attempt_id,
            plan_id=plan.plan_id,
            h_a=plan.h_a,
            h_p=plan.h_p,
            h_l=plan.h_l,
            lowering=plan.entries,
            descriptor_table=tuple(alloc.slots),
            target=target,
            test_hooks=test_hooks,
        )
    except BaseException:
        alloc.close_all()
        raise
    return PreparedLaunch(LaunchPlan(body=body), alloc.authority, skipped, landlock_paths)


def _dup_inherited(fd: int) -> int:
    try:
        return os.dup(fd)
    except OSError as exc:
        raise LaunchPreparationError(
            f"inherited fd {fd} named by the spec is not open in the host: {exc.strerror}"
        ) from None


def _shape_of(fd: int) -> DescriptorShape:
    mode = os.fstat(fd).st_mode
    access = _access_mode(fd)
    kind = (
        DescriptorKind.DIRECTORY
        if stat.S_ISDIR(mode)
        else DescriptorKind.REGULAR
        if stat.S_ISREG(mode)
        else DescriptorKind.CHAR_DEVICE
        if stat.S_ISCHR(mode)
        else DescriptorKind.FIFO
        if stat.S_ISFIFO(mode)
        else DescriptorKind.SOCKET
    )
    return DescriptorShape(kind=kind, writable=access)


def _access_mode(fd: int) -> bool:
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    return (flags & os.O_ACCMODE) in (os.O_WRONLY, os.O_RDWR)
