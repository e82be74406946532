"""Plan identity and parameters: determinism, round trips, tamper detection, the facade."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from bvisor import canonical
from bvisor.contract import (
    BoundarySpec,
    ContractError,
    EnvEntry,
    Environment,
    EnvLiteral,
    EnvPolicy,
    FdsOnly,
    Filesystem,
    FsAccess,
    InheritedFds,
    Network,
    NetworkDenyAll,
    SecretLease,
    SpawnPolicy,
)
from bvisor.contract.plan import BoundaryPlan
from bvisor.contract.profile import ProfileSnapshot
from bvisor.planner.errors import PlanRefusal
from bvisor.planner.planning import BoundaryPlanner
from bvisor.planner.registry import BackendRegistry
from tests.planner.helpers import FIXED_FACTS, plan_v1, seed_spec, snapshot_of


def rich_spec() -> BoundarySpec:
    env = EnvPolicy.exact(
        (
            EnvEntry("PATH", EnvLiteral("/usr/bin:/bin")),
            EnvEntry("API_TOKEN", SecretLease("api-token")),
            EnvEntry("LANG", EnvLiteral("C.UTF-8")),
        )
    )
    return seed_spec(
        SpawnPolicy.DENY_NEW_TASKS,
        capabilities=(
            Filesystem(FsAccess.READ, ("/srv/data", "/opt/tool")),
            Filesystem(FsAccess.READ_WRITE, ("/srv/out",)),
            Network(NetworkDenyAll()),
            Environment(env),
            InheritedFds(FdsOnly((5, 3))),
            *seed_spec().capabilities[:1],
        ),
    )


def test_same_spec_same_snapshot_is_byte_identical() -> None:
    a = plan_v1(rich_spec(), snapshot_of(FIXED_FACTS))
    b = plan_v1(rich_spec(), snapshot_of(dataclasses.replace(FIXED_FACTS)))
    assert canonical.encode(a.to_value()) == canonical.encode(b.to_value())
    assert a.plan_id == b.plan_id


def test_plan_id_changes_with_spec_and_profile() -> None:
    base = plan_v1(rich_spec(), snapshot_of(FIXED_FACTS))
    other_spec = plan_v1(seed_spec(), snapshot_of(FIXED_FACTS))
    other_host = plan_v1(
        rich_spec(), snapshot_of(dataclasses.replace(FIXED_FACTS, kernel_release="7.0"))
    )
    assert len({base.plan_id, other_spec.plan_id, other_host.plan_id}) == 3
    assert base.h_a == other_host.h_a and base.h_p != other_host.h_p


def test_params_of_a_rich_spec() -> None:
    plan = plan_v1(rich_spec(), snapshot_of(FIXED_FACTS))
    assert plan.params_of("linux.userns.create.v1") == {"uid": 1000, "gid": 1000}
    assert plan.params_of("linux.netns.create.v1") == {}
    assert plan.params_of("linux.seccomp.apply.v1") == {
        "deny_new_tasks": True,
        "deny_sockets": True,
    }
    assert plan.params_of("linux.ambient.scrub.v1") == {
        "env": [
            ["API_TOKEN", {"lease": "api-token"}],
            ["LANG", {"literal": "C.UTF-8"}],
            ["PATH", {"literal": "/usr/bin:/bin"}],
        ],
        "keep_fds": [0, 1, 2, 3, 5],
    }
    assert plan.params_of("linux.landlock.apply.v1") == {
        "abi_floor": 3,
        "rules": [
            {"path": "/opt/tool", "access": "read"},
            {"path": "/srv/data", "access": "read"},
            {"path": "/srv/out", "access": "read_write"},
        ],
        "system_read_roots": ["/usr", "/lib", "/lib64", "/bin", "/sbin", "/etc"],
        "device_rw": ["/dev/null"],
        "device_read": ["/dev/zero", "/dev/urandom"],
        "scope": ["abstract_unix_socket", "signal"],
    }
    assert plan.params_of("linux.exec.v1") == {"exe": "/bin/sh", "argv": ["sh", "-c", "true"]}
    assert plan.params_of("linux.streams.capture.v1") == {
        "stdout": True,
        "stderr": True,
        "stdin": False,
        "cap_bytes": 16 * 1024 * 1024,
    }
    assert not plan.has_entry("linux.cgroup.leaf.v1")
    with pytest.raises(KeyError):
        plan.params_of("linux.cgroup.leaf.v1")


def test_empty_environment_when_no_environment_requirement() -> None:
    spec = seed_spec(capabilities=seed_spec().capabilities[:1])
    plan = plan_v1(spec, snapshot_of(FIXED_FACTS))
    assert plan.params_of("linux.ambient.scrub.v1") == {"env": [], "keep_fds": [0, 1, 2]}
    assert plan.has_entry("linux.nonewprivs.v1")


def test_descendants_get_a_leaf_killed_at_teardown() -> None:
    plan = plan_v1(
        seed_spec(SpawnPolicy.ALLOW_DESCENDANTS_WITHIN_BOUNDARY), snapshot_of(FIXED_FACTS)
    )
    assert plan.params_of("linux.cgroup.leaf.v1") == {
        "v2_base": "/sys/fs/cgroup/unified",
        "v1_bases": {},
    }
    assert plan.params_of("linux.cgroup.kill.v1") == {"guarantee": "atomic"}
    assert plan.entries[-1].id == "linux.cgroup.kill.v1"


def test_plan_round_trips_and_rejects_tampering() -> None:
    plan = plan_v1(rich_spec(), snapshot_of(FIXED_FACTS))
    value: Any = canonical.decode(canonical.encode(plan.to_value()))
    assert BoundaryPlan.from_value(value) == plan
    for field, bad in (("h_a", b"\0" * 32), ("plan_id", b"\1" * 32), ("h_l", b"\2" * 32)):
        with pytest.raises(ContractError, match=field):
            BoundaryPlan.from_value({**value, field: bad})
    lowering = [dict(p) for p in value["lowering"]]
    lowering[0] = {**lowering[0], "params": {"v2_base": "/elsewhere", "v1_bases": {}}}
    with pytest.raises(ContractError, match="param_digest"):
        BoundaryPlan.from_value({**value, "lowering": lowering})
    with pytest.raises(ContractError, match="h_l"):
        BoundaryPlan.from_value({**value, "lowering": value["lowering"][1:]})


class FixedBackend:
    """A backend whose probe returns a fixed snapshot and counts calls."""

    def __init__(self, snapshot: ProfileSnapshot) -> None:
        self.snapshot = snapshot
        self.probes = 0

    def id(self) -> str:
        return "linux"

    def probe(self) -> ProfileSnapshot:
        self.probes += 1
        return self.snapshot

    def execute(self, plan: Any, **kwargs: Any) -> Any:
        raise NotImplementedError


def test_planner_facade_probes_once_per_attempt() -> None:
    from bvisor.planner.rules import CURRENT

    facts = dataclasses.replace(FIXED_FACTS, pidns=True)
    backend = FixedBackend(ProfileSnapshot("linux", facts, CURRENT.ceiling(facts)))
    registry = BackendRegistry()
    registry.register(backend)
    planner = BoundaryPlanner(registry)
    plan = planner.plan(seed_spec(), "linux")
    assert backend.probes == 1
    assert planner.plan(seed_spec(), "linux", snapshot=backend.snapshot) == plan
    assert backend.probes == 1
    assert registry.ids() == ("linux",)
    with pytest.raises(PlanRefusal) as info:
        planner.plan(seed_spec(), "wasm")
    assert info.value.code == "unknown-backend"
    with pytest.raises(ValueError, match="already registered"):
        registry.register(FixedBackend(backend.snapshot))


def test_refusal_value_shape() -> None:
    err = PlanRefusal("unsupported", "why", requirement="filesystem", missing_fact="landlock_abi")
    assert err.to_value() == {
        "code": "unsupported",
        "requirement": "filesystem",
        "detail": "why",
        "missing_fact": "landlock_abi",
    }
    with pytest.raises(ValueError):
        PlanRefusal("not-a-code", "x")
