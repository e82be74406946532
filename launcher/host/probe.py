"""The one place the planner reads the host: kernel facts -> :class:`HostFacts`.

Everything else in ``planner`` is a pure function of a spec and a profile snapshot, so that
the replayer can re-run admission from the ledger alone. This module is the exception and
is kept small and honest: each fact is established by asking the kernel directly (a
syscall, a ``/proc`` or ``/sys`` file, a throwaway child process or cgroup directory), and
*how* it was established is written into ``probe_notes`` so the profile (and so h_p)
records the reasoning, not only the answer. A probe that fails in any way reports the
feature as absent: the ceiling then marks the cells that need it Unsupported, and
admission refuses (fail closed).

The probe makes no confinement syscall of its own: Landlock and the namespaces are asked
through the launcher's basement (a forked C child tries the namespaces). Side effects, all
undone before returning: that short child, and one empty probe directory
``bvisor-probe-<pid>-<random>`` per cgroup hierarchy we might use.
"""

from __future__ import annotations

import contextlib
import errno
import os
from dataclasses import dataclass
from pathlib import Path

import blake3

from bvisor.contract.profile import HostFacts, ProfileSnapshot
from bvisor.launcher.basement import landlock
from bvisor.launcher.basement.audit import probe_audit
from bvisor.launcher.basement.namespaces import probe_namespaces

__all__ = [
    "LINUX_BACKEND_ID",
    "CgroupMount",
    "file_identity",
    "linux_profile",
    "own_memory_limit",
    "parse_mountinfo",
    "parse_proc_cgroup",
    "probe_host",
]

LINUX_BACKEND_ID = "linux"

_PROC_SELF_CGROUP = Path("/proc/self/cgroup")
_PROC_SELF_MOUNTINFO = Path("/proc/self/mountinfo")
_SECCOMP_ACTIONS = Path("/proc/sys/kernel/seccomp/actions_avail")
_MAX_USER_NAMESPACES = Path("/proc/sys/user/max_user_namespaces")

# v1 controllers the Linux backend can cap with, and the limit file a leaf must expose.
_V1_LIMIT_FILES: dict[str, str] = {"memory": "memory.limit_in_bytes", "pids": "pids.max"}


@dataclass(frozen=True, slots=True)
class CgroupMount:
    """One cgroup mount from mountinfo: where it is, what it shows, which controllers."""

    mount_point: str
    root: str
    version: int  # 1 or 2
    controllers: tuple[str, ...]  # v1: controllers bound to this hierarchy; v2: ()


def probe_host(launcher_path: str | None = None) -> HostFacts:
    """Probe this host once and return every fact the Linux ceiling depends on."""
    notes: list[str] = []
    release, arch = os.uname().release, os.uname().machine
    landlock_abi = _probe_landlock(notes)
    seccomp_filter, actions = _probe_seccomp(notes)
    max_userns = _read_int(_MAX_USER_NAMESPACES)
    notes.append(f"max_user_namespaces: {max_userns} from {_MAX_USER_NAMESPACES}")
    userns, netns, pidns, loopback, utsns = _probe_namespaces(notes)
    v2_mount, v2_base, v2_kill, v2_controllers, v1_bases = _probe_cgroups(notes)
    audit = probe_audit()
    notes.append(
        f"audit_readable: {str(audit.usable).lower()} ({audit.why}; bvisor never enables audit)"
    )
    identity = None
    if launcher_path is not None:
        identity = file_identity(launcher_path)
        if identity is None:
            notes.append(f"launcher: {launcher_path} could not be read; identity unknown")
        else:
            notes.append(f"launcher: BLAKE3 of the file at {launcher_path}")
    return HostFacts(
        kernel_release=release,
        arch=arch,
        landlock_abi=landlock_abi,
        seccomp_filter=seccomp_filter,
        seccomp_actions=actions,
        userns=userns,
        netns=netns,
        max_user_namespaces=max_userns,
        cgroup_v2_mount=v2_mount,
        cgroup_v2_base=v2_base,
        cgroup_v2_kill=v2_kill,
        cgroup_v2_controllers=v2_controllers,
        cgroup_v1_bases=v1_bases,
        host_uid=os.getuid(),
        host_gid=os.getgid(),
        launcher_path=launcher_path,
        launcher_identity=identity,
        probe_notes=tuple(notes),
        pidns=pidns,
        audit_readable=audit.usable,
        netns_loopback=loopback,
        utsns=utsns,
    )


def linux_profile(launcher_path: str | None = None) -> ProfileSnapshot:
    """Probe the host and derive the Linux ceiling: the snapshot a plan is admitted against."""
    from bvisor.planner.rules import CURRENT

    facts = probe_host(launcher_path)
    return ProfileSnapshot(LINUX_BACKEND_ID, facts, CURRENT.ceiling(facts))


