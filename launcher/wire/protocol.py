"""The launch body: what the host tells the launcher, as frozen values with one wire form.

The body is the verified plan and nothing else: the lowering entries with their
parameters (the launcher re-hashes each against its ``param_digest`` and decodes it with
the parameter class the mechanism catalogue declares), the descriptor table (every
authority fd the host opened, with the path it was opened from where it stands for one),
and the values of secret leases (resolved by the host, never in the plan or the ledger).
There is no separate "target": the schedule is the program, and each mechanism reads its
own typed parameters.

The host encodes ``body.to_value()`` canonically, wraps it in an envelope
(:mod:`bvisor.launcher.wire.envelope`) and hands it over in a sealed memfd; the launcher
decodes it with :meth:`LaunchBody.from_value`, which is strict: unknown or missing keys,
wrong types and out-of-range numbers are errors naming the field.

``test_hooks`` is the test-only lie switch (see ``TEST_HOOKS``): it exists only as a
field of the body; no spec field, flag or environment variable sets it, and a launcher
that honours a hook says so in a ``# DANGER`` note before anything else it reports.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from typing import TypeVar, cast

from bvisor import canonical
from bvisor.contract._wire import (
    expect_array,
    expect_bool,
    expect_bytes,
    expect_enum,
    expect_int,
    expect_map,
    expect_text,
)
from bvisor.contract.errors import ContractError
from bvisor.contract.lowering import LoweringEntry, LoweringError, entries_from_wire
from bvisor.digest import DIGEST_SIZE

__all__ = [
    "MAX_SLOT",
    "TEST_HOOKS",
    "DescriptorKind",
    "DescriptorRole",
    "DescriptorShape",
    "DescriptorSlot",
    "LaunchBody",
    "LaunchPlan",
    "ProtocolError",
]

# The only test hooks a launcher knows; any other name is refused. Each makes one
# mechanism's module skip its work (or, ``outputs_follow_links``, do it without its fd
# checks) while the run still reports it.
TEST_HOOKS: frozenset[str] = frozenset(
    {
        "outputs_follow_links",
        "skip_caps_drop",
        "skip_cgroup_placement",
        "skip_cgroupfs_hide",
        "skip_denial_notify",
        "skip_env_scrub",
        "skip_fd_scrub",
        "skip_landlock",
        "skip_netns",
        "skip_outputs",
        "skip_pidns",
        "skip_rootfs",
        "skip_seccomp",
        "skip_userlimits",
        "skip_userns",
        "skip_utsns",
        # Host-side: the allow list's proxy allows (and records as allowed) everything.
        "proxy_allow_all",
    }
)

# Slots above this are refused: fds that high would need a raised RLIMIT_NOFILE, and the
# channel fds are placed just above the highest slot.
MAX_SLOT = 900
_MAX_ITEMS = 4096
_MAX_STRING = 128 * 1024
_MAX_SECRET = 128 * 1024


class ProtocolError(ValueError):
    """A launch body value is malformed; the message names the field."""


T = TypeVar("T")
_E = TypeVar("_E", bound=Enum)


# The one strict reader of canonical values is the contract's (``bvisor.contract._wire``);
# these adapt it to the body's own error type and limits.


def _strict(read: Callable[[], T]) -> T:
    try:
        return read()
    except ContractError as exc:
        raise ProtocolError(str(exc)) from None


def _map(value: object, where: str, keys: Sequence[str]) -> Mapping[str, object]:
    return _strict(lambda: expect_map(value, where, required=keys))


def _int(value: object, where: str, lo: int, hi: int) -> int:
    return _strict(lambda: expect_int(value, where, minimum=lo, maximum=hi))


def _bool(value: object, where: str) -> bool:
    return _strict(lambda: expect_bool(value, where))


def _text(value: object, where: str, limit: int = _MAX_STRING) -> str:
    text = _strict(lambda: expect_text(value, where))
    if "\x00" in text:
        raise ProtocolError(f"{where}: text contains NUL")
    if len(text) > limit:
        raise ProtocolError(f"{where}: text longer than {limit} characters")
    return text


def _digest(value: object, where: str) -> bytes:
    return _strict(lambda: expect_bytes(value, where, size=DIGEST_SIZE))


def _array(value: object, where: str, limit: int = _MAX_ITEMS) -> Sequence[object]:
    items = _strict(lambda: expect_array(value, where))
    if len(items) > limit:
        raise ProtocolError(f"{where}: more than {limit} items")
    return items


def _enum(cls: type[_E], value: object, where: str) -> _E:
    return _strict(lambda: expect_enum(cls, value, where))


class DescriptorKind(StrEnum):
    """What ``fstat`` must say an fd is (``S_IFMT``)."""

    REGULAR = "Regular"
    DIRECTORY = "Directory"
    CHAR_DEVICE = "CharDevice"
    FIFO = "Fifo"
    SOCKET = "Socket"
    SYMLINK = "Symlink"  # an O_PATH fd of a symbolic link itself (a system root link)


class DescriptorRole(StrEnum):
    """Why the host passed an fd; the launcher checks each role is used consistently.

    ``FS_ROOT`` slots stand for the host path they were opened from (a bind source or a
    Landlock rule); ``CGROUP_V1_LEAF`` slots name their controller in ``path``;
    ``ARTIFACT_STAGING`` is the directory the host made for a run's committed outputs,
    which the launcher fills (by fd) after the workload exits.
    ``NET_PROXY`` is the host's end-to-be of the allow list's listener: one end of a
    socketpair whose other end the host's proxy holds.
    """

    TARGET_EXE = "TargetExe"
    FS_ROOT = "FsRoot"
    CGROUP_V2_LEAF = "CgroupV2Leaf"
    CGROUP_V1_LEAF = "CgroupV1Leaf"
    INHERITED = "Inherited"
    ARTIFACT_STAGING = "ArtifactStaging"
    NET_PROXY = "NetProxy"


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
    """One authority fd: its number in the launcher, role, expected shape, and path."""

    slot_index: int
    role: DescriptorRole
    expected: DescriptorShape
    path: str | None = None

    def __post_init__(self) -> None:
        _int(self.slot_index, "descriptor slot_index", 0, MAX_SLOT)
        needs_path = self.role in (DescriptorRole.FS_ROOT, DescriptorRole.CGROUP_V1_LEAF)
        if needs_path != (self.path is not None):
            raise ProtocolError(
                f"slot {self.slot_index} ({self.role.value}): "
                + ("names no path" if needs_path else "must not name a path")
            )

    def to_value(self) -> dict[str, canonical.Value]:
        return {
            "slot_index": self.slot_index,
            "role": self.role.value,
            "expected": self.expected.to_value(),
            "path": self.path,
        }

    @classmethod
    def from_value(cls, value: object, where: str = "slot") -> DescriptorSlot:
        m = _map(value, where, ("slot_index", "role", "expected", "path"))
        return cls(
            _int(m["slot_index"], f"{where}.slot_index", 0, MAX_SLOT),
            _enum(DescriptorRole, m["role"], f"{where}.role"),
            DescriptorShape.from_value(m["expected"], f"{where}.expected"),
            None if m["path"] is None else _text(m["path"], f"{where}.path"),
        )


@dataclass(frozen=True, slots=True)
class LaunchBody:
    """The whole launch request; its canonical encoding is what the envelope carries."""

    attempt_id: bytes
    plan_id: bytes
    h_a: bytes
    h_p: bytes
    h_l: bytes
    lowering: tuple[LoweringEntry, ...]
    # One canonical parameter value per lowering entry, in schedule order.
    params: tuple[canonical.Value, ...]
    descriptor_table: tuple[DescriptorSlot, ...]
    # (lease reference, value) for every secret lease the environment names, sorted.
    secrets: tuple[tuple[str, str], ...] = ()
    test_hooks: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        for name in ("attempt_id", "plan_id", "h_a", "h_p", "h_l"):
            _digest(getattr(self, name), name)
        unknown = set(self.test_hooks) - TEST_HOOKS
        if unknown:
            raise ProtocolError(f"test_hooks: unknown hooks {sorted(unknown)}")
        refs = [ref for ref, _ in self.secrets]
        if refs != sorted(set(refs)):
            raise ProtocolError("secrets: lease references must be sorted and unique")

    def secret(self, ref: str) -> str | None:
        return dict(self.secrets).get(ref)

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
            "secrets": [[ref, value] for ref, value in self.secrets],
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
            "secrets",
            "test_hooks",
        )
        m = _map(value, "body", keys)
        try:
            lowering = entries_from_wire(_array(m["lowering"], "body.lowering", 256))
        except LoweringError as exc:
            raise ProtocolError(f"body.lowering: {exc}") from None
        table = tuple(
            DescriptorSlot.from_value(s, f"body.descriptor_table[{i}]")
            for i, s in enumerate(_array(m["descriptor_table"], "body.descriptor_table", 1024))
        )
        secrets = []
        for i, pair in enumerate(_array(m["secrets"], "body.secrets", 256)):
            items = _array(pair, f"body.secrets[{i}]", 2)
            if len(items) != 2:
                raise ProtocolError(f"body.secrets[{i}]: expected [reference, value]")
            secrets.append(
                (
                    _text(items[0], f"body.secrets[{i}][0]"),
                    _text(items[1], f"body.secrets[{i}][1]", _MAX_SECRET),
                )
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
            secrets=tuple(secrets),
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
