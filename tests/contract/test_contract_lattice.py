"""The enforcement lattice, minimum guarantees, budgets, evidence and outcomes."""

from __future__ import annotations

import itertools

import pytest

from bvisor.contract import (
    Budget,
    BudgetDimension,
    BudgetRequirements,
    ContractError,
    Enforcement,
    EvidenceClaim,
    EvidenceRequirements,
    MinGuarantee,
    Outcome,
    meet,
)

E, M, U = Enforcement.ENFORCED, Enforcement.MEDIATED, Enforcement.UNSUPPORTED

MEET_TABLE: dict[tuple[Enforcement, Enforcement], Enforcement] = {
    (E, E): E, (E, M): M, (E, U): U,
    (M, E): M, (M, M): M, (M, U): U,
    (U, E): U, (U, M): U, (U, U): U,
}  # fmt: skip


@pytest.mark.parametrize(("a", "b"), list(MEET_TABLE))
def test_meet_table(a: Enforcement, b: Enforcement) -> None:
    assert a.meet(b) is MEET_TABLE[(a, b)]
    assert Enforcement.meet(a, b) is MEET_TABLE[(a, b)]
    assert meet(a, b) is MEET_TABLE[(a, b)]


def test_meet_is_a_lattice_operation() -> None:
    for a, b, c in itertools.product(Enforcement, repeat=3):
        assert a.meet(b) is b.meet(a)
        assert a.meet(b).meet(c) is a.meet(b.meet(c))
        assert a.meet(a) is a
        assert a.meet(b) <= a and a.meet(b) <= b
    assert meet() is E


def test_ordering() -> None:
    assert E > M > U
    assert sorted([U, E, M]) == [U, M, E]
    assert E.at_least(M) and not U.at_least(M)
    assert E.join(U) is E
    assert E.title == "Enforced"


@pytest.mark.parametrize(
    ("level", "minimum", "ok"),
    [
        (E, MinGuarantee.ENFORCED, True),
        (E, MinGuarantee.MEDIATED, True),
        (M, MinGuarantee.ENFORCED, False),
        (M, MinGuarantee.MEDIATED, True),
        (U, MinGuarantee.MEDIATED, False),
        (U, MinGuarantee.ENFORCED, False),
    ],
)
def test_satisfies(level: Enforcement, minimum: MinGuarantee, ok: bool) -> None:
    assert level.satisfies(minimum) is ok


def test_uniform_requests_every_dimension() -> None:
    budgets = BudgetRequirements.uniform(8, MinGuarantee.MEDIATED)
    items = list(budgets.items())
    assert [d for d, _ in items] == list(BudgetDimension)
    assert all(b == Budget(8, MinGuarantee.MEDIATED, True) for _, b in items)


def test_deny_all_is_zero_and_enforced_everywhere() -> None:
    items = list(BudgetRequirements.deny_all().items())
    assert len(items) == 7
    assert all(b.limit == 0 and b.guarantee is MinGuarantee.ENFORCED for _, b in items)


def test_none_and_partial_budgets() -> None:
    assert list(BudgetRequirements.none().items()) == []
    assert BudgetRequirements.none().is_empty()
    partial = BudgetRequirements(
        process_count=Budget(4, MinGuarantee.ENFORCED),
        wall_micros=Budget(1, MinGuarantee.MEDIATED),
    )
    assert [d for d, _ in partial.items()] == [
        BudgetDimension.WALL_MICROS,
        BudgetDimension.PROCESS_COUNT,
    ]
    assert partial.get(BudgetDimension.CPU_MICROS) is None
    assert BudgetRequirements.from_value(partial.to_value()) == partial


@pytest.mark.parametrize("limit", [-1, 1 << 64, True])
def test_budget_limit_range(limit: int) -> None:
    with pytest.raises(ContractError) as info:
        Budget(limit, MinGuarantee.ENFORCED)
    assert info.value.path == "limit"


def test_dimension_names_match_fields() -> None:
    assert [d.value for d in BudgetDimension] == [
        "wall_micros", "cpu_micros", "resident_bytes", "process_count",
        "handle_count", "storage_bytes", "network_bytes",
    ]  # fmt: skip


def test_evidence_is_a_set_encoded_sorted() -> None:
    claims = [EvidenceClaim.PROCESS_TREE, EvidenceClaim.CAPTURED_STREAMS]
    one = EvidenceRequirements.of(claims)
    two = EvidenceRequirements.of(reversed(claims))
    assert one == two
    assert one.to_value() == {"required": ["captured_streams", "process_tree"]}
    assert len(EvidenceClaim) == 10
    with pytest.raises(ContractError):
        EvidenceRequirements.from_value({"required": ["process_tree", "captured_streams"]})


def test_outcomes() -> None:
    assert [o.value for o in Outcome] == [
        "completed", "denied", "failed", "timeout", "killed", "unsupported", "supervisor_fault",
    ]  # fmt: skip
    assert Outcome.from_value("timeout") is Outcome.TIMEOUT
    with pytest.raises(ContractError):
        Outcome.from_value("Timeout")