def file_identity(path: str) -> str | None:
    """Plain BLAKE3 (hex) of a file's bytes, comparable with ``b3sum``; None if unreadable."""
    hasher = blake3.blake3()
    try:
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                hasher.update(chunk)
    except OSError:
        return None
    return hasher.hexdigest()


# -- Landlock and seccomp ------------------------------------------------------------------


def _probe_landlock(notes: list[str]) -> int:
    try:
        abi = landlock.abi_version()
    except landlock.LandlockError as exc:
        name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
        notes.append(f"landlock_abi: 0 (landlock_create_ruleset VERSION failed: {name})")
        return 0
    notes.append(f"landlock_abi: {abi} from landlock_create_ruleset(NULL, 0, VERSION)")
    return abi


def _probe_seccomp(notes: list[str]) -> tuple[bool, tuple[str, ...]]:
    try:
        text = _SECCOMP_ACTIONS.read_text(encoding="ascii")
    except OSError as exc:
        notes.append(f"seccomp_filter: false ({_SECCOMP_ACTIONS} unreadable: {exc.strerror})")
        return False, ()
    actions = tuple(text.split())
    notes.append(f"seccomp_filter: true; actions from {_SECCOMP_ACTIONS}")
    return True, actions


# -- namespaces ----------------------------------------------------------------------------


def _probe_namespaces(notes: list[str]) -> tuple[bool, bool, bool, bool, bool]:
    """``(userns, netns, pidns, netns_loopback, utsns)``: what a child of ours may do, tried.

    As root, the user namespace is tried too (a root launcher still gives the workload one
    when it can), and the private root is tried inside it when it works, as runs make it.
    """
    as_root = os.getuid() == 0
    inside = probe_namespaces(as_root=False)
    facts = inside if inside.userns or not as_root else probe_namespaces(as_root=True)
    how = f"in a probe child as uid {os.getuid()}"
    userns = inside.userns
    notes.append(
        f"userns: {str(userns).lower()}, netns: {str(facts.netns).lower()}, "
        f"pidns (mount+PID namespace, tmpfs and procfs mounted): "
        f"{str(facts.private_root).lower()}, netns_loopback (lo up, a TCP listener on "
        f"127.0.0.1 in the new netns): {str(facts.net_loopback).lower()}, utsns (a UTS "
        f"namespace whose hostname it set): {str(facts.utsns).lower()} ({how}"
        + (f"; {facts.why_not}" if facts.why_not else "")
        + ")"
    )
    netns = facts.netns and userns
    return userns, netns, facts.private_root, netns and facts.net_loopback, facts.utsns


