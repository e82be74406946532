"""The Linux mechanisms of the current planner rules: their declarations and typed parameters.

The planner schedules these primitives, the launcher refuses any it does not know, and
replay re-derives them, so each primitive is declared once here with the class of its
parameters. A parameters class lists its fields once (``FIELDS``, see
:mod:`bvisor.contract.fields`): the planner builds the typed value and records its
canonical form, the launcher decodes that form back with the same declaration (unknown or
missing keys, wrong types: refused), and reports and replay read the same fields.

A primitive's id ends in its version; a changed parameter set or prerequisite is a new
version of the id, never an edit (the rules that scheduled the old one are frozen in
``bvisor.planner.rules``). ``LANDLOCK_ABI_FLOOR`` is the single Landlock ABI floor: ABI 3
adds LANDLOCK_ACCESS_FS_TRUNCATE, without which a "read-only" root could be truncated.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from bvisor import canonical
from bvisor.contract.errors import ContractError
from bvisor.contract.fields import (
    ABS_PATH,
    BOOL,
    INT,
    TEXT,
    Codec,
    array_of,
    choice,
    decode,
    encode,
    nested,
    optional,
    text_map,
)
from bvisor.contract.lowering import Phase
from bvisor.contract.utsname import check_domainname, check_hostname
from bvisor.digest import Purpose, digest_value

__all__ = [
    "BY_ID",
    "CATALOGUE",
    "DEVICES",
    "LANDLOCK_ABI_FLOOR",
    "AmbientScrub",
    "BindMount",
    "CgroupLeaf",
    "DevMount",
    "DirMount",
    "EnvSource",
    "Exec",
    "FileMount",
    "KillGuarantee",
    "LandlockApply",
    "LandlockNet",
    "LandlockScope",
    "MemoryLimit",
    "Mount",
    "NetDns",
    "NetProxy",
    "NetworkBudget",
    "NoParams",
    "OomScore",
    "OutputRoot",
    "Outputs",
    "Params",
    "PathRule",
    "PidsLimit",
    "Primitive",
    "ProcMount",
    "Rootfs",
    "Seccomp",
    "StreamCapture",
    "TmpfsMount",
    "UserLimits",
    "UserNamespace",
    "UtsNamespace",
    "WallBudget",
    "decl_digest",
    "decl_value",
    "params_of",
]

LANDLOCK_ABI_FLOOR = 3

# The device nodes a private /dev may hold, with the (major, minor) the host's node must
# have: the launcher binds the host's node only after checking it is this very device.
DEVICES: Mapping[str, tuple[int, int]] = {
    "full": (1, 7),
    "null": (1, 3),
    "random": (1, 8),
    "tty": (5, 0),
    "urandom": (1, 9),
    "zero": (1, 5),
}


class Params:
    """Typed parameters of one primitive; the canonical form is ``FIELDS`` in order."""

    __slots__ = ()
    FIELDS: ClassVar[Mapping[str, Codec]] = {}

    def to_value(self) -> dict[str, canonical.Value]:
        return encode(self)

    @classmethod
    def from_value(cls, value: object, path: str = "") -> Any:
        return decode(cls, value, path)


@dataclass(frozen=True, slots=True)
class NoParams(Params):
    """A primitive that takes nothing: the fact that it is scheduled is the whole ask."""

    FIELDS: ClassVar[Mapping[str, Codec]] = {}


@dataclass(frozen=True, slots=True)
class UserNamespace(Params):
    """The workload's uid/gid 0 inside the new user namespace map to these host ids."""

    uid: int
    gid: int
    FIELDS: ClassVar[Mapping[str, Codec]] = {"uid": INT, "gid": INT}


@dataclass(frozen=True, slots=True)
class UtsNamespace(Params):
    """The workload's own UTS namespace, holding these names instead of the host's.

    Both are the plan's, checked by :mod:`bvisor.contract.utsname` (a value it refuses is
    refused here too, naming the field), so a recorded plan says what the workload saw.
    """

    hostname: str
    domainname: str
    FIELDS: ClassVar[Mapping[str, Codec]] = {"hostname": TEXT, "domainname": TEXT}

    def __post_init__(self) -> None:
        check_hostname(self.hostname, "hostname")
        check_domainname(self.domainname, "domainname")


