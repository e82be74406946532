"""Admission: every refusal path, by planning against a snapshot lacking the feature."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from bvisor import canonical
from bvisor.contract import (
    Budget,
    BudgetRequirements,
    ChildSpawn,
    EvidenceClaim,
    EvidenceRequirements,
    FdsOnly,
    Filesystem,
    FsAccess,
    InheritedFds,
    Kill,
    KillGuarantee,
    KillTarget,
    LaunchWorkload,
    MinGuarantee,
    Network,
    NetworkAllowList,
    NetworkDenyAll,
    SpawnPolicy,
    TempRoot,
    WasmWorkload,
)
from bvisor.contract.admission import AdmissionRecord, admission_digest
from bvisor.contract.enforcement import Enforcement
from bvisor.contract.profile import ProfileSnapshot
from bvisor.planner.errors import PlanRefusal
from bvisor.planner.rules.v1.admission import admit
from tests.features import require_feature
from tests.planner.helpers import FIXED_FACTS, plan_v1, seed_spec, snapshot_of, without


def refusal(spec: Any, snapshot: ProfileSnapshot) -> PlanRefusal:
    with pytest.raises(PlanRefusal) as info:
        plan_v1(spec, snapshot)
    return info.value


def caps(*extra: Any) -> tuple[Any, ...]:
    return (*seed_spec().capabilities, *extra)


def test_seed_uniform_mediated_budgets_admit(live_snapshot: ProfileSnapshot) -> None:
    for policy in (SpawnPolicy.DENY_NEW_TASKS, SpawnPolicy.ALLOW_DESCENDANTS_WITHIN_BOUNDARY):
        record = admit(seed_spec(policy), snapshot_of(FIXED_FACTS))
        assert [b.dimension for b in record.budgets] == [
            "wall_micros",
            "cpu_micros",
            "resident_bytes",
            "process_count",
            "handle_count",
            "storage_bytes",
            "network_bytes",
        ]
        assert all(b.granted is Enforcement.MEDIATED and b.limit == 8 for b in record.budgets)
    require_feature("seccomp")
    plan = plan_v1(seed_spec(), live_snapshot)
    assert not plan.has_entry("linux.budget.pids.v1")  # witnessed, not capped


def test_seed_deny_new_tasks_admits_with_seccomp() -> None:
    record = admit(seed_spec(), snapshot_of(FIXED_FACTS))
    decision = next(r for r in record.requirements if r.key == "child_spawn_deny_new_tasks")
    assert decision.verdict is Enforcement.ENFORCED
    assert decision.mechanism == "linux:seccomp_deny_tasks:Enforced"


@pytest.mark.parametrize(
    ("spec", "changes", "requirement", "fact"),
    [
        (
            seed_spec(capabilities=caps(Filesystem(FsAccess.READ, ("/srv",)))),
            {"landlock_abi": 0},
            "filesystem",
            "landlock_abi",
        ),
        (
            seed_spec(),
            {"seccomp_filter": False, "seccomp_actions": ()},
            "child_spawn_deny_new_tasks",
            "seccomp_filter",
        ),
        (
            seed_spec(capabilities=caps(Network(NetworkDenyAll()))),
            {"userns": False},
            "network_deny_all",
            "userns",
        ),
        (
            seed_spec(capabilities=caps(Network(NetworkDenyAll()))),
            {"netns": False},
            "network_deny_all",
            "netns",
        ),
        (
            seed_spec(SpawnPolicy.ALLOW_DESCENDANTS_WITHIN_BOUNDARY),
            {"cgroup_v2_base": None},
            "child_spawn_allow_descendants",
            "cgroup_v2_base",
        ),
        (
            seed_spec(controls=(LaunchWorkload(), Kill(KillTarget.RUN_TREE, KillGuarantee.ATOMIC))),
            {"cgroup_v2_kill": False},
            "kill:atomic",
            "cgroup_v2_kill",
        ),
    ],
)
def test_missing_feature_refuses_unsupported_naming_the_fact(
    spec: Any, changes: dict[str, Any], requirement: str, fact: str
) -> None:
    plan_v1(spec, snapshot_of(FIXED_FACTS))  # admitted with the feature ...
    err = refusal(spec, without(FIXED_FACTS, **changes))  # ... refused without it
    assert (err.code, err.requirement, err.missing_fact) == ("unsupported", requirement, fact)
    assert fact in err.detail


def test_allow_threads_and_allow_list_are_refused_unsupported(
    live_snapshot: ProfileSnapshot,
) -> None:
    err = refusal(seed_spec(SpawnPolicy.ALLOW_THREADS_WITHIN_BOUNDARY), live_snapshot)
    assert (err.code, err.requirement) == ("unsupported", "child_spawn_allow_threads")
    assert "clone3" in err.detail
    spec = seed_spec(capabilities=caps(Network(NetworkAllowList(("example.org:443",)))))
    err = refusal(spec, live_snapshot)
    assert (err.code, err.requirement) == ("unsupported", "network_allow_list")


def test_unimplemented_controls_are_refused(live_snapshot: ProfileSnapshot) -> None:
    spec = seed_spec(controls=(LaunchWorkload(), TempRoot()))
    err = refusal(spec, live_snapshot)
    assert (err.code, err.requirement) == ("unsupported", "temp_root")
    assert "not implemented" in err.detail


def test_wasm_workload_is_refused(live_snapshot: ProfileSnapshot) -> None:
    err = refusal(seed_spec(workload=WasmWorkload("mod.wasm")), live_snapshot)
    assert (err.code, err.requirement) == ("unsupported", "workload")


def test_non_recursive_filesystem_is_refused() -> None:
    spec = seed_spec(capabilities=caps(Filesystem(FsAccess.READ, ("/srv",), recursive=False)))
    err = refusal(spec, snapshot_of(FIXED_FACTS))
    assert (err.code, err.requirement) == ("unsupported", "filesystem")


def test_allow_descendants_needs_atomic_kill_support() -> None:
    # A hand-made ceiling where descendants are Enforced but the atomic kill is not: the
    # support membrane must still refuse (descendants are only contained if killable).
    snap = snapshot_of(FIXED_FACTS)
    ceiling = tuple(
        dataclasses.replace(c, enforcement=Enforcement.UNSUPPORTED, mechanism="linux:x:Unsupported")
        if c.key == "kill:atomic"
        else c
        for c in snap.ceiling
    )
    from bvisor.contract import requirements_of
    from bvisor.planner.rules.v1.admission import (
        _judge_requirement,  # the membrane, below check_profile
    )

    req = next(
        r
        for r in requirements_of(seed_spec(SpawnPolicy.ALLOW_DESCENDANTS_WITHIN_BOUNDARY))
        if r.kind.value == "child_spawn_allow_descendants"
    )
    with pytest.raises(PlanRefusal) as info:
        _judge_requirement(req, ProfileSnapshot("linux", snap.facts, ceiling))
    assert (info.value.code, info.value.requirement) == (
        "support-missing",
        "child_spawn_allow_descendants",
    )


@pytest.mark.parametrize(
    ("claims", "spec_changes", "requirement"),
    [
        ({EvidenceClaim.DENIED_ATTEMPTS}, {}, "evidence:denied_attempts"),
        ({EvidenceClaim.NETWORK_ACTIVITY}, {}, "evidence:network_activity"),
        (
            {EvidenceClaim.CAPTURED_STREAMS},
            {"controls": (LaunchWorkload(),)},
            "evidence:captured_streams",
        ),
    ],
)
def test_evidence_unsatisfiable(
    claims: set[EvidenceClaim], spec_changes: dict[str, Any], requirement: str
) -> None:
    spec = seed_spec(evidence=EvidenceRequirements.of(claims), **spec_changes)
    err = refusal(spec, snapshot_of(FIXED_FACTS))
    assert (err.code, err.requirement) == ("evidence-unsatisfiable", requirement)


def test_process_tree_evidence_needs_a_cgroup() -> None:
    spec = seed_spec(evidence=EvidenceRequirements.of({EvidenceClaim.PROCESS_TREE}))
    plan = plan_v1(spec, snapshot_of(FIXED_FACTS))
    assert plan.has_entry("linux.cgroup.leaf.v1")
    err = refusal(spec, without(FIXED_FACTS, cgroup_v2_base=None))
    assert (err.code, err.missing_fact) == ("evidence-unsatisfiable", "cgroup_v2_base")


def enforced(limit: int) -> Budget:
    return Budget(limit, MinGuarantee.ENFORCED)


@pytest.mark.parametrize(
    ("policy", "budgets", "requirement"),
    [
        (SpawnPolicy.DENY_NEW_TASKS, {"process_count": enforced(0)}, "budget:process_count"),
        (
            SpawnPolicy.ALLOW_DESCENDANTS_WITHIN_BOUNDARY,
            {"process_count": enforced(1)},
            "budget:process_count",
        ),
        (
            SpawnPolicy.DENY_NEW_TASKS,
            {"resident_bytes": enforced(4 * 1024 * 1024 - 1)},
            "budget:resident_bytes",
        ),
        (SpawnPolicy.DENY_NEW_TASKS, {"wall_micros": enforced(999)}, "budget:wall_micros"),
        (SpawnPolicy.DENY_NEW_TASKS, {"process_count": enforced(1 << 40)}, "budget:process_count"),
        (SpawnPolicy.DENY_NEW_TASKS, {"cpu_micros": enforced(10**6)}, "budget:cpu_micros"),
        (SpawnPolicy.DENY_NEW_TASKS, {"network_bytes": enforced(10**6)}, "budget:network_bytes"),
    ],
)
def test_enforced_budgets_refused(
    policy: SpawnPolicy, budgets: dict[str, Budget], requirement: str
) -> None:
    spec = seed_spec(policy, budgets=BudgetRequirements(**budgets))
    err = refusal(spec, snapshot_of(FIXED_FACTS))
    assert (err.code, err.requirement) == ("budget-refused", requirement)


def test_budget_first_failure_wins_in_dimension_order() -> None:
    spec = seed_spec(budgets=BudgetRequirements.deny_all())
    err = refusal(spec, snapshot_of(FIXED_FACTS))
    assert err.requirement == "budget:wall_micros"


def test_enforced_budget_minimums_admit_and_lower() -> None:
    budgets = BudgetRequirements(
        wall_micros=enforced(1000),
        resident_bytes=enforced(4 * 1024 * 1024),
        process_count=enforced(2),
    )
    spec = seed_spec(SpawnPolicy.ALLOW_DESCENDANTS_WITHIN_BOUNDARY, budgets=budgets)
    plan = plan_v1(spec, snapshot_of(FIXED_FACTS))
    assert plan.params_of("linux.budget.pids.v1") == {"limit": 2, "hierarchy": "v1"}
    assert plan.params_of("linux.budget.memory.v1") == {
        "limit_bytes": 4 * 1024 * 1024,
        "hierarchy": "v1",
    }
    assert plan.params_of("linux.budget.wall.v1") == {"limit_micros": 1000}
    assert plan.params_of("linux.cgroup.leaf.v1") == {
        "v2_base": "/sys/fs/cgroup/unified",
        "v1_bases": {"memory": "/sys/fs/cgroup/memory/job", "pids": "/sys/fs/cgroup/pids"},
    }


def test_enforced_budget_refused_without_controller() -> None:
    spec = seed_spec(budgets=BudgetRequirements(process_count=enforced(4)))
    err = refusal(spec, without(FIXED_FACTS, cgroup_v1_bases=()))
    assert (err.code, err.requirement, err.missing_fact) == (
        "budget-refused",
        "budget:process_count",
        "cgroup_v1_bases",
    )
    err = refusal(
        seed_spec(budgets=BudgetRequirements(wall_micros=enforced(10**6))),
        without(FIXED_FACTS, cgroup_v2_kill=False),
    )
    assert (err.code, err.missing_fact) == ("budget-refused", "cgroup_v2_kill")


def test_unknown_backend_and_inconsistent_profiles() -> None:
    snap = snapshot_of(FIXED_FACTS)
    err = refusal(seed_spec(), ProfileSnapshot("wasm", snap.facts, snap.ceiling))
    assert err.code == "unknown-backend"
    missing = ProfileSnapshot("linux", snap.facts, snap.ceiling[1:])
    err = refusal(seed_spec(), missing)
    assert (err.code, err.missing_fact) == ("profile-insufficient", "filesystem")
    # A ceiling claiming Landlock on facts that have none is not trusted.
    lying = ProfileSnapshot("linux", dataclasses.replace(FIXED_FACTS, landlock_abi=0), snap.ceiling)
    err = refusal(seed_spec(), lying)
    assert (err.code, err.requirement) == ("profile-insufficient", "filesystem")
    assert "enforcement: recorded" in err.detail, err.detail
    # Prose is for people: a cell recorded under other wording is still the same cell (the
    # rules-versioning issue: rewording a reason must not fail any recorded run) ...
    reworded = tuple(
        dataclasses.replace(cell, reason="older wording") if index == 0 else cell
        for index, cell in enumerate(snap.ceiling)
    )
    plan_v1(seed_spec(), ProfileSnapshot("linux", snap.facts, reworded))
    # ... but the missing host fact a reason names is a structured fact, and is compared.
    no_landlock = dataclasses.replace(FIXED_FACTS, landlock_abi=0)
    moved = tuple(
        dataclasses.replace(cell, reason="gone (missing fact: userns)")
        if cell.key == "filesystem"
        else cell
        for cell in snapshot_of(no_landlock).ceiling
    )
    err = refusal(seed_spec(), ProfileSnapshot("linux", no_landlock, moved))
    assert "missing fact: recorded 'userns', these rules give 'landlock_abi'" in err.detail


def test_admission_is_deterministic_and_round_trips() -> None:
    spec, snap = seed_spec(), snapshot_of(FIXED_FACTS)
    first, second = admit(spec, snap), admit(spec, snap)
    assert canonical.encode(first.to_value()) == canonical.encode(second.to_value())
    again = AdmissionRecord.from_value(canonical.decode(canonical.encode(first.to_value())))
    assert again == first and admission_digest(again) == admission_digest(first)


def test_h_a_changes_when_any_decision_changes() -> None:
    snap = snapshot_of(FIXED_FACTS)
    base = seed_spec()
    variants = [
        seed_spec(SpawnPolicy.ALLOW_DESCENDANTS_WITHIN_BOUNDARY),
        seed_spec(capabilities=caps(InheritedFds(FdsOnly((3,))))),
        seed_spec(capabilities=caps(InheritedFds(FdsOnly((4,))))),
        seed_spec(budgets=BudgetRequirements.uniform(9, MinGuarantee.MEDIATED)),
        seed_spec(budgets=BudgetRequirements(process_count=enforced(8))),
        seed_spec(evidence=EvidenceRequirements.of({EvidenceClaim.RESOURCE_USAGE})),
        seed_spec(controls=(LaunchWorkload(),)),
        seed_spec(capabilities=(ChildSpawn(SpawnPolicy.DENY_NEW_TASKS),)),
    ]
    digests = {admission_digest(admit(s, snap)) for s in [base, *variants]}
    assert len(digests) == len(variants) + 1


def test_h_a_follows_the_cells_a_spec_meets() -> None:
    fs = seed_spec(capabilities=caps(Filesystem(FsAccess.READ, ("/srv",))))
    snap = snapshot_of(FIXED_FACTS)
    abi6 = snapshot_of(dataclasses.replace(FIXED_FACTS, landlock_abi=6))
    # The filesystem cell's reason names the ABI, so a spec meeting it gets a new h_a ...
    assert admission_digest(admit(fs, abi6)) != admission_digest(admit(fs, snap))
    # ... while a spec that never meets that cell keeps its h_a (h_p still changes).
    assert admission_digest(admit(seed_spec(), abi6)) == admission_digest(admit(seed_spec(), snap))


def test_not_a_spec_is_invalid_policy() -> None:
    with pytest.raises(PlanRefusal) as info:
        admit("spec.toml", snapshot_of(FIXED_FACTS))  # type: ignore[arg-type]
    assert info.value.code == "invalid-policy"


def test_best_effort_kill_without_cgroup_kill_is_mediated_and_adds_no_primitive() -> None:
    kill = Kill(KillTarget.RUN_TREE, KillGuarantee.BEST_EFFORT_ALLOWED)
    spec = seed_spec(controls=(LaunchWorkload(), kill))
    plan = plan_v1(spec, without(FIXED_FACTS, cgroup_v2_kill=False))
    decision = next(r for r in plan.admission.requirements if r.key == "kill:best_effort_allowed")
    assert decision.verdict is Enforcement.MEDIATED
    assert decision.mechanism == "linux:signal_process_group:Mediated"
    assert not plan.has_entry("linux.cgroup.kill.v1")
    # With cgroup.kill the same spec is Enforced and the leaf is killed atomically.
    plan = plan_v1(spec, snapshot_of(FIXED_FACTS))
    assert plan.params_of("linux.cgroup.kill.v1") == {"guarantee": "atomic"}