# -- cgroups -------------------------------------------------------------------------------


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """``/proc/<pid>/cgroup`` -> {hierarchy key: path}; key "" is v2, else the controllers.

    Each v1 line's controller list (``cpu,cpuacct``) is split, so every controller maps
    to its path; named hierarchies (``name=systemd``) keep their ``name=`` key.
    """
    out: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":
            out[""] = path
            continue
        for controller in controllers.split(","):
            out[controller] = path
    return out


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as ``\\ooo`` octal."""
    out, i = [], 0
    while i < len(field):
        digits = field[i + 1 : i + 4]
        if field[i] == "\\" and len(digits) == 3 and all(c in "01234567" for c in digits):
            out.append(chr(int(digits, 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def parse_mountinfo(text: str) -> list[CgroupMount]:
    """The cgroup and cgroup2 mounts listed in ``/proc/<pid>/mountinfo``."""
    mounts: list[CgroupMount] = []
    for line in text.splitlines():
        head, sep, tail = line.partition(" - ")
        if not sep:
            continue
        fields, tail_fields = head.split(), tail.split()
        if len(fields) < 5 or len(tail_fields) < 3:
            continue
        fstype, super_opts = tail_fields[0], tail_fields[2].split(",")
        root, point = _unescape(fields[3]), _unescape(fields[4])
        if fstype == "cgroup2":
            mounts.append(CgroupMount(point, root, 2, ()))
        elif fstype == "cgroup":
            known = {"rw", "ro", "xattr", "noprefix", "clone_children", "cpuset_v2_mode"}
            names = tuple(
                o for o in super_opts if o not in known and not o.startswith("release_agent=")
            )
            mounts.append(CgroupMount(point, root, 1, names))
    return mounts


def _mounted_dir(mount: CgroupMount, cgroup_path: str) -> str | None:
    """Where ``cgroup_path`` (as /proc/self/cgroup names it) appears under this mount."""
    root = mount.root.rstrip("/")
    if cgroup_path != root and not cgroup_path.startswith(root + "/"):
        return None  # our cgroup is outside what this mount shows
    rel = cgroup_path[len(root) :].lstrip("/")
    return os.path.normpath(os.path.join(mount.mount_point, rel)) if rel else mount.mount_point


@dataclass(frozen=True, slots=True)
class _ProbeChild:
    """What a throwaway child cgroup directory under a candidate base showed us."""

    created: bool
    files: frozenset[str]
    controllers: tuple[str, ...]
    error: str


def _probe_child(base: str) -> _ProbeChild:
    """mkdir + list + rmdir one child under ``base``: can we make leaves there, and what do
    they get? Creating a directory is the only honest test of delegation (mode bits and
    ``os.access`` do not account for cgroup namespaces or nsdelegate)."""
    # pid + random suffix: concurrent probes (threads or processes) never share a leaf.
    child = os.path.join(base, f"bvisor-probe-{os.getpid()}-{os.urandom(4).hex()}")
    try:
        os.mkdir(child)
    except OSError as exc:
        return _ProbeChild(False, frozenset(), (), exc.strerror or str(exc))
    try:
        files = frozenset(os.listdir(child))
        controllers: tuple[str, ...] = ()
        if "cgroup.controllers" in files:
            text = Path(child, "cgroup.controllers").read_text(encoding="ascii")
            controllers = tuple(sorted(text.split()))
        return _ProbeChild(True, files, controllers, "")
    except OSError as exc:
        return _ProbeChild(False, frozenset(), (), exc.strerror or str(exc))
    finally:
        with contextlib.suppress(OSError):
            os.rmdir(child)


def _probe_cgroups(
    notes: list[str],
) -> tuple[str | None, str | None, bool, tuple[str, ...], tuple[tuple[str, str], ...]]:
    from bvisor.launcher.basement.cgroups import foreign_base

    try:
        membership = parse_proc_cgroup(_PROC_SELF_CGROUP.read_text(encoding="utf-8"))
        mounts = parse_mountinfo(_PROC_SELF_MOUNTINFO.read_text(encoding="utf-8"))
    except OSError as exc:
        notes.append(f"cgroup: none (cannot read /proc/self/cgroup or mountinfo: {exc})")
        return None, None, False, (), ()

    v2_mount = v2_base = None
    v2_kill = False
    v2_controllers: tuple[str, ...] = ()
    v2 = next((m for m in mounts if m.version == 2), None)
    if v2 is None or "" not in membership:
        notes.append("cgroup v2: not mounted or this process has no v2 membership")
    else:
        v2_mount = v2.mount_point
        own = _mounted_dir(v2, membership[""])
        foreign = None if own is None else foreign_base(own)
        if own is None:
            notes.append(f"cgroup v2: our cgroup {membership['']} is not visible at {v2_mount}")
        elif foreign is not None:
            notes.append(f"cgroup v2: not using {own}: {foreign} (a run's leaf is replaceable)")
        else:
            child = _probe_child(own)
            if not child.created:
                notes.append(f"cgroup v2: cannot create a leaf under {own} ({child.error})")
            else:
                v2_base = own
                v2_kill = "cgroup.kill" in child.files
                v2_controllers = child.controllers
                notes.append(
                    f"cgroup v2: base {own} is our own cgroup and a probe leaf was created; "
                    f"cgroup.kill {'present' if v2_kill else 'absent'} in the probe leaf; "
                    f"leaf controllers [{' '.join(v2_controllers)}]"
                )

    v1_bases: list[tuple[str, str]] = []
    for controller, limit_file in sorted(_V1_LIMIT_FILES.items()):
        if controller in v2_controllers:
            continue  # v2 delegation wins; never split one controller across hierarchies
        mount = next((m for m in mounts if m.version == 1 and controller in m.controllers), None)
        if mount is None or controller not in membership:
            notes.append(f"cgroup v1 {controller}: not mounted")
            continue
        own = _mounted_dir(mount, membership[controller])
        if own is None:
            notes.append(
                f"cgroup v1 {controller}: our cgroup is not visible at {mount.mount_point}"
            )
            continue
        foreign = foreign_base(own)
        if foreign is not None:
            notes.append(
                f"cgroup v1 {controller}: not using {own}: {foreign} (a run's leaf is replaceable)"
            )
            continue
        child = _probe_child(own)
        if not child.created:
            notes.append(
                f"cgroup v1 {controller}: cannot create a leaf under {own} ({child.error})"
            )
        elif limit_file not in child.files:
            notes.append(f"cgroup v1 {controller}: probe leaf under {own} lacks {limit_file}")
        else:
            v1_bases.append((controller, own))
            notes.append(
                f"cgroup v1 {controller}: base {own} is our own cgroup; probe leaf has {limit_file}"
            )
    return v2_mount, v2_base, v2_kill, v2_controllers, tuple(v1_bases)


def _read_int(path: Path) -> int:
    try:
        return int(path.read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return 0


def own_memory_limit() -> int | None:
    """The memory limit of the cgroup this process runs in (v2 ``memory.max`` or the v1
    limit), None when it has none: the front sizes its default memory budget by it."""
    from bvisor.launcher.basement.cgroups import own_memory_limit as read_limit

    return read_limit()
