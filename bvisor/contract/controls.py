"""Host controls: what the *host* does around the workload (launch, capture, kill, ...).

Unit controls encode as their name (``"launch_workload"``); controls with data as a
one-entry map (``{"kill": {"target": "run_tree", "guarantee": "atomic"}}``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import TypeAlias

from bvisor import canonical
from bvisor.contract._wire import (
    check_abs_path,
    expect_bool,
    expect_enum,
    expect_map,
    expect_variant,
)
from bvisor.contract.capabilities import FsAccess
from bvisor.contract.errors import ContractError

__all__ = [
    "CONTROL_KINDS",
    "CaptureStreams",
    "CommitArtifact",
    "DiscardArtifact",
    "Durability",
    "ExposePath",
    "HostControl",
    "Kill",
    "KillGuarantee",
    "KillTarget",
    "LaunchWorkload",
    "ListOutputs",
    "StdStreams",
    "TempRoot",
    "control_from_value",
    "control_kind",
]


@dataclass(frozen=True, slots=True)
class LaunchWorkload:
    """Start the workload. Every spec must contain it."""

    def to_value(self) -> str:
        return "launch_workload"


@dataclass(frozen=True, slots=True)
class StdStreams:
    """Which standard streams are captured, and whether the workload gets a terminal.

    ``tty``: the workload's stdio is a pseudo-terminal of its own (inside its boundary,
    relayed by the host), never the caller's terminal. Left out of the canonical form when
    false, so specs from before it existed encode exactly as before.
    """

    stdout: bool
    stderr: bool
    stdin: bool = False
    tty: bool = False

    def __post_init__(self) -> None:
        for name in ("stdout", "stderr", "stdin", "tty"):
            expect_bool(getattr(self, name), name)

    @classmethod
    def capture_out_err(cls) -> StdStreams:
        return cls(stdout=True, stderr=True, stdin=False)

    def to_value(self) -> dict[str, canonical.Value]:
        value: dict[str, canonical.Value] = {
            "stdout": self.stdout,
            "stderr": self.stderr,
            "stdin": self.stdin,
        }
        if self.tty:
            value["tty"] = True
        return value

    @classmethod
    def from_value(cls, value: object, path: str = "streams") -> StdStreams:
        body = expect_map(value, path, required=("stdout", "stderr", "stdin"), optional=("tty",))
        tty = body.get("tty", False)
        if tty is False and "tty" in body:
            raise ContractError(
                f"{path}.tty", "false is written by leaving tty out", "not-canonical"
            )
        return cls(
            expect_bool(body["stdout"], f"{path}.stdout"),
            expect_bool(body["stderr"], f"{path}.stderr"),
            expect_bool(body["stdin"], f"{path}.stdin"),
            expect_bool(tty, f"{path}.tty"),
        )


@dataclass(frozen=True, slots=True)
class CaptureStreams:
    """Capture the selected standard streams into the report (counts and digests)."""

    streams: StdStreams

    def __post_init__(self) -> None:
        if not isinstance(self.streams, StdStreams):
            raise ContractError("streams", f"{self.streams!r} is not StdStreams")

    def payload(self) -> dict[str, canonical.Value]:
        return {"streams": self.streams.to_value()}

    def to_value(self) -> dict[str, canonical.Value]:
        return {"capture_streams": self.payload()}

    @classmethod
    def from_value(cls, value: object, path: str = "control") -> CaptureStreams:
        _, payload = expect_variant(value, path, ("capture_streams",))
        body = expect_map(payload, f"{path}.capture_streams", required=("streams",))
        return cls(StdStreams.from_value(body["streams"], f"{path}.capture_streams.streams"))


@dataclass(frozen=True, slots=True)
class TempRoot:
    """Give the workload a private, empty scratch directory, removed at teardown."""

    def to_value(self) -> str:
        return "temp_root"


@dataclass(frozen=True, slots=True)
class ExposePath:
    """Make host path ``source`` visible to the workload at ``dest`` with ``access``."""

    source: str
    dest: str
    access: FsAccess

    def __post_init__(self) -> None:
        check_abs_path(self.source, "source")
        check_abs_path(self.dest, "dest")
        if not isinstance(self.access, FsAccess):
            raise ContractError("access", f"{self.access!r} is not an FsAccess")

    def payload(self) -> dict[str, canonical.Value]:
        return {"source": self.source, "dest": self.dest, "access": self.access.value}

    def to_value(self) -> dict[str, canonical.Value]:
        return {"expose_path": self.payload()}

    @classmethod
    def from_value(cls, value: object, path: str = "control") -> ExposePath:
        _, payload = expect_variant(value, path, ("expose_path",))
        inner = f"{path}.expose_path"
        body = expect_map(payload, inner, required=("source", "dest", "access"))
        access = expect_enum(FsAccess, body["access"], f"{inner}.access")
        try:
            return cls(body["source"], body["dest"], access)  # type: ignore[arg-type]
        except ContractError as exc:
            raise exc.under(inner) from None


class Durability(Enum):
    """How hard a committed artifact must be on disk before the commit is reported.

    ``best_effort``: written and closed. ``synced``: file and its directory fsync'd.
    """

    BEST_EFFORT = "best_effort"
    SYNCED = "synced"

    def to_value(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class CommitArtifact:
    durability: Durability

    def __post_init__(self) -> None:
        if not isinstance(self.durability, Durability):
            raise ContractError("durability", f"{self.durability!r} is not a Durability")

    def payload(self) -> dict[str, canonical.Value]:
        return {"durability": self.durability.value}

    def to_value(self) -> dict[str, canonical.Value]:
        return {"commit_artifact": self.payload()}

    @classmethod
    def from_value(cls, value: object, path: str = "control") -> CommitArtifact:
        _, payload = expect_variant(value, path, ("commit_artifact",))
        body = expect_map(payload, f"{path}.commit_artifact", required=("durability",))
        return cls(
            expect_enum(Durability, body["durability"], f"{path}.commit_artifact.durability")
        )


@dataclass(frozen=True, slots=True)
class DiscardArtifact:
    """Throw the run's outputs away at teardown."""

    def to_value(self) -> str:
        return "discard_artifact"