@dataclass(frozen=True, slots=True)
class CgroupLeaf(Params):
    """Where the run's leaves are made: the v2 base, and v1 bases by controller."""

    v2_base: str | None
    v1_bases: tuple[tuple[str, str], ...]
    FIELDS: ClassVar[Mapping[str, Codec]] = {
        "v2_base": optional(TEXT),
        "v1_bases": text_map(TEXT),
    }


@dataclass(frozen=True, slots=True)
class PidsLimit(Params):
    limit: int
    hierarchy: str
    FIELDS: ClassVar[Mapping[str, Codec]] = {"limit": INT, "hierarchy": choice("v1", "v2")}


@dataclass(frozen=True, slots=True)
class MemoryLimit(Params):
    limit_bytes: int
    hierarchy: str
    FIELDS: ClassVar[Mapping[str, Codec]] = {
        "limit_bytes": INT,
        "hierarchy": choice("v1", "v2"),
    }


# -- the private root ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BindMount(Params):
    """A host path bound into the new root: ``read`` (read-only) or ``write`` (read-write).

    Always ``nosuid,nodev``. ``required`` false: a path this host may lack (a system
    root); absent, it is skipped, and a host symlink (``/lib -> usr/lib``) is recreated
    as the same link inside the root instead of bound.
    """

    dest: str
    source: str
    access: str
    required: bool
    KIND: ClassVar[str] = "bind"
    FIELDS: ClassVar[Mapping[str, Codec]] = {
        "dest": ABS_PATH,
        "source": ABS_PATH,
        "access": choice("read", "write"),
        "required": BOOL,
    }


@dataclass(frozen=True, slots=True)
class DevMount(Params):
    """A minimal ``/dev`` tmpfs: the named host devices bound read-only (their inode can't
    change), the ``fd``/``stdin``/``stdout``/``stderr`` links, a private ``shm`` tmpfs of
    ``shm_bytes``, and a new ``devpts`` instance when ``pts``."""

    dest: str
    devices: tuple[str, ...]
    shm_bytes: int
    pts: bool
    KIND: ClassVar[str] = "dev"
    FIELDS: ClassVar[Mapping[str, Codec]] = {
        "dest": ABS_PATH,
        "devices": array_of(choice(*sorted(DEVICES))),
        "shm_bytes": INT,
        "pts": BOOL,
    }


@dataclass(frozen=True, slots=True)
class ProcMount(Params):
    """A fresh procfs of the run's PID namespace; ``/proc/sys`` and friends read-only."""

    dest: str
    KIND: ClassVar[str] = "proc"
    FIELDS: ClassVar[Mapping[str, Codec]] = {"dest": ABS_PATH}


@dataclass(frozen=True, slots=True)
class TmpfsMount(Params):
    """A private tmpfs of at most ``size_bytes`` (``nosuid,nodev``), e.g. ``/tmp``."""

    dest: str
    size_bytes: int
    mode: int
    KIND: ClassVar[str] = "tmpfs"
    FIELDS: ClassVar[Mapping[str, Codec]] = {"dest": ABS_PATH, "size_bytes": INT, "mode": INT}


@dataclass(frozen=True, slots=True)
class DirMount(Params):
    """A directory made inside a tmpfs of the root (e.g. the private ``HOME``)."""

    dest: str
    mode: int
    KIND: ClassVar[str] = "dir"
    FIELDS: ClassVar[Mapping[str, Codec]] = {"dest": ABS_PATH, "mode": INT}


@dataclass(frozen=True, slots=True)
class FileMount(Params):
    """A small file the plan writes, placed read-only at ``dest`` (the allow list's
    ``/etc/resolv.conf``, naming its DNS listener).

    Written in the root tmpfs under a hidden name, bound over ``dest`` and unlinked there,
    so only ``dest`` shows it. ``dest`` is an existing regular file (of a host bind or
    not), a symlink (the file is mounted onto the link itself, never where it points: a
    host's ``/etc/resolv.conf -> ../run/...``), or absent inside a tmpfs of the root.
    Absent inside a host bind (which can take no new file): skipped when not
    ``required``, else the launch faults. The launcher reads what the workload will see
    there from outside (``/proc/<child>/root``) and says which it was.
    """

    dest: str
    content: str
    required: bool
    KIND: ClassVar[str] = "file"
    FIELDS: ClassVar[Mapping[str, Codec]] = {"dest": ABS_PATH, "content": TEXT, "required": BOOL}


Mount = BindMount | DevMount | ProcMount | TmpfsMount | DirMount | FileMount
_MOUNT_KINDS: Mapping[str, type[Mount]] = {
    cls.KIND: cls for cls in (BindMount, DevMount, ProcMount, TmpfsMount, DirMount, FileMount)
}


