"""The lowering wire: the ordered mechanism entries a plan compiles to, and h_l over them.

The planner produces these entries and the launcher re-derives h_l from the entries it is
handed, so both sides must agree on one definition; it lives here, in the pure contract,
so neither imports the other for it. h_l is the ``bvisor.lowering.v1`` digest of the
canonical CBOR array of entry maps ``{id, version, phase_code, param_digest,
decl_digest}`` in schedule order.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum

from bvisor import canonical
from bvisor.digest import DIGEST_SIZE, Purpose, digest_value

__all__ = [
    "LoweringEntry",
    "LoweringError",
    "Phase",
    "entries_from_wire",
    "lowering_digest",
    "lowering_wire",
    "param_digest",
]

_ENTRY_ID = re.compile(r"^[a-z0-9]+(\.[a-z0-9_-]+)+\.v[0-9]+\Z")


class LoweringError(ValueError):
    """A lowering entry or wire value is malformed."""


class Phase(IntEnum):
    """Launcher phases, in the order the child window runs them (DESIGN.md §4)."""

    NAMESPACE_CREATE = 0
    FS_SETUP = 1
    PRIVILEGE_DROP = 2
    FD_HYGIENE = 3
    POLICY_INSTALL = 4
    LAUNCH = 5
    OBSERVE = 6
    TEARDOWN = 7


@dataclass(frozen=True, slots=True)
class LoweringEntry:
    """One scheduled mechanism: which primitive, at what phase, with which parameters."""

    id: str
    version: int
    phase_code: int
    param_digest: bytes
    decl_digest: bytes

    def __post_init__(self) -> None:
        if not _ENTRY_ID.match(self.id):
            raise LoweringError(f"lowering entry id {self.id!r} is not a dotted versioned name")
        if not isinstance(self.version, int) or self.version < 1:
            raise LoweringError(f"{self.id}: version must be a positive integer")
        if self.phase_code not in {int(p) for p in Phase}:
            raise LoweringError(f"{self.id}: unknown phase code {self.phase_code!r}")
        for name in ("param_digest", "decl_digest"):
            value = getattr(self, name)
            if not isinstance(value, bytes) or len(value) != DIGEST_SIZE:
                raise LoweringError(f"{self.id}: {name} must be {DIGEST_SIZE} bytes")

    def to_value(self) -> dict[str, canonical.Value]:
        return {
            "id": self.id,
            "version": self.version,
            "phase_code": self.phase_code,
            "param_digest": self.param_digest,
            "decl_digest": self.decl_digest,
        }

    @classmethod
    def from_value(cls, value: object) -> LoweringEntry:
        if not isinstance(value, Mapping):
            raise LoweringError("lowering entry must be a map")
        expected = {"id", "version", "phase_code", "param_digest", "decl_digest"}
        if set(value) != expected:
            raise LoweringError(
                f"lowering entry keys {sorted(value)} differ from {sorted(expected)}"
            )
        entry_id, version, phase = value["id"], value["version"], value["phase_code"]
        params, decl = value["param_digest"], value["decl_digest"]
        if not isinstance(entry_id, str) or not isinstance(version, int):
            raise LoweringError("lowering entry id/version have the wrong type")
        if not isinstance(phase, int) or isinstance(phase, bool):
            raise LoweringError(f"{entry_id}: phase_code must be an integer")
        if not isinstance(params, bytes) or not isinstance(decl, bytes):
            raise LoweringError(f"{entry_id}: digests must be byte strings")
        return cls(entry_id, version, phase, params, decl)


def param_digest(params: canonical.Value) -> bytes:
    """What an entry's ``param_digest`` must be for ``params`` (planner, launcher, replay)."""
    return digest_value(Purpose.PRIMITIVE_PARAMS, params)


def lowering_wire(entries: Iterable[LoweringEntry]) -> list[canonical.Value]:
    """The canonical value h_l is taken over."""
    return [entry.to_value() for entry in entries]


def lowering_digest(entries: Iterable[LoweringEntry]) -> bytes:
    """h_l: the ``bvisor.lowering.v1`` digest of the lowering wire."""
    return digest_value(Purpose.LOWERING, lowering_wire(entries))


def entries_from_wire(value: object) -> tuple[LoweringEntry, ...]:
    """Strictly parse a lowering wire value back into entries."""
    if not isinstance(value, Sequence) or isinstance(value, (str, bytes)):
        raise LoweringError("lowering wire must be an array")
    return tuple(LoweringEntry.from_value(item) for item in value)
