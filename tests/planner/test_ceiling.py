"""The Linux ceiling: Enforced exactly where the enabling fact is present."""

from __future__ import annotations

import dataclasses

import pytest

from bvisor import canonical
from bvisor.contract import BudgetDimension, Enforcement, EvidenceClaim, RequirementKind
from bvisor.contract.profile import CeilingCell, ProfileSnapshot, profile_digest
from bvisor.planner.rules.v1.ceiling import linux_ceiling, missing_fact_of
from tests.planner.helpers import FIXED_FACTS, snapshot_of

E, M, U = Enforcement.ENFORCED, Enforcement.MEDIATED, Enforcement.UNSUPPORTED


def cells(**changes: object) -> dict[str, CeilingCell]:
    facts = dataclasses.replace(FIXED_FACTS, **changes)  # type: ignore[arg-type]
    return {c.key: c for c in linux_ceiling(facts)}


def test_every_key_is_covered_once() -> None:
    keys = [c.key for c in linux_ceiling(FIXED_FACTS)]
    assert len(keys) == len(set(keys))
    expected = {k.value for k in RequirementKind if k is not RequirementKind.KILL}
    expected |= {"kill:atomic", "kill:best_effort_allowed"}
    expected |= {f"budget:{d.value}" for d in BudgetDimension}
    expected |= {f"evidence:{c.value}" for c in EvidenceClaim}
    assert set(keys) == expected


def test_full_host_cells() -> None:
    c = cells()
    enforced = {
        "filesystem": "linux:landlock:Enforced",
        "network_deny_all": "linux:netns_userns_seccomp:Enforced",
        "child_spawn_deny_new_tasks": "linux:seccomp_deny_tasks:Enforced",
        "child_spawn_allow_descendants": "linux:cgroup_kill:Enforced",
        "kill:atomic": "linux:cgroup_kill:Enforced",
        "kill:best_effort_allowed": "linux:cgroup_kill:Enforced",
        "budget:wall_micros": "linux:deadline_cgroup_kill:Enforced",
        "budget:process_count": "linux:cgroup1_pids:Enforced",
        "budget:resident_bytes": "linux:cgroup1_memory:Enforced",
    }
    for key, mechanism in enforced.items():
        assert (c[key].enforcement, c[key].mechanism) == (E, mechanism), key
    for key in (
        "environment",
        "inherited_fds_none",
        "inherited_fds_only",
        "launch_workload",
        "capture_streams",
    ):
        assert c[key].enforcement is E
    for key in (
        "network_allow_list",
        "child_spawn_allow_threads",
        "temp_root",
        "expose_path",
        "commit_artifact",
        "discard_artifact",
        "list_outputs",
    ):
        assert c[key].enforcement is U, key
    assert "clone3" in c["child_spawn_allow_threads"].reason
    assert "not implemented" in c["temp_root"].reason
    for dim in ("cpu_micros", "handle_count", "storage_bytes", "network_bytes"):
        assert c[f"budget:{dim}"].enforcement is M
    producible = {
        "terminal_outcome",
        "captured_streams",
        "resource_usage",
        "mechanism_attestation",
        "process_tree",
    }
    for claim in EvidenceClaim:
        want = E if claim.value in producible else U
        assert c[f"evidence:{claim.value}"].enforcement is want, claim


@pytest.mark.parametrize(
    ("changes", "key", "fact"),
    [
        ({"landlock_abi": 0}, "filesystem", "landlock_abi"),
        ({"landlock_abi": 2}, "filesystem", "landlock_abi"),
        ({"userns": False}, "network_deny_all", "userns"),
        ({"netns": False}, "network_deny_all", "netns"),
        ({"seccomp_filter": False, "seccomp_actions": ()}, "network_deny_all", "seccomp_filter"),
        (
            {"seccomp_filter": False, "seccomp_actions": ()},
            "child_spawn_deny_new_tasks",
            "seccomp_filter",
        ),
        (
            {"seccomp_actions": ("allow", "kill_process")},
            "child_spawn_deny_new_tasks",
            "seccomp_actions",
        ),
        ({"cgroup_v2_base": None}, "child_spawn_allow_descendants", "cgroup_v2_base"),
        ({"cgroup_v2_kill": False}, "child_spawn_allow_descendants", "cgroup_v2_kill"),
        ({"cgroup_v2_kill": False}, "kill:atomic", "cgroup_v2_kill"),
        ({"cgroup_v2_base": None}, "evidence:process_tree", "cgroup_v2_base"),
    ],
)
def test_missing_fact_makes_cell_unsupported_and_named(
    changes: dict[str, object], key: str, fact: str
) -> None:
    cell = cells(**changes)[key]
    assert cell.enforcement is U
    assert cell.mechanism.endswith(":Unsupported")
    assert missing_fact_of(cell) == fact


def test_budget_cells_degrade_to_mediated() -> None:
    c = cells(cgroup_v1_bases=(), cgroup_v2_kill=False)
    assert c["budget:process_count"].enforcement is M
    assert c["budget:resident_bytes"].enforcement is M
    assert c["budget:wall_micros"].enforcement is M
    assert c["kill:best_effort_allowed"].enforcement is M


def test_v2_delegated_controller_wins_over_v1() -> None:
    c = cells(cgroup_v2_controllers=("memory", "pids"))
    assert c["budget:process_count"].mechanism == "linux:cgroup2_pids:Enforced"
    assert c["budget:resident_bytes"].mechanism == "linux:cgroup2_memory:Enforced"


def test_h_p_covers_every_fact() -> None:
    base = profile_digest(snapshot_of(FIXED_FACTS))
    for change in (
        {"kernel_release": "6.18.1"},
        {"launcher_identity": "11" * 32},
        {"probe_notes": ("other",)},
        {"cgroup_v1_bases": (("pids", "/sys/fs/cgroup/pids"),)},
        {"max_user_namespaces": 1},
    ):
        changed = dataclasses.replace(FIXED_FACTS, **change)
        assert profile_digest(snapshot_of(changed)) != base


def test_snapshot_round_trip() -> None:
    snap = snapshot_of(FIXED_FACTS)
    again = ProfileSnapshot.from_value(canonical.decode(canonical.encode(snap.to_value())))
    assert again == snap
    assert profile_digest(again) == profile_digest(snap)