def _dump_mount(mount: Mount) -> canonical.Value:
    return {"kind": mount.KIND, **mount.to_value()}


def _load_mount(value: object, path: str) -> Mount:
    if not isinstance(value, Mapping) or not isinstance(value.get("kind"), str):
        raise ContractError(path, "a mount is a table with a text 'kind'", "wrong-type")
    cls = _MOUNT_KINDS.get(value["kind"])
    if cls is None:
        raise ContractError(
            f"{path}.kind", f"expected one of {', '.join(sorted(_MOUNT_KINDS))}", "unknown-variant"
        )
    body = {key: item for key, item in value.items() if key != "kind"}
    return cls.from_value(body, path)  # type: ignore[no-any-return]


MOUNT = Codec(_dump_mount, _load_mount)


@dataclass(frozen=True, slots=True)
class Rootfs(Params):
    """The workload's root: an empty tmpfs holding only ``mounts``, entered by pivot_root.

    ``mounts`` are made in order (a mount's destination must not lie inside a host bind
    made before it unless that directory exists there); the root tmpfs is made read-only
    last; the workload starts in ``cwd``.
    """

    mounts: tuple[Mount, ...]
    cwd: str
    FIELDS: ClassVar[Mapping[str, Codec]] = {"mounts": array_of(MOUNT), "cwd": ABS_PATH}

    def binds(self) -> tuple[BindMount, ...]:
        return tuple(m for m in self.mounts if isinstance(m, BindMount))


@dataclass(frozen=True, slots=True)
class UserLimits(Params):
    """Per-user kernel objects the workload may take: ``share_percent`` of each limit this
    user has where bvisor runs (inotify instances and watches, fanotify groups and marks),
    written into the workload's own user namespace. The kernel counts these per user, up
    the namespace chain, so without it a workload could take every one its user has and
    starve the user's other programs (editors, ``tail -f``, desktop services) until the run
    ends; with it, the rest stays theirs."""

    share_percent: int
    FIELDS: ClassVar[Mapping[str, Codec]] = {"share_percent": INT}


@dataclass(frozen=True, slots=True)
class OomScore(Params):
    """The workload's ``oom_score_adj``: 1000 makes it the OOM killer's first choice."""

    score: int
    FIELDS: ClassVar[Mapping[str, Codec]] = {"score": INT}


# -- hygiene, policy, exec -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EnvSource(Params):
    """One environment entry: a literal value, or a lease resolved by the host at launch."""

    name: str
    literal: str | None
    lease: str | None
    FIELDS: ClassVar[Mapping[str, Codec]] = {
        "name": TEXT,
        "literal": optional(TEXT),
        "lease": optional(TEXT),
    }

    def __post_init__(self) -> None:
        if (self.literal is None) == (self.lease is None):
            raise ContractError(self.name, "exactly one of literal and lease", "invalid-value")


@dataclass(frozen=True, slots=True)
class AmbientScrub(Params):
    """What the workload inherits: exactly ``env``, only ``keep_fds``, no controlling
    terminal — or, when ``tty``, the pty on its stdin as its own controlling terminal."""

    env: tuple[EnvSource, ...]
    keep_fds: tuple[int, ...]
    tty: bool
    FIELDS: ClassVar[Mapping[str, Codec]] = {
        "env": array_of(nested(EnvSource)),
        "keep_fds": array_of(INT),
        "tty": BOOL,
    }


@dataclass(frozen=True, slots=True)
class PathRule(Params):
    """A Landlock path-beneath rule: ``read`` (read, execute, list), ``write`` (all file
    rights), or ``list`` (list the directory only)."""

    path: str
    access: str
    FIELDS: ClassVar[Mapping[str, Codec]] = {
        "path": ABS_PATH,
        "access": choice("list", "read", "write"),
    }


@dataclass(frozen=True, slots=True)
class LandlockApply(Params):
    """A Landlock filesystem domain: ``rules`` on host paths (opened by the host),
    ``inside`` on paths of the new root (opened by the child after pivot_root)."""

    abi_floor: int
    rules: tuple[PathRule, ...]
    inside: tuple[PathRule, ...]
    scope: tuple[str, ...]
    FIELDS: ClassVar[Mapping[str, Codec]] = {
        "abi_floor": INT,
        "rules": array_of(nested(PathRule)),
        "inside": array_of(nested(PathRule)),
        "scope": array_of(choice("abstract_unix_socket", "signal")),
    }


