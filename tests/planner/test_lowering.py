"""The lowering compiler: order, digests, and every error path on hand-built bad input."""

from __future__ import annotations

from typing import Any

import pytest

from bvisor import canonical
from bvisor.contract.lowering import Phase, lowering_digest
from bvisor.digest import Purpose, digest_value
from bvisor.planner.errors import REFUSAL_CODES, PlanRefusal
from bvisor.planner.rules.v1.catalogue import BY_ID, CATALOGUE, Primitive
from bvisor.planner.rules.v1.lowering import PARAM_KEYS, compile_schedule, decl_digest

ALL_PARAMS: dict[str, dict[str, Any]] = {
    "linux.userns.create.v1": {"uid": 1000, "gid": 1000},
    "linux.netns.create.v1": {},
    "linux.cgroup.leaf.v1": {"v2_base": "/sys/fs/cgroup/unified", "v1_bases": {}},
    "linux.budget.pids.v1": {"limit": 8, "hierarchy": "v1"},
    "linux.budget.memory.v1": {"limit_bytes": 1 << 24, "hierarchy": "v1"},
    "linux.nonewprivs.v1": {},
    "linux.caps.drop.v1": {},
    "linux.ambient.scrub.v1": {"env": [], "keep_fds": [0, 1, 2]},
    "linux.landlock.apply.v1": {
        "abi_floor": 3,
        "rules": [],
        "system_read_roots": [],
        "device_rw": [],
        "device_read": [],
        "scope": [],
    },
    "linux.seccomp.apply.v1": {"deny_new_tasks": True, "deny_sockets": False},
    "linux.landlock.scope.v1": {"scope": ["signal"]},
    "linux.exec.v1": {"exe": "/bin/true", "argv": ["true"]},
    "linux.streams.capture.v1": {"stdout": True, "stderr": True, "stdin": False, "cap_bytes": 1},
    "linux.budget.wall.v1": {"limit_micros": 1000},
    "linux.cgroup.kill.v1": {"guarantee": "atomic"},
}


def refused(requests: list[tuple[str, Any]], **kw: Any) -> PlanRefusal:
    with pytest.raises(PlanRefusal) as info:
        compile_schedule(requests, **kw)
    assert info.value.code in REFUSAL_CODES
    return info.value


def test_param_keys_cover_the_catalogue() -> None:
    assert set(PARAM_KEYS) == set(BY_ID) == set(ALL_PARAMS)


def test_full_catalogue_is_ordered_topologically_by_phase_id_version() -> None:
    requests = list(reversed(list(ALL_PARAMS.items())))
    schedule = compile_schedule(requests)
    ids = [p.entry.id for p in schedule]
    assert ids == [
        "linux.cgroup.leaf.v1",
        "linux.budget.memory.v1",
        "linux.budget.pids.v1",
        "linux.userns.create.v1",
        "linux.netns.create.v1",
        "linux.caps.drop.v1",
        "linux.nonewprivs.v1",
        "linux.ambient.scrub.v1",
        "linux.landlock.apply.v1",
        "linux.landlock.scope.v1",
        "linux.seccomp.apply.v1",
        "linux.exec.v1",
        "linux.budget.wall.v1",
        "linux.streams.capture.v1",
        "linux.cgroup.kill.v1",
    ]
    phases = [p.entry.phase_code for p in schedule]
    assert phases == sorted(phases)
    for planned in schedule:
        primitive = BY_ID[planned.entry.id]
        assert planned.entry.phase_code == int(primitive.phase)
        assert planned.entry.param_digest == digest_value(
            Purpose.PRIMITIVE_PARAMS, ALL_PARAMS[primitive.id]
        )
        assert planned.entry.decl_digest == digest_value(
            Purpose.PRIMITIVE_DECL,
            {
                "id": primitive.id,
                "version": primitive.version,
                "phase_code": int(primitive.phase),
                "requires": sorted(primitive.requires),
            },
        )
    # Request order never matters.
    again = compile_schedule(list(ALL_PARAMS.items()))
    assert lowering_digest(p.entry for p in again) == lowering_digest(p.entry for p in schedule)


