"""The admission record: every decision admission took, in canonical form (h_a).

Admission is a pure function of (spec, profile snapshot), so the record is not a log of
something that happened once: it is a value the replayer recomputes and compares, and h_a
(``bvisor.admission.v1``) is its digest. Each decision therefore carries its *inputs*
(canonical policy, family best case, the ceiling cell it met) next to its *outputs*
(verdict, mechanism), so a changed input always changes h_a.

Only admitted plans have a record; a refusal is a ``bvisor.planner.errors.PlanRefusal``.
"""

from __future__ import annotations

from dataclasses import dataclass

from bvisor import canonical
from bvisor.contract._wire import (
    expect_array,
    expect_bool,
    expect_enum,
    expect_int,
    expect_map,
    expect_text,
)
from bvisor.contract.enforcement import Enforcement, MinGuarantee
from bvisor.contract.errors import ContractError
from bvisor.contract.profile import CeilingCell
from bvisor.digest import Purpose, digest_value

__all__ = [
    "AdmissionRecord",
    "BudgetDecision",
    "EvidenceDecision",
    "RequirementDecision",
    "admission_digest",
]


def _texts(value: object, path: str) -> tuple[str, ...]:
    return tuple(expect_text(v, f"{path}[{i}]") for i, v in enumerate(expect_array(value, path)))


@dataclass(frozen=True, slots=True)
class RequirementDecision:
    """One requirement: its key and canonical policy, what it met, and the verdict.

    ``required`` is the weakest verdict the requirement accepts (capabilities need
    Enforced; a best-effort kill accepts Mediated). ``support`` lists the ceiling keys
    the support membrane demanded for it.
    """

    key: str
    policy: canonical.Value
    family_best: Enforcement
    required: Enforcement
    cell: CeilingCell
    verdict: Enforcement
    mechanism: str
    support: tuple[str, ...] = ()

    def to_value(self) -> dict[str, canonical.Value]:
        return {
            "key": self.key,
            "policy": self.policy,
            "family_best": self.family_best.value,
            "required": self.required.value,
            "cell": self.cell.to_value(),
            "verdict": self.verdict.value,
            "mechanism": self.mechanism,
            "support": list(self.support),
        }

    @classmethod
    def from_value(cls, value: object, path: str = "requirement") -> RequirementDecision:
        keys = ("key", "policy", "family_best", "required", "cell", "verdict", "mechanism")
        body = expect_map(value, path, required=(*keys, "support"))
        try:
            canonical.check_value(body["policy"], f"{path}.policy")
        except canonical.CanonicalError as exc:
            raise ContractError(f"{path}.policy", str(exc), "not-canonical") from None
        return cls(
            key=expect_text(body["key"], f"{path}.key", nonempty=True),
            policy=body["policy"],  # type: ignore[arg-type]
            family_best=expect_enum(Enforcement, body["family_best"], f"{path}.family_best"),
            required=expect_enum(Enforcement, body["required"], f"{path}.required"),
            cell=CeilingCell.from_value(body["cell"], f"{path}.cell"),
            verdict=expect_enum(Enforcement, body["verdict"], f"{path}.verdict"),
            mechanism=expect_text(body["mechanism"], f"{path}.mechanism", nonempty=True),
            support=_texts(body["support"], f"{path}.support"),
        )


@dataclass(frozen=True, slots=True)
class EvidenceDecision:
    """One required evidence claim: the cell that produces it and what it also needs."""

    claim: str
    cell: CeilingCell
    needs: tuple[str, ...]
    verdict: Enforcement

    def to_value(self) -> dict[str, canonical.Value]:
        return {
            "claim": self.claim,
            "cell": self.cell.to_value(),
            "needs": list(self.needs),
            "verdict": self.verdict.value,
        }

    @classmethod
    def from_value(cls, value: object, path: str = "evidence") -> EvidenceDecision:
        body = expect_map(value, path, required=("claim", "cell", "needs", "verdict"))
        return cls(
            claim=expect_text(body["claim"], f"{path}.claim", nonempty=True),
            cell=CeilingCell.from_value(body["cell"], f"{path}.cell"),
            needs=_texts(body["needs"], f"{path}.needs"),
            verdict=expect_enum(Enforcement, body["verdict"], f"{path}.verdict"),
        )