@dataclass(frozen=True, slots=True)
class LandlockScope(Params):
    scope: tuple[str, ...]
    FIELDS: ClassVar[Mapping[str, Codec]] = {
        "scope": array_of(choice("abstract_unix_socket", "signal"))
    }


@dataclass(frozen=True, slots=True)
class LandlockNet(Params):
    """A Landlock domain handling TCP connect only (ABI >= 4): the workload may connect to
    ``connect_ports`` and no other TCP port (the allow list's proxy port)."""

    connect_ports: tuple[int, ...]
    FIELDS: ClassVar[Mapping[str, Codec]] = {"connect_ports": array_of(INT)}


@dataclass(frozen=True, slots=True)
class Seccomp(Params):
    """The seccomp filter: always the baseline; plus no new tasks, no sockets, or threads
    but no processes (``threads_only``). ``notify_denials``: the filter's denials are
    handed to the launcher, which answers them and records them (denial evidence).
    ``inet_sockets_only``: ``socket()`` only for AF_INET/AF_INET6 (what reaching the allow
    list's proxy needs: no AF_UNIX socket can then reach a host daemon's pathname socket,
    no netlink or packet socket exists)."""

    deny_new_tasks: bool
    deny_sockets: bool
    threads_only: bool
    notify_denials: bool = False
    inet_sockets_only: bool = False
    FIELDS: ClassVar[Mapping[str, Codec]] = {
        "deny_new_tasks": BOOL,
        "deny_sockets": BOOL,
        "threads_only": BOOL,
        "notify_denials": BOOL,
        "inet_sockets_only": BOOL,
    }


@dataclass(frozen=True, slots=True)
class NetProxy(Params):
    """The network allow list's proxy: a TCP listener at ``127.0.0.1:port`` inside the
    workload's (otherwise empty) network namespace, served by the host, which admits only
    the ``allow`` entries (canonical spelling, :mod:`bvisor.contract.endpoints`)."""

    port: int
    allow: tuple[str, ...]
    FIELDS: ClassVar[Mapping[str, Codec]] = {"port": INT, "allow": array_of(TEXT)}


@dataclass(frozen=True, slots=True)
class NetDns(Params):
    """The allow list's resolver: a UDP socket at ``127.0.0.1:port`` inside the workload's
    network namespace, served by the host's proxy, which answers A and AAAA questions for
    listed names only (one address each, judged as a connection to it would be) and
    refuses every other name without looking it up."""

    port: int
    FIELDS: ClassVar[Mapping[str, Codec]] = {"port": INT}


@dataclass(frozen=True, slots=True)
class NetworkBudget(Params):
    """An Enforced network budget: the proxy cuts every connection once the bytes relayed
    both ways, over the whole run, reach ``limit_bytes``."""

    limit_bytes: int
    FIELDS: ClassVar[Mapping[str, Codec]] = {"limit_bytes": INT}


@dataclass(frozen=True, slots=True)
class Exec(Params):
    exe: str
    argv: tuple[str, ...]
    FIELDS: ClassVar[Mapping[str, Codec]] = {"exe": TEXT, "argv": array_of(TEXT)}


@dataclass(frozen=True, slots=True)
class StreamCapture(Params):
    stdout: bool
    stderr: bool
    stdin: bool
    cap_bytes: int
    FIELDS: ClassVar[Mapping[str, Codec]] = {
        "stdout": BOOL,
        "stderr": BOOL,
        "stdin": BOOL,
        "cap_bytes": INT,
    }


@dataclass(frozen=True, slots=True)
class WallBudget(Params):
    limit_micros: int
    FIELDS: ClassVar[Mapping[str, Codec]] = {"limit_micros": INT}


@dataclass(frozen=True, slots=True)
class OutputRoot(Params):
    """A root whose outputs are listed, named as a path of the workload's root.

    ``temp``: the run's own tmpfs, listed whole; what a commit copies. ``write``: a host
    write root, of which only what changed during the run is listed.
    """

    path: str
    kind: str
    FIELDS: ClassVar[Mapping[str, Codec]] = {"path": ABS_PATH, "kind": choice("temp", "write")}


