"""Requirement keys: the policy-aware units admission decides on, one per capability/control.

A requirement is a ``RequirementKind`` (17 kinds, DESIGN.md §2 — the capability family
split by policy where the policy changes what the kernel must do, e.g. deny-all vs
allow-list networking) plus the *canonical policy*: the capability's or control's payload
in canonical form (sets sorted, unit variants ``{}``). ``key()`` is the canonical CBOR of
``{"kind", "policy"}``, so two requirements with the same meaning have the same key
however the spec listed them, and different meanings never share a key.

Kind values are stable snake_case text (they are hashed into h_a and recorded in the
ledger); the order of the enum is the canonical order of requirements.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

from bvisor import canonical
from bvisor.contract._wire import expect_enum, expect_map
from bvisor.contract.capabilities import (
    Capability,
    ChildSpawn,
    Environment,
    FdsNone,
    Filesystem,
    InheritedFds,
    Network,
    NetworkDenyAll,
    SpawnPolicy,
)
from bvisor.contract.controls import (
    CaptureStreams,
    CommitArtifact,
    DiscardArtifact,
    ExposePath,
    HostControl,
    Kill,
    LaunchWorkload,
    ListOutputs,
    TempRoot,
)
from bvisor.contract.errors import ContractError
from bvisor.contract.spec import BoundarySpec

__all__ = [
    "Requirement",
    "RequirementKind",
    "requirement_of_capability",
    "requirement_of_control",
    "requirements_of",
]


class RequirementKind(Enum):
    FILESYSTEM = "filesystem"
    NETWORK_DENY_ALL = "network_deny_all"
    NETWORK_ALLOW_LIST = "network_allow_list"
    CHILD_SPAWN_DENY_NEW_TASKS = "child_spawn_deny_new_tasks"
    CHILD_SPAWN_ALLOW_THREADS = "child_spawn_allow_threads"
    CHILD_SPAWN_ALLOW_DESCENDANTS = "child_spawn_allow_descendants"
    ENVIRONMENT = "environment"
    INHERITED_FDS_NONE = "inherited_fds_none"
    INHERITED_FDS_ONLY = "inherited_fds_only"
    LAUNCH_WORKLOAD = "launch_workload"
    CAPTURE_STREAMS = "capture_streams"
    TEMP_ROOT = "temp_root"
    EXPOSE_PATH = "expose_path"
    COMMIT_ARTIFACT = "commit_artifact"
    DISCARD_ARTIFACT = "discard_artifact"
    KILL = "kill"
    LIST_OUTPUTS = "list_outputs"

    def to_value(self) -> str:
        return self.value

    @property
    def order(self) -> int:
        """Position in the canonical requirement order."""
        return _KIND_ORDER[self]


_KIND_ORDER = {kind: index for index, kind in enumerate(RequirementKind)}


@dataclass(frozen=True, slots=True, eq=False)
class Requirement:
    """One admission unit: a kind plus its canonical policy value.

    ``policy`` is normalized on construction (encoded and decoded), so it is always plain
    canonical data (lists, dicts) and equality/hash follow ``key()``.
    """

    kind: RequirementKind
    policy: canonical.Value

    def __post_init__(self) -> None:
        if not isinstance(self.kind, RequirementKind):
            raise ContractError("kind", f"{self.kind!r} is not a RequirementKind", "wrong-type")
        try:
            normal = canonical.decode(canonical.encode(self.policy))
        except canonical.CanonicalError as exc:
            raise ContractError("policy", str(exc), "not-canonical") from None
        object.__setattr__(self, "policy", normal)

    def to_value(self) -> dict[str, canonical.Value]:
        return {"kind": self.kind.value, "policy": self.policy}

    def key(self) -> bytes:
        """The canonical bytes identifying this requirement (kind + policy)."""
        return canonical.encode(self.to_value())

    def sort_key(self) -> tuple[int, bytes]:
        return (self.kind.order, self.key())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Requirement):
            return NotImplemented
        return self.key() == other.key()

    def __hash__(self) -> int:
        return hash(self.key())

    @classmethod
    def from_value(cls, value: object, path: str = "requirement") -> Requirement:
        body = expect_map(value, path, required=("kind", "policy"))
        kind = expect_enum(RequirementKind, body["kind"], f"{path}.kind")
        if not isinstance(body["policy"], Mapping):
            raise ContractError(f"{path}.policy", "expected a table", "wrong-type")
        return cls(kind, body["policy"])


_SPAWN_KINDS = {
    SpawnPolicy.DENY_NEW_TASKS: RequirementKind.CHILD_SPAWN_DENY_NEW_TASKS,
    SpawnPolicy.ALLOW_THREADS_WITHIN_BOUNDARY: RequirementKind.CHILD_SPAWN_ALLOW_THREADS,
    SpawnPolicy.ALLOW_DESCENDANTS_WITHIN_BOUNDARY: RequirementKind.CHILD_SPAWN_ALLOW_DESCENDANTS,
}


def requirement_of_capability(capability: Capability) -> Requirement:
    """The requirement a capability gives rise to (its policy = the capability payload)."""
    if isinstance(capability, Filesystem):
        return Requirement(RequirementKind.FILESYSTEM, capability.payload())
    if isinstance(capability, Network):
        deny = isinstance(capability.policy, NetworkDenyAll)
        kind = RequirementKind.NETWORK_DENY_ALL if deny else RequirementKind.NETWORK_ALLOW_LIST
        return Requirement(kind, capability.payload())
    if isinstance(capability, ChildSpawn):
        return Requirement(_SPAWN_KINDS[capability.policy], capability.payload())
    if isinstance(capability, Environment):
        return Requirement(RequirementKind.ENVIRONMENT, capability.payload())
    if isinstance(capability, InheritedFds):
        none = isinstance(capability.policy, FdsNone)
        kind = RequirementKind.INHERITED_FDS_NONE if none else RequirementKind.INHERITED_FDS_ONLY
        return Requirement(kind, capability.payload())
    raise ContractError("capability", f"{capability!r} is not a capability", "wrong-type")


def requirement_of_control(control: HostControl) -> Requirement:
    """The requirement a host control gives rise to (unit controls have policy ``{}``)."""
    if isinstance(control, LaunchWorkload):
        return Requirement(RequirementKind.LAUNCH_WORKLOAD, {})
    if isinstance(control, CaptureStreams):
        return Requirement(RequirementKind.CAPTURE_STREAMS, control.payload())
    if isinstance(control, TempRoot):
        return Requirement(RequirementKind.TEMP_ROOT, {})
    if isinstance(control, ExposePath):
        return Requirement(RequirementKind.EXPOSE_PATH, control.payload())
    if isinstance(control, CommitArtifact):
        return Requirement(RequirementKind.COMMIT_ARTIFACT, control.payload())
    if isinstance(control, DiscardArtifact):
        return Requirement(RequirementKind.DISCARD_ARTIFACT, {})
    if isinstance(control, Kill):
        return Requirement(RequirementKind.KILL, control.payload())
    if isinstance(control, ListOutputs):
        return Requirement(RequirementKind.LIST_OUTPUTS, {})
    raise ContractError("control", f"{control!r} is not a host control", "wrong-type")


def requirements_of(spec: BoundarySpec) -> tuple[Requirement, ...]:
    """One requirement per capability and per control, in canonical (kind, key) order."""
    found = [requirement_of_capability(c) for c in spec.capabilities]
    found += [requirement_of_control(c) for c in spec.controls]
    return tuple(sorted(found, key=Requirement.sort_key))
