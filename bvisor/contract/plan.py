"""The boundary plan: an admitted spec, what it was admitted against, and its schedule.

A plan binds four digests: h_p (the profile snapshot), h_a (the admission record), h_l
(the lowering wire) and plan_id over ``{schema_version, backend, spec, h_p, h_a, h_l,
admitted, budgets, evidence}`` (DESIGN.md §3). The definitions live here, in the pure
contract, so the planner that makes plans and the replayer that re-checks them share one
definition. :meth:`BoundaryPlan.from_value` re-derives all four and refuses a plan whose
recorded digests disagree with its contents.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bvisor import canonical
from bvisor.contract._wire import expect_array, expect_bytes, expect_int, expect_map, expect_text
from bvisor.contract.admission import AdmissionRecord, admission_digest
from bvisor.contract.errors import ContractError
from bvisor.contract.lowering import LoweringEntry, LoweringError, lowering_digest, param_digest
from bvisor.contract.profile import ProfileSnapshot, profile_digest
from bvisor.contract.spec import BoundarySpec
from bvisor.digest import DIGEST_SIZE, Purpose, digest_value

__all__ = [
    "PLAN_SCHEMA_VERSION",
    "BoundaryPlan",
    "PlannedPrimitive",
    "plan_identity",
    "plan_identity_value",
]

PLAN_SCHEMA_VERSION = 1


@dataclass(frozen=True, slots=True)
class PlannedPrimitive:
    """One schedule entry together with the parameters its ``param_digest`` covers."""

    entry: LoweringEntry
    params: canonical.Value

    def __post_init__(self) -> None:
        if not isinstance(self.entry, LoweringEntry):
            raise ContractError("entry", "expected a LoweringEntry")
        try:
            normal = canonical.decode(canonical.encode(self.params))
        except canonical.CanonicalError as exc:
            raise ContractError(f"{self.entry.id}.params", str(exc), "not-canonical") from None
        if param_digest(normal) != self.entry.param_digest:
            raise ContractError(
                f"{self.entry.id}.params", "param_digest does not match the parameters"
            )
        object.__setattr__(self, "params", normal)

    def to_value(self) -> dict[str, canonical.Value]:
        return {"entry": self.entry.to_value(), "params": self.params}

    @classmethod
    def from_value(cls, value: object, path: str = "primitive") -> PlannedPrimitive:
        body = expect_map(value, path, required=("entry", "params"))
        try:
            entry = LoweringEntry.from_value(body["entry"])
        except LoweringError as exc:
            raise ContractError(f"{path}.entry", str(exc)) from None
        try:
            return cls(entry, body["params"])  # type: ignore[arg-type]
        except ContractError as exc:
            raise ContractError(path, str(exc), exc.code) from None


def plan_identity_value(
    schema_version: int,
    backend: str,
    spec: BoundarySpec,
    h_p: bytes,
    h_a: bytes,
    h_l: bytes,
    admission: AdmissionRecord,
) -> dict[str, canonical.Value]:
    """The canonical value plan_id is the digest of."""
    return {
        "schema_version": schema_version,
        "backend": backend,
        "spec": spec.to_value(),
        "h_p": h_p,
        "h_a": h_a,
        "h_l": h_l,
        "admitted": admission.admitted_value(),
        "budgets": admission.budgets_value(),
        "evidence": admission.evidence_value(),
    }


def plan_identity(
    schema_version: int,
    backend: str,
    spec: BoundarySpec,
    h_p: bytes,
    h_a: bytes,
    h_l: bytes,
    admission: AdmissionRecord,
) -> bytes:
    """plan_id: the ``bvisor.plan.v1`` digest of :func:`plan_identity_value`."""
    value = plan_identity_value(schema_version, backend, spec, h_p, h_a, h_l, admission)
    return digest_value(Purpose.PLAN, value)


@dataclass(frozen=True, slots=True)
class BoundaryPlan:
    """An admitted spec with its profile, admission record, schedule and digests.

    Build one with ``bvisor.planner.identity.build_plan`` (or ``bvisor.planner.planning``), which
    computes the digests; the constructor checks they are consistent.
    """

    schema_version: int
    backend: str
    spec: BoundarySpec
    profile: ProfileSnapshot
    admission: AdmissionRecord
    lowering: tuple[PlannedPrimitive, ...]
    h_p: bytes
    h_a: bytes
    h_l: bytes
    plan_id: bytes

    def __post_init__(self) -> None:
        expect_int(self.schema_version, "schema_version", minimum=1)
        expect_text(self.backend, "backend", nonempty=True)
        if not isinstance(self.lowering, tuple) or not all(
            isinstance(p, PlannedPrimitive) for p in self.lowering
        ):
            raise ContractError("lowering", "expected a tuple of PlannedPrimitive")
        if self.profile.backend != self.backend or self.admission.backend != self.backend:
            raise ContractError("backend", "profile, admission and plan name different backends")
        for name in ("h_p", "h_a", "h_l", "plan_id"):
            expect_bytes(getattr(self, name), name, size=DIGEST_SIZE)
        checks = (
            ("h_p", profile_digest(self.profile)),
            ("h_a", admission_digest(self.admission)),
            ("h_l", lowering_digest(self.entries)),
        )
        for name, expected in checks:
            if getattr(self, name) != expected:
                raise ContractError(name, f"{name} does not match the plan's contents")
        expected_id = plan_identity(
            self.schema_version,
            self.backend,
            self.spec,
            self.h_p,
            self.h_a,
            self.h_l,
            self.admission,
        )
        if self.plan_id != expected_id:
            raise ContractError("plan_id", "plan_id does not match the plan's contents")

    @property
    def entries(self) -> tuple[LoweringEntry, ...]:
        """The lowering wire entries, in schedule order."""
        return tuple(p.entry for p in self.lowering)

    def has_entry(self, entry_id: str) -> bool:
        return any(p.entry.id == entry_id for p in self.lowering)

    def params_of(self, entry_id: str) -> canonical.Value:
        """The parameters of the scheduled entry ``entry_id``; KeyError if not scheduled."""
        for p in self.lowering:
            if p.entry.id == entry_id:
                return p.params
        raise KeyError(entry_id)

    def to_value(self) -> dict[str, canonical.Value]:
        return {
            "schema_version": self.schema_version,
            "backend": self.backend,
            "spec": self.spec.to_value(),
            "profile": self.profile.to_value(),
            "admission": self.admission.to_value(),
            "lowering": [p.to_value() for p in self.lowering],
            "h_p": self.h_p,
            "h_a": self.h_a,
            "h_l": self.h_l,
            "plan_id": self.plan_id,
        }

    @classmethod
    def from_value(cls, value: object, path: str = "plan") -> BoundaryPlan:
        keys = (
            "schema_version",
            "backend",
            "spec",
            "profile",
            "admission",
            "lowering",
            "h_p",
            "h_a",
            "h_l",
            "plan_id",
        )
        body = expect_map(value, path, required=keys)
        items: Sequence[object] = expect_array(body["lowering"], f"{path}.lowering")
        try:
            return cls(
                schema_version=expect_int(body["schema_version"], f"{path}.schema_version"),
                backend=expect_text(body["backend"], f"{path}.backend", nonempty=True),
                spec=BoundarySpec.from_value(body["spec"], f"{path}.spec"),
                profile=ProfileSnapshot.from_value(body["profile"], f"{path}.profile"),
                admission=AdmissionRecord.from_value(body["admission"], f"{path}.admission"),
                lowering=tuple(
                    PlannedPrimitive.from_value(v, f"{path}.lowering[{i}]")
                    for i, v in enumerate(items)
                ),
                h_p=expect_bytes(body["h_p"], f"{path}.h_p", size=DIGEST_SIZE),
                h_a=expect_bytes(body["h_a"], f"{path}.h_a", size=DIGEST_SIZE),
                h_l=expect_bytes(body["h_l"], f"{path}.h_l", size=DIGEST_SIZE),
                plan_id=expect_bytes(body["plan_id"], f"{path}.plan_id", size=DIGEST_SIZE),
            )
        except ContractError as exc:
            if exc.path.startswith(path):
                raise
            raise exc.under(path) from None