@dataclass(frozen=True, slots=True)
class Outputs(Params):
    """List what the workload left in ``roots`` (and, with ``commit``, copy the temp
    root's files for the host to commit), after it exited and while its mounts live.

    The walk is bounded: at most ``max_files`` items reported (files listed and entries
    skipped), ``max_bytes`` hashed in all, directories ``max_depth`` levels below a root,
    ``max_entries`` directory entries looked at, ``max_path_bytes`` of (escaped) paths
    reported in all — so the report stays far below what the ledger takes, whatever names
    the workload chose; reaching a bound is reported, never silent. ``commit``:
    ``best_effort`` (written and closed) or ``synced`` (each file and directory fsync'd),
    or None: nothing is copied.
    """

    roots: tuple[OutputRoot, ...]
    max_files: int
    max_bytes: int
    max_depth: int
    max_entries: int
    max_path_bytes: int
    commit: str | None
    FIELDS: ClassVar[Mapping[str, Codec]] = {
        "roots": array_of(nested(OutputRoot)),
        "max_files": INT,
        "max_bytes": INT,
        "max_depth": INT,
        "max_entries": INT,
        "max_path_bytes": INT,
        "commit": optional(choice("best_effort", "synced")),
    }

    def __post_init__(self) -> None:
        paths = [root.path for root in self.roots]
        if len(set(paths)) != len(paths):
            raise ContractError("roots", "a root is listed twice", "invalid-value")
        temps = [root for root in self.roots if root.kind == "temp"]
        if len(temps) > 1:
            raise ContractError("roots", "at most one temp root", "invalid-value")
        if self.commit is not None and not temps:
            raise ContractError("commit", "a commit copies the temp root; none is listed")

    @property
    def temp_root(self) -> str | None:
        return next((root.path for root in self.roots if root.kind == "temp"), None)


@dataclass(frozen=True, slots=True)
class KillGuarantee(Params):
    guarantee: str
    FIELDS: ClassVar[Mapping[str, Codec]] = {"guarantee": choice("atomic", "best_effort_allowed")}


# -- the catalogue -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Primitive:
    """A mechanism the Linux backend can lower a requirement to.

    ``launcher_side`` false: carried out by the host (budgets, capture, teardown).
    """

    id: str
    version: int
    phase: Phase
    params: type[Params]
    requires: tuple[str, ...] = ()
    launcher_side: bool = True


