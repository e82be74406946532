"""The launch body: everything the host tells the launcher, as frozen values with one wire form.

The host builds a :class:`LaunchPlan`, encodes ``body.to_value()`` canonically, wraps it in
an envelope (:mod:`bvisor.launcher.wire.envelope`) and hands it to the launcher in a sealed
memfd. The
launcher decodes it with :meth:`LaunchBody.from_value`, which is strict: unknown or missing
keys, wrong types and out-of-range numbers are errors naming the field, because a launcher
that guessed at a malformed body could confine less than the plan admitted.

Beyond DESIGN.md §5's list, the body carries ``params``, one canonical value per lowering
entry: the launcher checks them against the entries' ``param_digest`` and the target
against them (``bvisor.launcher.process.verify``); without them it could only check which mechanisms
the plan names, not what they are told to do.

Wire conventions follow DESIGN.md §3: maps with text keys, enum unit variants as text,
digests as byte strings, ``None`` as CBOR null, tuples as arrays.

``test_hooks`` is the test-only lie switch (see ``TEST_HOOKS``). It exists only as a field
of :class:`LaunchBody`; no spec field, flag or environment variable sets it, and a launcher
that honours a hook says so in a ``# DANGER`` note before anything else it reports.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from typing import TypeVar, cast

from bvisor import canonical
from bvisor.contract.lowering import LoweringEntry, LoweringError, entries_from_wire
from bvisor.digest import DIGEST_SIZE

__all__ = [
    "MAX_SLOT",
    "TEST_HOOKS",
    "CgroupPlacement",
    "DescriptorKind",
    "DescriptorRole",
    "DescriptorShape",
    "DescriptorSlot",
    "LandlockAccess",
    "LandlockRequest",
    "LandlockRule",
    "LaunchBody",
    "LaunchPlan",
    "NetworkNamespaceRequest",
    "ProtocolError",
    "SeccompRequest",
    "TargetSpec",
    "UserNamespaceRequest",
]

# The only test hooks a launcher knows; any other name is refused.
TEST_HOOKS: frozenset[str] = frozenset(
    {
        "skip_seccomp",
        "skip_landlock",
        "skip_netns",
        "skip_fd_scrub",
        "skip_cgroup_placement",
        "skip_caps_drop",
        "skip_cgroupfs_hide",
        "skip_userns",
        "skip_env_scrub",
        "skip_readonly_view",
    }
)

# Slots above this are refused: fds that high would need a raised RLIMIT_NOFILE, and the
# channel fds are placed just above the highest slot.
MAX_SLOT = 900
_MAX_ARGV = 4096
_MAX_ENV = 4096
_MAX_STRING = 128 * 1024
_ENV_NAME = re.compile(r"^[^=\x00]+$")
_ID_MAP_LINE = re.compile(r"^([0-9]+) ([0-9]+) ([0-9]+)$")
_UINT32_MAX = (1 << 32) - 1


class ProtocolError(ValueError):
    """A launch body value is malformed; the message names the field."""


# ---------------------------------------------------------------------------------------
# strict readers for wire values


def _map(value: object, where: str, keys: Sequence[str]) -> Mapping[str, object]:
    if not isinstance(value, Mapping):
        raise ProtocolError(f"{where}: expected a map")
    expected = set(keys)
    actual = set(value)
    if actual != expected:
        missing = sorted(expected - actual)
        extra = sorted(str(k) for k in actual - expected)
        raise ProtocolError(f"{where}: keys differ (missing {missing}, unexpected {extra})")
    return value


def _int(value: object, where: str, lo: int = 0, hi: int = _UINT32_MAX) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ProtocolError(f"{where}: expected an integer")
    if not lo <= value <= hi:
        raise ProtocolError(f"{where}: {value} outside [{lo}, {hi}]")
    return value


def _bool(value: object, where: str) -> bool:
    if not isinstance(value, bool):
        raise ProtocolError(f"{where}: expected a boolean")
    return value


def _text(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise ProtocolError(f"{where}: expected text")
    if "\x00" in value:
        raise ProtocolError(f"{where}: text contains NUL")
    if len(value) > _MAX_STRING:
        raise ProtocolError(f"{where}: text longer than {_MAX_STRING} characters")
    return value


def _digest(value: object, where: str) -> bytes:
    if not isinstance(value, bytes) or len(value) != DIGEST_SIZE:
        raise ProtocolError(f"{where}: expected a {DIGEST_SIZE}-byte digest")
    return value


def _array(value: object, where: str, limit: int) -> Sequence[object]:
    if not isinstance(value, Sequence) or isinstance(value, (str, bytes)):
        raise ProtocolError(f"{where}: expected an array")
    if len(value) > limit:
        raise ProtocolError(f"{where}: more than {limit} items")
    return value


_E = TypeVar("_E", bound=Enum)


def _enum(cls: type[_E], value: object, where: str) -> _E:
    if not isinstance(value, str):
        raise ProtocolError(f"{where}: expected one of {[m.value for m in cls]}")
    try:
        return cls(value)
    except ValueError:
        raise ProtocolError(f"{where}: {value!r} is not one of {[m.value for m in cls]}") from None


def _slot_number(value: object, where: str) -> int:
    return _int(value, where, 0, MAX_SLOT)


def _check_slot(slot: int, where: str) -> None:
    if not isinstance(slot, int) or isinstance(slot, bool) or not 0 <= slot <= MAX_SLOT:
        raise ProtocolError(f"{where}: slot {slot!r} outside [0, {MAX_SLOT}]")


# ---------------------------------------------------------------------------------------
# descriptor table


class DescriptorKind(StrEnum):
    """What ``fstat`` must say an fd is (``S_IFMT``)."""

    REGULAR = "Regular"
    DIRECTORY = "Directory"
    CHAR_DEVICE = "CharDevice"
    FIFO = "Fifo"
    SOCKET = "Socket"


class DescriptorRole(StrEnum):
    """Why the host passed an fd; the launcher checks each role is used consistently."""

    TARGET_EXE = "TargetExe"
    FS_ROOT = "FsRoot"
    CGROUP_V2_LEAF = "CgroupV2Leaf"
    CGROUP_V1_LEAF = "CgroupV1Leaf"
    INHERITED = "Inherited"


@dataclass(frozen=True, slots=True)
class DescriptorShape:
    """The expected kind and access mode of one fd (checked with fstat and F_GETFL)."""

    kind: DescriptorKind
    writable: bool

    def to_value(self) -> dict[str, canonical.Value]:
        return {"kind": self.kind.value, "writable": self.writable}

    @classmethod
    def from_value(cls, value: object, where: str = "shape") -> DescriptorShape:
        m = _map(value, where, ("kind", "writable"))
        return cls(
            _enum(DescriptorKind, m["kind"], f"{where}.kind"),
            _bool(m["writable"], f"{where}.writable"),
        )


@dataclass(frozen=True, slots=True)
class DescriptorSlot:
    """One authority fd: its number in the launcher, its role and its expected shape."""

    slot_index: int
    role: DescriptorRole
    expected: DescriptorShape

    def __post_init__(self) -> None:
        _check_slot(self.slot_index, "descriptor slot_index")

    def to_value(self) -> dict[str, canonical.Value]:
        return {
            "slot_index": self.slot_index,
            "role": self.role.value,
            "expected": self.expected.to_value(),
        }

    @classmethod
    def from_value(cls, value: object, where: str = "slot") -> DescriptorSlot:
        m = _map(value, where, ("slot_index", "role", "expected"))
        return cls(
            _slot_number(m["slot_index"], f"{where}.slot_index"),
            _enum(DescriptorRole, m["role"], f"{where}.role"),
            DescriptorShape.from_value(m["expected"], f"{where}.expected"),
        )


# ---------------------------------------------------------------------------------------
# mechanism requests


@dataclass(frozen=True, slots=True)
class SeccompRequest:
    """Which seccomp denylist rules to install (default action: allow)."""

    deny_new_tasks: bool
    deny_sockets: bool

    @classmethod
    def deny_new_tasks_only(cls) -> SeccompRequest:
        return cls(deny_new_tasks=True, deny_sockets=False)

    def to_value(self) -> dict[str, canonical.Value]:
        return {
            "deny_new_tasks": self.deny_new_tasks,
            "deny_sockets": self.deny_sockets,
        }

    @classmethod
    def from_value(cls, value: object, where: str = "seccomp") -> SeccompRequest:
        m = _map(value, where, ("deny_new_tasks", "deny_sockets"))
        return cls(
            _bool(m["deny_new_tasks"], f"{where}.deny_new_tasks"),
            _bool(m["deny_sockets"], f"{where}.deny_sockets"),
        )


def _deny_new_tasks_factory() -> SeccompRequest:
    return SeccompRequest(deny_new_tasks=True, deny_sockets=False)


# The seed calls ``SeccompRequest::deny_new_tasks()``; a dataclass field of that name
# exists too, so the classmethod is attached under the field name on the class object
# only (instances still read the boolean field).
class _DenyNewTasksDescriptor:
    """``SeccompRequest.deny_new_tasks()`` on the class; the boolean on an instance."""

    def __init__(self, member: object) -> None:
        self._member = member

    def __get__(self, instance: object, owner: type | None = None) -> object:
        if instance is None:
            return _deny_new_tasks_factory
        return self._member.__get__(instance, owner)  # type: ignore[attr-defined]

    def __set__(self, instance: object, value: object) -> None:
        self._member.__set__(instance, value)  # type: ignore[attr-defined]


setattr(  # noqa: B010 - mypy must not see this: it is a class-level overlay
    SeccompRequest,
    "deny_new_tasks",
    _DenyNewTasksDescriptor(SeccompRequest.__dict__["deny_new_tasks"]),
)


def _parse_id_map(text: str, where: str) -> str:
    lines = text.split("\n")
    if not 1 <= len(lines) <= 340:
        raise ProtocolError(f"{where}: expected 1..340 lines 'inside outside count'")
    for line in lines:
        match = _ID_MAP_LINE.match(line)
        if not match:
            raise ProtocolError(f"{where}: line {line!r} is not 'inside outside count'")
        inside, outside, count = (int(g) for g in match.groups())
        if count == 0 or inside + count > _UINT32_MAX or outside + count > _UINT32_MAX:
            raise ProtocolError(f"{where}: line {line!r} has an empty or overflowing range")
    return text


@dataclass(frozen=True, slots=True)
class UserNamespaceRequest:
    """A new user namespace with these maps (``/proc/<pid>/uid_map`` syntax, e.g. "0 0 1")."""

    uid_map: str
    gid_map: str

    def __post_init__(self) -> None:
        _parse_id_map(self.uid_map, "user_namespace.uid_map")
        _parse_id_map(self.gid_map, "user_namespace.gid_map")

    def to_value(self) -> dict[str, canonical.Value]:
        return {"uid_map": self.uid_map, "gid_map": self.gid_map}

    @classmethod
    def from_value(cls, value: object, where: str = "user_namespace") -> UserNamespaceRequest:
        m = _map(value, where, ("uid_map", "gid_map"))
        uid_map = _text(m["uid_map"], f"{where}.uid_map")
        gid_map = _text(m["gid_map"], f"{where}.gid_map")
        try:
            return cls(uid_map, gid_map)
        except ProtocolError as exc:
            raise ProtocolError(str(exc)) from None


@dataclass(frozen=True, slots=True)
class NetworkNamespaceRequest:
    """A new, empty network namespace (only a down ``lo``)."""

    def to_value(self) -> dict[str, canonical.Value]:
        return {}

    @classmethod
    def from_value(cls, value: object, where: str = "network_namespace") -> NetworkNamespaceRequest:
        _map(value, where, ())
        return cls()


class LandlockAccess(StrEnum):
    """Access granted beneath one root: read = read+execute, write/read_write = full."""

    READ = "read"
    WRITE = "write"
    READ_WRITE = "read_write"


@dataclass(frozen=True, slots=True)
class LandlockRule:
    """Grant ``access`` beneath the FS_ROOT fd at ``slot``."""

    slot: int
    access: str

    def __post_init__(self) -> None:
        _check_slot(self.slot, "landlock rule slot")
        if self.access not in {a.value for a in LandlockAccess}:
            raise ProtocolError(
                f"landlock rule access {self.access!r} is not read, write or read_write"
            )

    def to_value(self) -> dict[str, canonical.Value]:
        return {"slot": self.slot, "access": self.access}

    @classmethod
    def from_value(cls, value: object, where: str = "rule") -> LandlockRule:
        m = _map(value, where, ("slot", "access"))
        access = _enum(LandlockAccess, m["access"], f"{where}.access")
        return cls(_slot_number(m["slot"], f"{where}.slot"), access.value)


@dataclass(frozen=True, slots=True)
class LandlockRequest:
    """A Landlock domain: everything handled is denied except beneath these roots."""

    abi_floor: int
    rules: tuple[LandlockRule, ...]
    scope: tuple[str, ...] = ()  # Landlock ABI 6 scopes: "abstract_unix_socket", "signal"
    handle_filesystem: bool = True  # False: a scope-only domain (no filesystem right handled)

    def to_value(self) -> dict[str, canonical.Value]:
        return {
            "abi_floor": self.abi_floor,
            "rules": [r.to_value() for r in self.rules],
            "scope": list(self.scope),
            "handle_filesystem": self.handle_filesystem,
        }

    @classmethod
    def from_value(cls, value: object, where: str = "landlock") -> LandlockRequest:
        m = _map(value, where, ("abi_floor", "rules", "scope", "handle_filesystem"))
        rules = _array(m["rules"], f"{where}.rules", 256)
        scope = _array(m["scope"], f"{where}.scope", 8)
        names = tuple(_text(item, f"{where}.scope[{i}]") for i, item in enumerate(scope))
        return cls(
            _int(m["abi_floor"], f"{where}.abi_floor", 1, 255),
            tuple(LandlockRule.from_value(r, f"{where}.rules[{i}]") for i, r in enumerate(rules)),
            names,
            _bool(m["handle_filesystem"], f"{where}.handle_filesystem"),
        )


@dataclass(frozen=True, slots=True)
class CgroupPlacement:
    """Where the child is born: a v2 leaf (CLONE_INTO_CGROUP) and/or v1 controller leaves."""

    v2_slot: int | None
    v1_slots: tuple[int, ...] = ()

    def to_value(self) -> dict[str, canonical.Value]:
        return {"v2_slot": self.v2_slot, "v1_slots": list(self.v1_slots)}

    @classmethod
    def from_value(cls, value: object, where: str = "cgroup") -> CgroupPlacement:
        m = _map(value, where, ("v2_slot", "v1_slots"))
        v2 = m["v2_slot"]
        v1 = _array(m["v1_slots"], f"{where}.v1_slots", 32)
        return cls(
            None if v2 is None else _slot_number(v2, f"{where}.v2_slot"),
            tuple(_slot_number(s, f"{where}.v1_slots[{i}]") for i, s in enumerate(v1)),
        )


# ---------------------------------------------------------------------------------------
# target and body


def _optional(value: object, reader: object, where: str) -> object:
    if value is None:
        return None
    return reader(value, where)  # type: ignore[operator]


@dataclass(frozen=True, slots=True)
class TargetSpec:
    """What the child execs, with which environment, under which mechanisms.

    ``keep_fds`` are INHERITED slots the workload keeps at the same numbers (besides 0, 1
    and 2). ``no_new_privs`` must be true: the launcher always sets it, and refuses a plan
    that asks otherwise rather than silently doing something else.
    """

    argv: tuple[str, ...]
    envp: tuple[tuple[str, str], ...]
    exe_slot: int
    user_namespace: UserNamespaceRequest | None
    network_namespace: NetworkNamespaceRequest | None
    seccomp: SeccompRequest | None
    landlock: LandlockRequest | None = None
    cgroup: CgroupPlacement | None = None
    keep_fds: tuple[int, ...] = ()
    no_new_privs: bool = True
    drop_capabilities: bool = False

    def __post_init__(self) -> None:
        _check_slot(self.exe_slot, "target.exe_slot")
        if not self.argv:
            raise ProtocolError("target.argv: must not be empty (argv[0] is required)")
        for index, arg in enumerate(self.argv):
            if not isinstance(arg, str) or "\x00" in arg:
                raise ProtocolError(f"target.argv[{index}]: must be text without NUL")
        names: set[str] = set()
        for index, pair in enumerate(self.envp):
            if not (isinstance(pair, tuple) and len(pair) == 2):
                raise ProtocolError(f"target.envp[{index}]: must be a (name, value) pair")
            name, val = pair
            if not isinstance(name, str) or not _ENV_NAME.match(name):
                raise ProtocolError(f"target.envp[{index}]: name {name!r} is empty or has '='")
            if not isinstance(val, str) or "\x00" in val:
                raise ProtocolError(f"target.envp[{index}]: value of {name} contains NUL")
            if name in names:
                raise ProtocolError(f"target.envp[{index}]: duplicate name {name}")
            names.add(name)
        for index, fd in enumerate(self.keep_fds):
            _check_slot(fd, f"target.keep_fds[{index}]")

    def to_value(self) -> dict[str, canonical.Value]:
        return {
            "argv": list(self.argv),
            "envp": [[name, val] for name, val in self.envp],
            "exe_slot": self.exe_slot,
            "user_namespace": None
            if self.user_namespace is None
            else self.user_namespace.to_value(),
            "network_namespace": (
                None if self.network_namespace is None else self.network_namespace.to_value()
            ),
            "seccomp": None if self.seccomp is None else self.seccomp.to_value(),
            "landlock": None if self.landlock is None else self.landlock.to_value(),
            "cgroup": None if self.cgroup is None else self.cgroup.to_value(),
            "keep_fds": list(self.keep_fds),
            "no_new_privs": self.no_new_privs,
            "drop_capabilities": self.drop_capabilities,
        }

    @classmethod
    def from_value(cls, value: object, where: str = "target") -> TargetSpec:
        keys = (
            "argv",
            "envp",
            "exe_slot",
            "user_namespace",
            "network_namespace",
            "seccomp",
            "landlock",
            "cgroup",
            "keep_fds",
            "no_new_privs",
            "drop_capabilities",
        )
        m = _map(value, where, keys)
        argv = tuple(
            _text(a, f"{where}.argv[{i}]")
            for i, a in enumerate(_array(m["argv"], f"{where}.argv", _MAX_ARGV))
        )
        envp: list[tuple[str, str]] = []
        for i, pair in enumerate(_array(m["envp"], f"{where}.envp", _MAX_ENV)):
            items = _array(pair, f"{where}.envp[{i}]", 2)
            if len(items) != 2:
                raise ProtocolError(f"{where}.envp[{i}]: expected [name, value]")
            envp.append(
                (_text(items[0], f"{where}.envp[{i}][0]"), _text(items[1], f"{where}.envp[{i}][1]"))
            )
        keep = tuple(
            _slot_number(fd, f"{where}.keep_fds[{i}]")
            for i, fd in enumerate(_array(m["keep_fds"], f"{where}.keep_fds", 256))
        )
        userns = _optional(
            m["user_namespace"], UserNamespaceRequest.from_value, f"{where}.user_namespace"
        )
        netns = _optional(
            m["network_namespace"], NetworkNamespaceRequest.from_value, f"{where}.network_namespace"
        )
        seccomp = _optional(m["seccomp"], SeccompRequest.from_value, f"{where}.seccomp")
        landlock = _optional(m["landlock"], LandlockRequest.from_value, f"{where}.landlock")
        cgroup = _optional(m["cgroup"], CgroupPlacement.from_value, f"{where}.cgroup")
        try:
            return cls(
                argv=argv,
                envp=tuple(envp),
                exe_slot=_slot_number(m["exe_slot"], f"{where}.exe_slot"),
                user_namespace=userns,  # type: ignore[arg-type]
                network_namespace=netns,  # type: ignore[arg-type]
                seccomp=seccomp,  # type: ignore[arg-type]
                landlock=landlock,  # type: ignore[arg-type]
                cgroup=cgroup,  # type: ignore[arg-type]
                keep_fds=keep,
                no_new_privs=_bool(m["no_new_privs"], f"{where}.no_new_privs"),
                drop_capabilities=_bool(m["drop_capabilities"], f"{where}.drop_capabilities"),
            )
        except ProtocolError:
            raise
        except (TypeError, ValueError) as exc:
            raise ProtocolError(f"{where}: {exc}") from None


@dataclass(frozen=True, slots=True)
class LaunchBody:
    """The whole launch request; its canonical encoding is what the envelope carries."""

    attempt_id: bytes
    plan_id: bytes
    h_a: bytes
    h_p: bytes
    h_l: bytes
    lowering: tuple[LoweringEntry, ...]
    # The plan's parameters, one per lowering entry: the launcher re-hashes each against
    # its entry's param_digest and checks the target says the same (launcher.verify).
    params: tuple[canonical.Value, ...]
    descriptor_table: tuple[DescriptorSlot, ...]
    target: TargetSpec
    test_hooks: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        for name in ("attempt_id", "plan_id", "h_a", "h_p", "h_l"):
            _digest(getattr(self, name), name)
        unknown = set(self.test_hooks) - TEST_HOOKS
        if unknown:
            raise ProtocolError(f"test_hooks: unknown hooks {sorted(unknown)}")

    def to_value(self) -> dict[str, canonical.Value]:
        return {
            "attempt_id": self.attempt_id,
            "plan_id": self.plan_id,
            "h_a": self.h_a,
            "h_p": self.h_p,
            "h_l": self.h_l,
            "lowering": [entry.to_value() for entry in self.lowering],
            "params": list(self.params),
            "descriptor_table": [slot.to_value() for slot in self.descriptor_table],
            "target": self.target.to_value(),
            "test_hooks": sorted(self.test_hooks),
        }

    def encode(self) -> bytes:
        """The canonical CBOR bytes of this body (what the envelope digests)."""
        return canonical.encode(self.to_value())

    @classmethod
    def from_value(cls, value: object) -> LaunchBody:
        keys = (
            "attempt_id",
            "plan_id",
            "h_a",
            "h_p",
            "h_l",
            "lowering",
            "params",
            "descriptor_table",
            "target",
            "test_hooks",
        )
        m = _map(value, "body", keys)
        try:
            lowering = entries_from_wire(_array(m["lowering"], "body.lowering", 256))
        except LoweringError as exc:
            raise ProtocolError(f"body.lowering: {exc}") from None
        table = tuple(
            DescriptorSlot.from_value(s, f"body.descriptor_table[{i}]")
            for i, s in enumerate(_array(m["descriptor_table"], "body.descriptor_table", 256))
        )
        hooks_raw = _array(m["test_hooks"], "body.test_hooks", len(TEST_HOOKS))
        hooks = [_text(h, f"body.test_hooks[{i}]") for i, h in enumerate(hooks_raw)]
        if hooks != sorted(set(hooks)):
            raise ProtocolError("body.test_hooks: must be sorted and unique")
        return cls(
            attempt_id=_digest(m["attempt_id"], "body.attempt_id"),
            plan_id=_digest(m["plan_id"], "body.plan_id"),
            h_a=_digest(m["h_a"], "body.h_a"),
            h_p=_digest(m["h_p"], "body.h_p"),
            h_l=_digest(m["h_l"], "body.h_l"),
            lowering=lowering,
            params=tuple(cast(canonical.Value, p) for p in _array(m["params"], "body.params", 256)),
            descriptor_table=table,
            target=TargetSpec.from_value(m["target"], "body.target"),
            test_hooks=frozenset(hooks),
        )

    @classmethod
    def decode(cls, data: bytes) -> LaunchBody:
        """Strictly decode canonical bytes (ProtocolError names what is wrong)."""
        try:
            value = canonical.decode(data)
        except canonical.CanonicalError as exc:
            raise ProtocolError(f"body: not canonical CBOR ({exc})") from None
        return cls.from_value(value)


@dataclass(frozen=True, slots=True)
class LaunchPlan:
    """What ``run_launcher`` takes: a launch body (a wrapper so the API can grow)."""

    body: LaunchBody