def test_unknown_primitive() -> None:
    err = refused([("linux.bogus.v1", {})])
    assert (err.code, err.requirement) == ("lowering-unknown-primitive", "linux.bogus.v1")


def test_duplicate_and_conflict() -> None:
    exec_ = ("linux.exec.v1", ALL_PARAMS["linux.exec.v1"])
    assert refused([exec_, exec_]).code == "lowering-duplicate"
    other = ("linux.exec.v1", {"exe": "/bin/false", "argv": ["false"]})
    assert refused([exec_, other]).code == "lowering-conflict"


def test_bad_params() -> None:
    assert refused([("linux.exec.v1", {"exe": "/bin/true"})]).code == "lowering-bad-params"
    assert refused([("linux.nonewprivs.v1", [])]).code == "lowering-bad-params"
    bad = {"exe": "/bin/true", "argv": [1.5]}
    assert refused([("linux.exec.v1", bad)]).code == "lowering-bad-params"


def test_missing_prerequisite() -> None:
    err = refused([("linux.netns.create.v1", {})])
    assert (err.code, err.requirement) == ("lowering-missing-prerequisite", "linux.netns.create.v1")
    assert "linux.userns.create.v1" in err.detail
    err = refused([("linux.seccomp.apply.v1", ALL_PARAMS["linux.seccomp.apply.v1"])])
    assert err.code == "lowering-missing-prerequisite"


def test_phase_order() -> None:
    late = Primitive("test.late.v1", 1, Phase.TEARDOWN)
    early = Primitive("test.early.v1", 1, Phase.NAMESPACE_CREATE, ("test.late.v1",))
    catalogue = {p.id: p for p in (late, early)}
    err = refused([(early.id, {}), (late.id, {})], catalogue=catalogue, param_keys={})
    assert (err.code, err.requirement) == ("lowering-phase-order", "test.early.v1")


def test_cycle() -> None:
    a = Primitive("test.a.v1", 1, Phase.FS_SETUP, ("test.b.v1",))
    b = Primitive("test.b.v1", 1, Phase.FS_SETUP, ("test.a.v1",))
    c = Primitive("test.c.v1", 1, Phase.NAMESPACE_CREATE)
    catalogue = {p.id: p for p in (a, b, c)}
    err = refused([(a.id, {}), (b.id, {}), (c.id, {})], catalogue=catalogue, param_keys={})
    assert err.code == "lowering-cycle"
    assert "test.a.v1" in err.detail and "test.b.v1" in err.detail


def test_same_phase_prerequisite_is_ordered_first_even_against_id_order() -> None:
    z = Primitive("test.a-needs-z.v1", 1, Phase.FS_SETUP, ("test.z.v1",))
    base = Primitive("test.z.v1", 1, Phase.FS_SETUP)
    catalogue = {p.id: p for p in (z, base)}
    schedule = compile_schedule([(z.id, {}), (base.id, {})], catalogue=catalogue, param_keys={})
    assert [p.entry.id for p in schedule] == ["test.z.v1", "test.a-needs-z.v1"]


def test_decl_digest_binds_the_declaration() -> None:
    nnp = BY_ID["linux.nonewprivs.v1"]
    assert decl_digest(nnp) != decl_digest(Primitive(nnp.id, 2, nnp.phase))
    assert decl_digest(nnp) != decl_digest(Primitive(nnp.id, 1, Phase.LAUNCH))
    assert len({decl_digest(p) for p in CATALOGUE}) == len(CATALOGUE)


def test_params_are_canonicalised() -> None:
    (planned,) = compile_schedule([("linux.exec.v1", {"argv": ("true",), "exe": "/bin/true"})])
    assert canonical.encode(planned.params) == canonical.encode(ALL_PARAMS["linux.exec.v1"])