class KillTarget(Enum):
    RUN_TREE = "run_tree"

    def to_value(self) -> str:
        return self.value


class KillGuarantee(Enum):
    """``atomic``: the whole tree dies at once (cgroup.kill); else best effort is allowed."""

    ATOMIC = "atomic"
    BEST_EFFORT_ALLOWED = "best_effort_allowed"

    def to_value(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class Kill:
    target: KillTarget
    guarantee: KillGuarantee

    def __post_init__(self) -> None:
        if not isinstance(self.target, KillTarget):
            raise ContractError("target", f"{self.target!r} is not a KillTarget")
        if not isinstance(self.guarantee, KillGuarantee):
            raise ContractError("guarantee", f"{self.guarantee!r} is not a KillGuarantee")

    def payload(self) -> dict[str, canonical.Value]:
        return {"target": self.target.value, "guarantee": self.guarantee.value}

    def to_value(self) -> dict[str, canonical.Value]:
        return {"kill": self.payload()}

    @classmethod
    def from_value(cls, value: object, path: str = "control") -> Kill:
        _, payload = expect_variant(value, path, ("kill",))
        inner = f"{path}.kill"
        body = expect_map(payload, inner, required=("target", "guarantee"))
        return cls(
            expect_enum(KillTarget, body["target"], f"{inner}.target"),
            expect_enum(KillGuarantee, body["guarantee"], f"{inner}.guarantee"),
        )


@dataclass(frozen=True, slots=True)
class ListOutputs:
    """List the run's outputs in the report."""

    def to_value(self) -> str:
        return "list_outputs"


HostControl: TypeAlias = (
    LaunchWorkload
    | CaptureStreams
    | TempRoot
    | ExposePath
    | CommitArtifact
    | DiscardArtifact
    | Kill
    | ListOutputs
)

# Control kind name (the encoding tag) -> class, in canonical order.
CONTROL_KINDS: dict[str, type[HostControl]] = {
    "launch_workload": LaunchWorkload,
    "capture_streams": CaptureStreams,
    "temp_root": TempRoot,
    "expose_path": ExposePath,
    "commit_artifact": CommitArtifact,
    "discard_artifact": DiscardArtifact,
    "kill": Kill,
    "list_outputs": ListOutputs,
}
_UNIT_CONTROLS = ("launch_workload", "temp_root", "discard_artifact", "list_outputs")


def control_kind(control: HostControl) -> str:
    """The kind name of a control (its encoding tag)."""
    for name, cls in CONTROL_KINDS.items():
        if isinstance(control, cls):
            return name
    raise ContractError("control", f"{control!r} is not a host control", "wrong-type")


def control_from_value(value: object, path: str = "control") -> HostControl:
    """Decode any host control by its tag."""
    name, payload = expect_variant(value, path, tuple(CONTROL_KINDS))
    if name in _UNIT_CONTROLS:
        if not isinstance(value, str):
            raise ContractError(path, f"{name} carries no data; encode it as text", "wrong-type")
        return CONTROL_KINDS[name]()  # type: ignore[call-arg]
    if payload is None:
        raise ContractError(path, f"{name} needs its fields", "wrong-type")
    decoder = CONTROL_KINDS[name]
    return decoder.from_value(value, path)  # type: ignore[union-attr]
