"""Resource budgets: seven dimensions, each an optional ``{limit, guarantee, evidence}``.

A dimension left as ``None`` is not requested. A requested dimension states its limit
(in the unit its name ends with: microseconds, bytes or a count), the weakest guarantee
the caller accepts (``Mediated``: observed and reported; ``Enforced``: the kernel caps
it), and whether the report must carry a witness for it. The canonical form is a map
holding only the requested dimensions, keyed by dimension name.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, fields
from enum import Enum

from bvisor import canonical
from bvisor.contract._wire import U64_MAX, expect_bool, expect_enum, expect_int, expect_map
from bvisor.contract.enforcement import MinGuarantee
from bvisor.contract.errors import ContractError

__all__ = ["Budget", "BudgetDimension", "BudgetRequirements", "MinGuarantee"]


class BudgetDimension(Enum):
    """The seven budget dimensions, in their fixed canonical order."""

    WALL_MICROS = "wall_micros"
    CPU_MICROS = "cpu_micros"
    RESIDENT_BYTES = "resident_bytes"
    PROCESS_COUNT = "process_count"
    HANDLE_COUNT = "handle_count"
    STORAGE_BYTES = "storage_bytes"
    NETWORK_BYTES = "network_bytes"

    def to_value(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class Budget:
    """One requested dimension: a limit, the weakest acceptable guarantee, witness wanted."""

    limit: int
    guarantee: MinGuarantee
    evidence: bool = True

    def __post_init__(self) -> None:
        expect_int(self.limit, "limit", minimum=0, maximum=U64_MAX)
        if not isinstance(self.guarantee, MinGuarantee):
            raise ContractError("guarantee", f"{self.guarantee!r} is not a MinGuarantee")
        expect_bool(self.evidence, "evidence")

    def to_value(self) -> dict[str, canonical.Value]:
        return {"limit": self.limit, "guarantee": self.guarantee.value, "evidence": self.evidence}

    @classmethod
    def from_value(cls, value: object, path: str = "budget") -> Budget:
        body = expect_map(value, path, required=("limit", "guarantee", "evidence"))
        return cls(
            expect_int(body["limit"], f"{path}.limit", minimum=0, maximum=U64_MAX),
            expect_enum(MinGuarantee, body["guarantee"], f"{path}.guarantee"),
            expect_bool(body["evidence"], f"{path}.evidence"),
        )


@dataclass(frozen=True, slots=True)
class BudgetRequirements:
    """The budgets a spec requests; each field is named after its BudgetDimension value."""

    wall_micros: Budget | None = None
    cpu_micros: Budget | None = None
    resident_bytes: Budget | None = None
    process_count: Budget | None = None
    handle_count: Budget | None = None
    storage_bytes: Budget | None = None
    network_bytes: Budget | None = None

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None and not isinstance(value, Budget):
                raise ContractError(f.name, f"expected a Budget or None, got {value!r}")

    def get(self, dimension: BudgetDimension) -> Budget | None:
        budget: Budget | None = getattr(self, dimension.value)
        return budget

    def items(self) -> Iterator[tuple[BudgetDimension, Budget]]:
        """The requested dimensions with their budgets, in BudgetDimension order."""
        for dimension in BudgetDimension:
            budget = self.get(dimension)
            if budget is not None:
                yield dimension, budget

    def is_empty(self) -> bool:
        return next(self.items(), None) is None

    @classmethod
    def from_items(cls, items: dict[BudgetDimension, Budget]) -> BudgetRequirements:
        return cls(**{dimension.value: budget for dimension, budget in items.items()})

    @classmethod
    def uniform(
        cls, limit: int, guarantee: MinGuarantee, evidence: bool = True
    ) -> BudgetRequirements:
        """Every dimension requested with the same limit and guarantee."""
        budget = Budget(limit, guarantee, evidence)
        return cls.from_items({dimension: budget for dimension in BudgetDimension})

    @classmethod
    def deny_all(cls) -> BudgetRequirements:
        """Every dimension limited to zero, Enforced: nothing may be consumed."""
        return cls.uniform(0, MinGuarantee.ENFORCED)

    @classmethod
    def none(cls) -> BudgetRequirements:
        """No dimension requested."""
        return cls()

    def to_value(self) -> dict[str, canonical.Value]:
        return {dimension.value: budget.to_value() for dimension, budget in self.items()}

    @classmethod
    def from_value(cls, value: object, path: str = "budgets") -> BudgetRequirements:
        names = [dimension.value for dimension in BudgetDimension]
        body = expect_map(value, path, optional=names)
        return cls.from_items(
            {
                dimension: Budget.from_value(body[dimension.value], f"{path}.{dimension.value}")
                for dimension in BudgetDimension
                if dimension.value in body
            }
        )