P = Phase
USERNS = Primitive("linux.userns.create.v1", 1, P.NAMESPACE_CREATE, UserNamespace)
NETNS = Primitive("linux.netns.create.v1", 1, P.NAMESPACE_CREATE, NoParams, (USERNS.id,))
IPCNS = Primitive("linux.ipcns.create.v1", 1, P.NAMESPACE_CREATE, NoParams)
# The names are set by the child in its new UTS namespace, with the capabilities of its
# user namespace (or a root launcher's), before anything else runs there.
UTSNS = Primitive("linux.utsns.v1", 1, P.NAMESPACE_CREATE, UtsNamespace)
PIDNS = Primitive("linux.pidns.init.v1", 1, P.NAMESPACE_CREATE, NoParams)
CGROUP_LEAF = Primitive("linux.cgroup.leaf.v1", 1, P.NAMESPACE_CREATE, CgroupLeaf)
BUDGET_PIDS = Primitive(
    "linux.budget.pids.v1", 1, P.NAMESPACE_CREATE, PidsLimit, (CGROUP_LEAF.id,), False
)
BUDGET_MEMORY = Primitive(
    "linux.budget.memory.v1", 1, P.NAMESPACE_CREATE, MemoryLimit, (CGROUP_LEAF.id,), False
)
# The allow list's listener, made by the child in its new network namespace (loopback up)
# before it drops its capabilities, and handed to the host through the launcher.
NETPROXY = Primitive("linux.netproxy.v1", 1, P.NAMESPACE_CREATE, NetProxy, (NETNS.id,))
# The allow list's resolver socket, made beside the proxy's listener (whose op brought the
# loopback up) and handed to the host the same way.
NETDNS = Primitive("linux.netdns.v1", 1, P.NAMESPACE_CREATE, NetDns, (NETPROXY.id,))
ROOTFS = Primitive("linux.rootfs.v1", 1, P.FS_SETUP, Rootfs, (PIDNS.id,))
OOM_SCORE = Primitive("linux.oom.score.v1", 1, P.PRIVILEGE_DROP, OomScore)
# In the workload's user namespace, before the private root hides the host's /proc (where
# its own /proc/sys is read-only): so phase 0, after the id maps.
USER_LIMITS = Primitive("linux.userns.limits.v1", 1, P.NAMESPACE_CREATE, UserLimits, (USERNS.id,))
NO_NEW_PRIVS = Primitive("linux.nonewprivs.v1", 1, P.PRIVILEGE_DROP, NoParams)
CAPS_DROP = Primitive("linux.caps.drop.v1", 1, P.PRIVILEGE_DROP, NoParams)
AMBIENT_SCRUB = Primitive("linux.ambient.scrub.v2", 2, P.FD_HYGIENE, AmbientScrub)
LANDLOCK = Primitive(
    "linux.landlock.apply.v2", 2, P.POLICY_INSTALL, LandlockApply, (NO_NEW_PRIVS.id,)
)
# A Landlock domain that handles no filesystem right, only IPC scopes (ABI >= 6): for a
# spec without a filesystem capability, so signals and abstract sockets are still scoped.
LANDLOCK_SCOPE = Primitive(
    "linux.landlock.scope.v1", 1, P.POLICY_INSTALL, LandlockScope, (NO_NEW_PRIVS.id,)
)
# The allow list's second layer: TCP connects only to the proxy's port (Landlock ABI >= 4).
LANDLOCK_NET = Primitive(
    "linux.landlock.net.v1", 1, P.POLICY_INSTALL, LandlockNet, (NO_NEW_PRIVS.id, NETPROXY.id)
)
SECCOMP = Primitive("linux.seccomp.apply.v2", 2, P.POLICY_INSTALL, Seccomp, (NO_NEW_PRIVS.id,))
EXEC = Primitive("linux.exec.v1", 1, P.LAUNCH, Exec)
STREAMS = Primitive("linux.streams.capture.v1", 1, P.OBSERVE, StreamCapture, (), False)
BUDGET_WALL = Primitive("linux.budget.wall.v2", 2, P.OBSERVE, WallBudget, (), False)
BUDGET_NETWORK = Primitive(
    "linux.budget.network.v1", 1, P.OBSERVE, NetworkBudget, (NETPROXY.id,), False
)
CGROUP_KILL = Primitive(
    "linux.cgroup.kill.v1", 1, P.TEARDOWN, KillGuarantee, (CGROUP_LEAF.id,), False
)
PIDNS_KILL = Primitive("linux.pidns.kill.v1", 1, P.TEARDOWN, NoParams, (PIDNS.id,), False)
# Carried out by the launcher after the workload exits, while the namespace's init waits.
OUTPUTS = Primitive("linux.outputs.v1", 1, P.OBSERVE, Outputs, (PIDNS.id, ROOTFS.id))

CATALOGUE: tuple[Primitive, ...] = (
    USERNS,
    NETNS,
    IPCNS,
    UTSNS,
    PIDNS,
    CGROUP_LEAF,
    BUDGET_PIDS,
    BUDGET_MEMORY,
    NETPROXY,
    NETDNS,
    ROOTFS,
    OOM_SCORE,
    USER_LIMITS,
    NO_NEW_PRIVS,
    CAPS_DROP,
    AMBIENT_SCRUB,
    LANDLOCK,
    LANDLOCK_SCOPE,
    LANDLOCK_NET,
    SECCOMP,
    EXEC,
    STREAMS,
    BUDGET_WALL,
    OUTPUTS,
    BUDGET_NETWORK,
    CGROUP_KILL,
    PIDNS_KILL,
)
BY_ID: dict[str, Primitive] = {p.id: p for p in CATALOGUE}


def params_of(primitive_id: str, value: object) -> Any:
    """The typed parameters of a catalogue primitive from their canonical form (strict)."""
    primitive = BY_ID.get(primitive_id)
    if primitive is None:
        raise ContractError(primitive_id, "not in the mechanism catalogue", "unknown-variant")
    return primitive.params.from_value(value, primitive_id)


def decl_value(primitive: Primitive) -> dict[str, canonical.Value]:
    """The declaration a schedule entry is bound to (everything but its parameters)."""
    return {
        "id": primitive.id,
        "version": primitive.version,
        "phase_code": int(primitive.phase),
        "requires": sorted(primitive.requires),
    }


@functools.cache
def decl_digest(primitive: Primitive) -> bytes:
    """What a lowering entry's ``decl_digest`` must be; planner and launcher both check it.

    Kept once worked out: a declaration is frozen, and a launcher checks every entry's on
    every run (the resident launcher works them all out before its first run).
    """
    return digest_value(Purpose.PRIMITIVE_DECL, decl_value(primitive))
