"""Planner rules v2: the private root, the PID namespace, and what they make Enforced.

Pure tests over hand-built host facts: what the ceiling says, what admission refuses,
and which mechanisms (with which parameters) the default boundary lowers to — as root
and, the case most users are, as a normal user with no delegated cgroup.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from bvisor.contract import (
    BoundarySpec,
    Budget,
    BudgetRequirements,
    EnvEntry,
    Environment,
    EnvLiteral,
    ExposePath,
    Filesystem,
    FsAccess,
    LaunchWorkload,
    MinGuarantee,
    ProcessWorkload,
    TempRoot,
)
from bvisor.contract import mechanisms as mech
from bvisor.contract.enforcement import Enforcement
from bvisor.contract.profile import HostFacts, ProfileSnapshot
from bvisor.front.defaults import default_spec
from bvisor.planner.errors import PlanRefusal
from bvisor.planner.planning import plan_boundary
from bvisor.planner.rules import v2
from tests.planner.helpers import FIXED_FACTS

ROOT = dataclasses.replace(FIXED_FACTS, pidns=True)
# A normal user: a user namespace, no cgroup it may write, no root.
USER = dataclasses.replace(
    ROOT,
    host_uid=1000,
    host_gid=1000,
    cgroup_v2_base=None,
    cgroup_v2_kill=False,
    cgroup_v1_bases=(),
)


def _snapshot(facts: HostFacts) -> ProfileSnapshot:
    return ProfileSnapshot("linux", facts, v2.RULES.ceiling(facts))


def _cells(facts: HostFacts) -> dict[str, Any]:
    return {cell.key: cell for cell in v2.RULES.ceiling(facts)}


def _plan(spec: BoundarySpec, facts: HostFacts = ROOT) -> Any:
    return plan_boundary(spec, _snapshot(facts), v2.RULES)


def _refusal(spec: BoundarySpec, facts: HostFacts = ROOT) -> PlanRefusal:
    with pytest.raises(PlanRefusal) as info:
        _plan(spec, facts)
    return info.value


def _with(spec: BoundarySpec, *controls: Any, **changes: Any) -> BoundarySpec:
    return dataclasses.replace(spec, controls=(*spec.controls, *controls), **changes)


def test_the_private_root_makes_filesystem_and_its_controls_enforced() -> None:
    cells = _cells(ROOT)
    for key in ("filesystem", "temp_root", "expose_path"):
        assert cells[key].enforcement is Enforcement.ENFORCED, cells[key]
    assert cells["filesystem"].mechanism == "linux:private_root_landlock:Enforced"


@pytest.mark.parametrize(
    "changes, fact",
    [
        ({"pidns": False}, "pidns"),
        ({"landlock_abi": 0}, "landlock_abi"),
        ({"pidns": None}, "pidns"),
    ],
)
def test_without_the_private_root_filesystem_is_refused_naming_the_fact(
    changes: dict[str, Any], fact: str
) -> None:
    err = _refusal(
        default_spec(["/bin/true"], cwd="/srv/work", snapshot=_snapshot(ROOT)),
        dataclasses.replace(ROOT, **changes),
    )
    assert (err.code, err.requirement, err.missing_fact) == ("unsupported", "filesystem", fact)


def test_a_normal_user_gets_the_run_tree_and_deadlines_without_a_cgroup() -> None:
    cells = _cells(USER)
    for key in ("child_spawn_allow_descendants", "kill:atomic", "budget:wall_micros"):
        assert cells[key].enforcement is Enforcement.ENFORCED, cells[key]
        assert "pidns" in cells[key].mechanism, cells[key]
    # Budgets that need a controller stay witnessed only, saying which fact is missing.
    assert cells["budget:process_count"].enforcement is Enforcement.MEDIATED


def test_the_default_spec_runs_for_a_normal_user() -> None:
    spec = default_spec(["/bin/true"], cwd="/home/u/proj", snapshot=_snapshot(USER))
    plan = _plan(spec, USER)
    ids = [entry.id for entry in plan.entries]
    for primitive in (
        mech.USERNS,
        mech.IPCNS,
        mech.PIDNS,
        mech.NETNS,
        mech.ROOTFS,
        mech.LANDLOCK,
        mech.SECCOMP,
        mech.PIDNS_KILL,
        mech.OOM_SCORE,
        mech.USER_LIMITS,
    ):
        assert primitive.id in ids, (primitive.id, ids)
    assert mech.CGROUP_LEAF.id not in ids  # nothing to make one in: the namespace holds


def test_the_default_mount_table() -> None:
    plan = _plan(default_spec(["/bin/true"], cwd="/srv/work", snapshot=_snapshot(ROOT)))
    rootfs = mech.Rootfs.from_value(plan.params_of(mech.ROOTFS.id))
    by_dest = {m.dest: m for m in rootfs.mounts}
    assert by_dest["/srv/work"] == mech.BindMount("/srv/work", "/srv/work", "write", True)
    for system in ("/usr", "/lib", "/lib64", "/bin", "/sbin", "/etc"):
        assert by_dest[system] == mech.BindMount(system, system, "read", False)
    assert isinstance(by_dest["/tmp"], mech.TmpfsMount)
    assert isinstance(by_dest["/tmp/home"], mech.DirMount)
    assert isinstance(by_dest["/dev"], mech.DevMount) and "null" in by_dest["/dev"].devices
    assert "tty" not in by_dest["/dev"].devices
    assert isinstance(by_dest["/proc"], mech.ProcMount)
    assert rootfs.cwd == "/srv/work"
    dests = [m.dest for m in rootfs.mounts]
    assert dests.index("/tmp") < dests.index("/tmp/home"), "parents first"


def test_run_from_tmp_itself_grants_that_directory_and_makes_it_home() -> None:
    """``bvisor run`` from ``/tmp``: the working directory is the host's /tmp (granted
    read-write like any working directory, and HOME), not hidden by a private one."""
    spec = default_spec(["/bin/true"], cwd="/tmp", snapshot=_snapshot(ROOT))
    rootfs = mech.Rootfs.from_value(_plan(spec).params_of(mech.ROOTFS.id))
    by_dest = {m.dest: m for m in rootfs.mounts}
    assert by_dest["/tmp"] == mech.BindMount("/tmp", "/tmp", "write", True)
    assert "/tmp/home" not in by_dest
    (environment,) = (c for c in spec.capabilities if isinstance(c, Environment))
    assert EnvEntry(name="HOME", value=EnvLiteral("/tmp")) in environment.policy.entries


def test_a_storage_budget_bounds_the_temp_root() -> None:
    spec = dataclasses.replace(
        default_spec(["/bin/true"], cwd="/srv/work", snapshot=_snapshot(ROOT)),
        budgets=BudgetRequirements(storage_bytes=Budget(8 << 20, MinGuarantee.MEDIATED)),
    )
    rootfs = mech.Rootfs.from_value(_plan(spec).params_of(mech.ROOTFS.id))
    tmp = next(m for m in rootfs.mounts if m.dest == "/tmp")
    assert isinstance(tmp, mech.TmpfsMount) and tmp.size_bytes > 8 << 20  # Mediated: not capped


def test_an_exposed_path_lands_at_its_destination() -> None:
    spec = _with(
        default_spec(["/bin/true"], cwd="/srv/work", snapshot=_snapshot(ROOT)),
        ExposePath(source="/srv/data", dest="/data", access=FsAccess.READ),
    )
    rootfs = mech.Rootfs.from_value(_plan(spec).params_of(mech.ROOTFS.id))
    assert mech.BindMount("/data", "/srv/data", "read", True) in rootfs.mounts


@pytest.mark.parametrize(
    "control, requirement",
    [
        (ExposePath(source="/srv/x", dest="/proc/x", access=FsAccess.READ), "filesystem"),
        (ExposePath(source="/srv/x", dest="/dev", access=FsAccess.READ), "filesystem"),
        (ExposePath(source="/srv/x", dest="/srv/work", access=FsAccess.READ), "expose_path"),
    ],
)
def test_an_exposed_path_that_does_not_fit_the_root_is_refused(
    control: Any, requirement: str
) -> None:
    err = _refusal(
        _with(default_spec(["/bin/true"], cwd="/srv/work", snapshot=_snapshot(ROOT)), control)
    )
    assert (err.code, err.requirement) == ("invalid-policy", requirement)


def test_a_temp_root_needs_a_filesystem_capability() -> None:
    spec = BoundarySpec(
        workload=ProcessWorkload("/bin/true"),
        capabilities=(),
        controls=(LaunchWorkload(), TempRoot()),
        budgets=BudgetRequirements(),
        evidence=default_spec(["/bin/true"]).evidence,
    )
    err = _refusal(spec)
    assert (err.code, err.requirement) == ("invalid-policy", "temp_root")


def test_a_root_at_slash_is_refused() -> None:
    spec = dataclasses.replace(
        default_spec(["/bin/true"], cwd="/srv/work", snapshot=_snapshot(ROOT)),
        capabilities=(
            *default_spec(["/bin/true"], cwd="/srv/work", snapshot=_snapshot(ROOT)).capabilities,
            Filesystem(FsAccess.READ, ("/",)),
        ),
    )
    assert _refusal(spec).code == "invalid-policy"


def test_argv0_is_the_path_or_the_spec_s() -> None:
    plan = _plan(default_spec(["/bin/true"], cwd="/srv/work", snapshot=_snapshot(ROOT)))
    assert mech.Exec.from_value(plan.params_of(mech.EXEC.id)).argv[0] == "/bin/true"
    spec = default_spec(["/bin/true"], cwd="/srv/work", snapshot=_snapshot(ROOT))
    spec = dataclasses.replace(spec, workload=dataclasses.replace(spec.workload, argv0="true"))
    assert mech.Exec.from_value(_plan(spec).params_of(mech.EXEC.id)).argv[0] == "true"


def test_a_process_budget_counts_the_init_in_the_leaf() -> None:
    spec = dataclasses.replace(
        default_spec(["/bin/true"], cwd="/srv/work", snapshot=_snapshot(ROOT)),
        budgets=BudgetRequirements(process_count=Budget(16, MinGuarantee.ENFORCED)),
    )
    pids = mech.PidsLimit.from_value(_plan(spec).params_of(mech.BUDGET_PIDS.id))
    assert pids.limit == 17


def test_every_v2_parameter_set_decodes_with_its_declared_class() -> None:
    plan = _plan(default_spec(["/bin/true"], cwd="/srv/work", snapshot=_snapshot(ROOT)))
    for primitive in plan.lowering:
        assert mech.params_of(primitive.entry.id, primitive.params).to_value() == primitive.params
