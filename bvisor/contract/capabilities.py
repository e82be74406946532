"""The five capability families: what the workload is allowed to do.

Every capability encodes self-tagged with its family name, e.g.
``{"filesystem": {"access": "read", "recursive": true, "roots": [...]}}``. Sets are
stored in canonical order when the value is built (roots and endpoints sorted as UTF-8
bytes, fds ascending), so equal meanings compare equal and encode identically; duplicates
are refused rather than merged, because a duplicate usually signals a typo.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import TypeAlias

from bvisor import canonical
from bvisor.contract._wire import (
    as_tuple,
    check_abs_path,
    expect_array,
    expect_bool,
    expect_enum,
    expect_int,
    expect_map,
    expect_text,
    expect_variant,
)
from bvisor.contract.endpoints import normalize_endpoint
from bvisor.contract.environment import EnvPolicy
from bvisor.contract.errors import ContractError

__all__ = [
    "CAPABILITY_FAMILIES",
    "FD_MAX",
    "Capability",
    "ChildSpawn",
    "Environment",
    "FdPolicy",
    "FdsNone",
    "FdsOnly",
    "Filesystem",
    "FsAccess",
    "InheritedFds",
    "Network",
    "NetworkAllowList",
    "NetworkDenyAll",
    "NetworkPolicy",
    "SpawnPolicy",
    "capability_family",
    "capability_from_value",
]

FD_MAX = (1 << 31) - 1


class FsAccess(Enum):
    READ = "read"
    WRITE = "write"
    READ_WRITE = "read_write"

    def to_value(self) -> str:
        return self.value


def _sorted_unique(items: tuple[str, ...], field_name: str, what: str) -> tuple[str, ...]:
    seen: set[str] = set()
    for index, item in enumerate(items):
        if item in seen:
            raise ContractError(f"{field_name}[{index}]", f"duplicate {what} {item!r}", "duplicate")
        seen.add(item)
    return tuple(sorted(items, key=lambda s: s.encode("utf-8")))


def _check_order(built: tuple[object, ...], given: tuple[object, ...], path: str) -> None:
    if built != given:
        raise ContractError(path, "not in canonical (sorted) order", "not-canonical")


@dataclass(frozen=True, slots=True)
class Filesystem:
    """Access to one or more directory trees (or files) given by absolute, normal paths."""

    access: FsAccess
    roots: tuple[str, ...]
    recursive: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.access, FsAccess):
            raise ContractError("access", f"{self.access!r} is not an FsAccess")
        roots = as_tuple(self.roots, "roots")
        if not roots:
            raise ContractError("roots", "at least one root is required", "empty")
        for index, root in enumerate(roots):
            check_abs_path(root, f"roots[{index}]")
        expect_bool(self.recursive, "recursive")
        object.__setattr__(self, "roots", _sorted_unique(roots, "roots", "root"))  # type: ignore[arg-type]

    def to_value(self) -> dict[str, canonical.Value]:
        return {"filesystem": self.payload()}

    def payload(self) -> dict[str, canonical.Value]:
        return {"access": self.access.value, "roots": list(self.roots), "recursive": self.recursive}

    @classmethod
    def from_value(cls, value: object, path: str = "capability") -> Filesystem:
        _, payload = expect_variant(value, path, ("filesystem",))
        inner = f"{path}.filesystem"
        body = expect_map(payload, inner, required=("access", "roots", "recursive"))
        roots = tuple(
            expect_text(r, f"{inner}.roots[{i}]")
            for i, r in enumerate(expect_array(body["roots"], f"{inner}.roots"))
        )
        try:
            built = cls(
                expect_enum(FsAccess, body["access"], f"{inner}.access"),
                roots,
                expect_bool(body["recursive"], f"{inner}.recursive"),
            )
        except ContractError as exc:
            raise exc.under(inner) from None
        _check_order(built.roots, roots, f"{inner}.roots")
        return built


@dataclass(frozen=True, slots=True)
class NetworkDenyAll:
    """No network at all (the workload gets an empty network namespace)."""

    def to_value(self) -> str:
        return "deny_all"


@dataclass(frozen=True, slots=True)
class NetworkAllowList:
    """Only these endpoints (``host:port``, ``*.domain:port``, ``ip/cidr:port``, optionally
    ``/protocol``: :mod:`bvisor.contract.endpoints`), stored in canonical spelling."""

    endpoints: tuple[str, ...]

    def __post_init__(self) -> None:
        endpoints = as_tuple(self.endpoints, "endpoints")
        if not endpoints:
            raise ContractError("endpoints", "at least one endpoint is required", "empty")
        normal = tuple(
            normalize_endpoint(expect_text(e, f"endpoints[{i}]"), f"endpoints[{i}]")
            for i, e in enumerate(endpoints)
        )
        object.__setattr__(self, "endpoints", _sorted_unique(normal, "endpoints", "endpoint"))

    def to_value(self) -> dict[str, canonical.Value]:
        return {"allow_list": list(self.endpoints)}


NetworkPolicy: TypeAlias = NetworkDenyAll | NetworkAllowList


@dataclass(frozen=True, slots=True)
class Network:
    policy: NetworkPolicy

    def __post_init__(self) -> None:
        if not isinstance(self.policy, (NetworkDenyAll, NetworkAllowList)):
            raise ContractError("policy", f"{self.policy!r} is not a network policy")

    def to_value(self) -> dict[str, canonical.Value]:
        return {"network": self.payload()}

    def payload(self) -> dict[str, canonical.Value]:
        return {"policy": self.policy.to_value()}

    @classmethod
    def from_value(cls, value: object, path: str = "capability") -> Network:
        _, payload = expect_variant(value, path, ("network",))
        inner = f"{path}.network"
        body = expect_map(payload, inner, required=("policy",))
        name, data = expect_variant(body["policy"], f"{inner}.policy", ("deny_all", "allow_list"))
        if name == "deny_all":
            if data is not None:
                raise ContractError(f"{inner}.policy", "deny_all carries no data", "wrong-type")
            return cls(NetworkDenyAll())
        where = f"{inner}.policy.allow_list"
        given = tuple(
            expect_text(e, f"{where}[{i}]") for i, e in enumerate(expect_array(data, where))
        )
        try:
            allow = NetworkAllowList(given)
        except ContractError as exc:
            raise ContractError(
                f"{where}{exc.path.removeprefix('endpoints')}", exc.message, exc.code
            ) from None
        _check_order(allow.endpoints, given, where)
        return cls(allow)


class SpawnPolicy(Enum):
    DENY_NEW_TASKS = "deny_new_tasks"
    ALLOW_THREADS_WITHIN_BOUNDARY = "allow_threads_within_boundary"
    ALLOW_DESCENDANTS_WITHIN_BOUNDARY = "allow_descendants_within_boundary"

    def to_value(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class ChildSpawn:
    policy: SpawnPolicy

    def __post_init__(self) -> None:
        if not isinstance(self.policy, SpawnPolicy):
            raise ContractError("policy", f"{self.policy!r} is not a SpawnPolicy")

    def to_value(self) -> dict[str, canonical.Value]:
        return {"child_spawn": self.payload()}

    def payload(self) -> dict[str, canonical.Value]:
        return {"policy": self.policy.value}

    @classmethod
    def from_value(cls, value: object, path: str = "capability") -> ChildSpawn:
        _, payload = expect_variant(value, path, ("child_spawn",))
        inner = f"{path}.child_spawn"
        body = expect_map(payload, inner, required=("policy",))
        return cls(expect_enum(SpawnPolicy, body["policy"], f"{inner}.policy"))


@dataclass(frozen=True, slots=True)
class Environment:
    policy: EnvPolicy

    def __post_init__(self) -> None:
        if not isinstance(self.policy, EnvPolicy):
            raise ContractError("policy", f"{self.policy!r} is not an EnvPolicy")

    def to_value(self) -> dict[str, canonical.Value]:
        return {"environment": self.payload()}

    def payload(self) -> dict[str, canonical.Value]:
        return {"policy": self.policy.to_value()}

    @classmethod
    def from_value(cls, value: object, path: str = "capability") -> Environment:
        _, payload = expect_variant(value, path, ("environment",))
        inner = f"{path}.environment"
        body = expect_map(payload, inner, required=("policy",))
        return cls(EnvPolicy.from_value(body["policy"], f"{inner}.policy"))


@dataclass(frozen=True, slots=True)
class FdsNone:
    """Only stdio (fds 0-2) survive into the workload."""

    def to_value(self) -> str:
        return "none"


@dataclass(frozen=True, slots=True)
class FdsOnly:
    """Stdio plus exactly these inherited fds (each >= 3; 0-2 are always stdio)."""

    fds: tuple[int, ...]

    def __post_init__(self) -> None:
        fds = as_tuple(self.fds, "fds")
        if not fds:
            raise ContractError("fds", "at least one fd is required (use none instead)", "empty")
        seen: set[int] = set()
        checked: list[int] = []
        for index, fd in enumerate(fds):
            number = expect_int(fd, f"fds[{index}]", minimum=3, maximum=FD_MAX)
            if number in seen:
                raise ContractError(f"fds[{index}]", f"duplicate fd {number}", "duplicate")
            seen.add(number)
            checked.append(number)
        object.__setattr__(self, "fds", tuple(sorted(checked)))

    def to_value(self) -> dict[str, canonical.Value]:
        return {"only": list(self.fds)}


FdPolicy: TypeAlias = FdsNone | FdsOnly


@dataclass(frozen=True, slots=True)
class InheritedFds:
    policy: FdPolicy

    def __post_init__(self) -> None:
        if not isinstance(self.policy, (FdsNone, FdsOnly)):
            raise ContractError("policy", f"{self.policy!r} is not an fd policy")

    def to_value(self) -> dict[str, canonical.Value]:
        return {"inherited_fds": self.payload()}

    def payload(self) -> dict[str, canonical.Value]:
        return {"policy": self.policy.to_value()}

    @classmethod
    def from_value(cls, value: object, path: str = "capability") -> InheritedFds:
        _, payload = expect_variant(value, path, ("inherited_fds",))
        inner = f"{path}.inherited_fds"
        body = expect_map(payload, inner, required=("policy",))
        name, data = expect_variant(body["policy"], f"{inner}.policy", ("none", "only"))
        if name == "none":
            if data is not None:
                raise ContractError(f"{inner}.policy", "none carries no data", "wrong-type")
            return cls(FdsNone())
        where = f"{inner}.policy.only"
        given = tuple(
            expect_int(fd, f"{where}[{i}]") for i, fd in enumerate(expect_array(data, where))
        )
        try:
            only = FdsOnly(given)
        except ContractError as exc:
            raise ContractError(
                f"{where}{exc.path.removeprefix('fds')}", exc.message, exc.code
            ) from None
        _check_order(only.fds, given, where)
        return cls(only)


Capability: TypeAlias = Filesystem | Network | ChildSpawn | Environment | InheritedFds

# Family name (the encoding tag) -> class, in canonical family order.
CAPABILITY_FAMILIES: dict[str, type[Capability]] = {
    "filesystem": Filesystem,
    "network": Network,
    "child_spawn": ChildSpawn,
    "environment": Environment,
    "inherited_fds": InheritedFds,
}


def capability_family(capability: Capability) -> str:
    """The family name of a capability (its encoding tag)."""
    for name, cls in CAPABILITY_FAMILIES.items():
        if isinstance(capability, cls):
            return name
    raise ContractError("capability", f"{capability!r} is not a capability", "wrong-type")


def capability_from_value(value: object, path: str = "capability") -> Capability:
    """Decode any capability by its family tag."""
    name, _ = expect_variant(value, path, tuple(CAPABILITY_FAMILIES))
    return CAPABILITY_FAMILIES[name].from_value(value, path)
