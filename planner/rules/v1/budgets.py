"""Budget admission: each requested dimension, in the fixed order, first failure wins.

For an Enforced ask: the derived minimum (a limit no workload could live within is a
refusal now, not a run that dies later — a process needs itself, plus one child when
descendants are allowed; 4 MiB resident; 1 ms of wall clock) and the kernel's capacity
(``pids.max`` tops out at PID_MAX_LIMIT). Then the ceiling cell must meet the ask, and a
wanted witness needs ResourceUsage to be producible. A Mediated ask is witnessed, never
capped, even where the kernel could cap it: capping would change the run beyond what was
asked. Every failure is ``budget-refused`` naming ``budget:<dimension>``.
"""

from __future__ import annotations

from collections.abc import Mapping

from bvisor.contract.admission import BudgetDecision
from bvisor.contract.budgets import Budget, BudgetDimension
from bvisor.contract.capabilities import ChildSpawn, SpawnPolicy
from bvisor.contract.enforcement import Enforcement, MinGuarantee
from bvisor.contract.evidence import EvidenceClaim
from bvisor.contract.profile import ProfileSnapshot
from bvisor.contract.spec import BoundarySpec
from bvisor.planner.errors import PlanRefusal
from bvisor.planner.rules.v1.ceiling import budget_key, evidence_key, missing_fact_of, require_cell

__all__ = ["MIN_RESIDENT_BYTES", "MIN_WALL_MICROS", "PIDS_CAPACITY", "judge_budget"]

MIN_WALL_MICROS = 1000
MIN_RESIDENT_BYTES = 4 * 1024 * 1024
# pids.max accepts at most PID_MAX_LIMIT (4 Mi on 64-bit kernels).
PIDS_CAPACITY = 4 * 1024 * 1024
_I64_MAX = (1 << 63) - 1
_CAPACITY: Mapping[BudgetDimension, int] = {
    BudgetDimension.WALL_MICROS: _I64_MAX,
    BudgetDimension.CPU_MICROS: _I64_MAX,
    BudgetDimension.RESIDENT_BYTES: _I64_MAX,
    BudgetDimension.PROCESS_COUNT: PIDS_CAPACITY,
    BudgetDimension.HANDLE_COUNT: _I64_MAX,
    BudgetDimension.STORAGE_BYTES: _I64_MAX,
    BudgetDimension.NETWORK_BYTES: _I64_MAX,
}


def _derived_minimum(dimension: BudgetDimension, spec: BoundarySpec) -> int:
    if dimension is BudgetDimension.PROCESS_COUNT:
        descendants = any(
            isinstance(c, ChildSpawn) and c.policy is SpawnPolicy.ALLOW_DESCENDANTS_WITHIN_BOUNDARY
            for c in spec.capabilities
        )
        return 2 if descendants else 1
    if dimension is BudgetDimension.RESIDENT_BYTES:
        return MIN_RESIDENT_BYTES
    if dimension is BudgetDimension.WALL_MICROS:
        return MIN_WALL_MICROS
    return 0


def judge_budget(
    dimension: BudgetDimension, budget: Budget, spec: BoundarySpec, snapshot: ProfileSnapshot
) -> BudgetDecision:
    key = budget_key(dimension)
    cell = require_cell(snapshot, key, key)
    enforced = budget.guarantee is MinGuarantee.ENFORCED
    minimum = _derived_minimum(dimension, spec) if enforced else 0
    capacity = _CAPACITY[dimension] if enforced else None
    if budget.limit < minimum:
        raise PlanRefusal(
            "budget-refused",
            f"{dimension.value} limit {budget.limit} is below the derived minimum {minimum} "
            "for an Enforced budget",
            requirement=key,
        )
    if capacity is not None and budget.limit > capacity:
        raise PlanRefusal(
            "budget-refused",
            f"{dimension.value} limit {budget.limit} exceeds what the kernel accepts ({capacity})",
            requirement=key,
        )
    if not cell.enforcement.satisfies(budget.guarantee):
        raise PlanRefusal(
            "budget-refused",
            f"{dimension.value} asks {budget.guarantee.value} but this backend reaches "
            f"{cell.enforcement.title}: {cell.reason}",
            requirement=key,
            missing_fact=missing_fact_of(cell),
        )
    if budget.evidence:
        usage = require_cell(snapshot, evidence_key(EvidenceClaim.RESOURCE_USAGE), key)
        if usage.enforcement is Enforcement.UNSUPPORTED:
            raise PlanRefusal(
                "budget-refused",
                f"{dimension.value} wants a witness but resource usage cannot be reported: "
                f"{usage.reason}",
                requirement=key,
                missing_fact=missing_fact_of(usage),
            )
    granted = budget.guarantee.enforcement
    if granted is Enforcement.ENFORCED or cell.enforcement is Enforcement.MEDIATED:
        mechanism = cell.mechanism
    else:
        mechanism = "linux:witness:Mediated"
    return BudgetDecision(
        dimension=dimension.value,
        limit=budget.limit,
        asked=budget.guarantee,
        minimum=minimum,
        capacity=capacity,
        cell=cell,
        granted=granted,
        mechanism=mechanism,
        evidence=budget.evidence,
    )