@dataclass(frozen=True, slots=True)
class BudgetDecision:
    """One requested budget dimension and how it is held.

    ``granted`` is the asked guarantee (a Mediated ask is witnessed, never capped, even
    where the ceiling could cap it: capping would change the run's behaviour beyond what
    was asked). ``minimum``/``capacity`` are the bounds checked (0 / None when the ask is
    Mediated, since nothing is capped).
    """

    dimension: str
    limit: int
    asked: MinGuarantee
    minimum: int
    capacity: int | None
    cell: CeilingCell
    granted: Enforcement
    mechanism: str
    evidence: bool

    def to_value(self) -> dict[str, canonical.Value]:
        return {
            "dimension": self.dimension,
            "limit": self.limit,
            "asked": self.asked.value,
            "minimum": self.minimum,
            "capacity": self.capacity,
            "cell": self.cell.to_value(),
            "granted": self.granted.value,
            "mechanism": self.mechanism,
            "evidence": self.evidence,
        }

    @classmethod
    def from_value(cls, value: object, path: str = "budget") -> BudgetDecision:
        keys = ("dimension", "limit", "asked", "minimum", "capacity", "cell", "granted")
        body = expect_map(value, path, required=(*keys, "mechanism", "evidence"))
        capacity = body["capacity"]
        return cls(
            dimension=expect_text(body["dimension"], f"{path}.dimension", nonempty=True),
            limit=expect_int(body["limit"], f"{path}.limit", minimum=0),
            asked=expect_enum(MinGuarantee, body["asked"], f"{path}.asked"),
            minimum=expect_int(body["minimum"], f"{path}.minimum", minimum=0),
            capacity=None if capacity is None else expect_int(capacity, f"{path}.capacity"),
            cell=CeilingCell.from_value(body["cell"], f"{path}.cell"),
            granted=expect_enum(Enforcement, body["granted"], f"{path}.granted"),
            mechanism=expect_text(body["mechanism"], f"{path}.mechanism", nonempty=True),
            evidence=expect_bool(body["evidence"], f"{path}.evidence"),
        )


@dataclass(frozen=True, slots=True)
class AdmissionRecord:
    """Everything admission decided for one (spec, profile) pair.

    ``rules_version`` names the planner rules that made the plan (``bvisor.planner.rules``);
    replay re-derives the run with that same version.
    """

    rules_version: int
    backend: str
    workload: str
    requirements: tuple[RequirementDecision, ...]
    evidence: tuple[EvidenceDecision, ...]
    budgets: tuple[BudgetDecision, ...]

    def __post_init__(self) -> None:
        expect_int(self.rules_version, "rules_version", minimum=1)
        expect_text(self.backend, "backend", nonempty=True)
        expect_text(self.workload, "workload", nonempty=True)
        for name, cls in (
            ("requirements", RequirementDecision),
            ("evidence", EvidenceDecision),
            ("budgets", BudgetDecision),
        ):
            items = getattr(self, name)
            if not isinstance(items, tuple) or not all(isinstance(i, cls) for i in items):
                raise ContractError(name, f"expected a tuple of {cls.__name__}")

    def to_value(self) -> dict[str, canonical.Value]:
        return {
            "rules_version": self.rules_version,
            "backend": self.backend,
            "workload": self.workload,
            "requirements": [r.to_value() for r in self.requirements],
            "evidence": [e.to_value() for e in self.evidence],
            "budgets": [b.to_value() for b in self.budgets],
        }

    @classmethod
    def from_value(cls, value: object, path: str = "admission") -> AdmissionRecord:
        keys = ("rules_version", "backend", "workload", "requirements", "evidence", "budgets")
        body = expect_map(value, path, required=keys)
        reqs = expect_array(body["requirements"], f"{path}.requirements")
        evid = expect_array(body["evidence"], f"{path}.evidence")
        buds = expect_array(body["budgets"], f"{path}.budgets")
        return cls(
            rules_version=expect_int(body["rules_version"], f"{path}.rules_version", minimum=1),
            backend=expect_text(body["backend"], f"{path}.backend", nonempty=True),
            workload=expect_text(body["workload"], f"{path}.workload", nonempty=True),
            requirements=tuple(
                RequirementDecision.from_value(v, f"{path}.requirements[{i}]")
                for i, v in enumerate(reqs)
            ),
            evidence=tuple(
                EvidenceDecision.from_value(v, f"{path}.evidence[{i}]") for i, v in enumerate(evid)
            ),
            budgets=tuple(
                BudgetDecision.from_value(v, f"{path}.budgets[{i}]") for i, v in enumerate(buds)
            ),
        )

    def digest(self) -> bytes:
        """h_a."""
        return admission_digest(self)

    # -- the summaries plan_id binds (DESIGN.md §3: admitted, budgets, evidence) --------

    def admitted_value(self) -> list[canonical.Value]:
        """Each admitted requirement with its verdict and mechanism."""
        return [
            {
                "key": r.key,
                "policy": r.policy,
                "enforcement": r.verdict.value,
                "mechanism": r.mechanism,
            }
            for r in self.requirements
        ]

    def budgets_value(self) -> list[canonical.Value]:
        return [
            {
                "dimension": b.dimension,
                "limit": b.limit,
                "granted": b.granted.value,
                "mechanism": b.mechanism,
            }
            for b in self.budgets
        ]

    def evidence_value(self) -> list[canonical.Value]:
        return [{"claim": e.claim, "mechanism": e.cell.mechanism} for e in self.evidence]


def admission_digest(record: AdmissionRecord) -> bytes:
    """h_a: the ``bvisor.admission.v1`` digest of the record's canonical value."""
    return digest_value(Purpose.ADMISSION, record.to_value())
