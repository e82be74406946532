"""Requirement keys: same meaning -> same key, different meaning -> different key."""

from __future__ import annotations

from bvisor import canonical
from bvisor.contract import (
    BoundarySpec,
    CaptureStreams,
    ChildSpawn,
    Environment,
    EnvPolicy,
    ExposePath,
    FdsNone,
    FdsOnly,
    Filesystem,
    FsAccess,
    InheritedFds,
    Kill,
    KillGuarantee,
    KillTarget,
    LaunchWorkload,
    ListOutputs,
    Network,
    NetworkAllowList,
    NetworkDenyAll,
    ProcessWorkload,
    Requirement,
    RequirementKind,
    SpawnPolicy,
    StdStreams,
    TempRoot,
    requirement_of_capability,
    requirement_of_control,
    requirements_of,
)


def fs(access: FsAccess, *roots: str, recursive: bool = True) -> Requirement:
    return requirement_of_capability(Filesystem(access, roots, recursive))


def test_there_are_seventeen_kinds() -> None:
    assert len(RequirementKind) == 17
    assert len({k.value for k in RequirementKind}) == 17


def test_reordered_roots_give_the_same_key() -> None:
    assert fs(FsAccess.READ, "/b", "/a").key() == fs(FsAccess.READ, "/a", "/b").key()


def test_different_access_gives_a_different_key() -> None:
    keys = {fs(access, "/a").key() for access in FsAccess}
    assert len(keys) == 3


def test_recursive_flag_is_part_of_the_key() -> None:
    assert fs(FsAccess.READ, "/a").key() != fs(FsAccess.READ, "/a", recursive=False).key()


def test_policy_picks_the_kind() -> None:
    assert requirement_of_capability(Network(NetworkDenyAll())).kind is (
        RequirementKind.NETWORK_DENY_ALL
    )
    allow = Network(NetworkAllowList(("a.example:1",)))
    assert requirement_of_capability(allow).kind is RequirementKind.NETWORK_ALLOW_LIST
    kinds = {requirement_of_capability(ChildSpawn(p)).kind for p in SpawnPolicy}
    assert kinds == {
        RequirementKind.CHILD_SPAWN_DENY_NEW_TASKS,
        RequirementKind.CHILD_SPAWN_ALLOW_THREADS,
        RequirementKind.CHILD_SPAWN_ALLOW_DESCENDANTS,
    }
    assert requirement_of_capability(InheritedFds(FdsNone())).kind is (
        RequirementKind.INHERITED_FDS_NONE
    )
    assert requirement_of_capability(InheritedFds(FdsOnly((3,)))).kind is (
        RequirementKind.INHERITED_FDS_ONLY
    )


def test_allow_lists_and_env_are_order_insensitive_but_value_sensitive() -> None:
    one = requirement_of_capability(Network(NetworkAllowList(("b.example:1", "a.example:2"))))
    two = requirement_of_capability(Network(NetworkAllowList(("a.example:2", "b.example:1"))))
    three = requirement_of_capability(Network(NetworkAllowList(("a.example:2",))))
    assert one == two and one.key() == two.key()
    assert one != three
    env_a = requirement_of_capability(Environment(EnvPolicy.of({"A": "1", "B": "2"})))
    env_b = requirement_of_capability(Environment(EnvPolicy.of({"B": "2", "A": "1"})))
    env_c = requirement_of_capability(Environment(EnvPolicy.of({"A": "1", "B": "3"})))
    assert env_a.key() == env_b.key() != env_c.key()


def test_control_requirements() -> None:
    assert requirement_of_control(LaunchWorkload()).policy == {}
    atomic = requirement_of_control(Kill(KillTarget.RUN_TREE, KillGuarantee.ATOMIC))
    best = requirement_of_control(Kill(KillTarget.RUN_TREE, KillGuarantee.BEST_EFFORT_ALLOWED))
    assert atomic.kind is best.kind is RequirementKind.KILL
    assert atomic.key() != best.key()


def test_requirement_policy_is_normalized_and_hashable() -> None:
    with_tuple = Requirement(RequirementKind.FILESYSTEM, {"roots": ("/a",)})
    with_list = Requirement(RequirementKind.FILESYSTEM, {"roots": ["/a"]})
    assert with_tuple == with_list
    assert len({with_tuple, with_list}) == 1
    assert Requirement.from_value(canonical.decode(with_list.key())) == with_list


def test_requirements_of_is_canonical_and_complete() -> None:
    caps = (
        Filesystem(FsAccess.READ, ("/data",)),
        Filesystem(FsAccess.WRITE, ("/out",)),
        ChildSpawn(SpawnPolicy.ALLOW_DESCENDANTS_WITHIN_BOUNDARY),
        Network(NetworkDenyAll()),
    )
    controls = (
        ListOutputs(),
        Kill(KillTarget.RUN_TREE, KillGuarantee.ATOMIC),
        LaunchWorkload(),
        TempRoot(),
        CaptureStreams(StdStreams.capture_out_err()),
        ExposePath("/src", "/dst", FsAccess.READ),
    )
    one = BoundarySpec(ProcessWorkload("/bin/true"), caps, controls)
    two = BoundarySpec(ProcessWorkload("/bin/true"), caps[::-1], controls[::-1])
    reqs = requirements_of(one)
    assert reqs == requirements_of(two)
    assert len(reqs) == len(caps) + len(controls)
    assert [r.sort_key() for r in reqs] == sorted(r.sort_key() for r in reqs)
    assert [r.kind for r in reqs][:2] == [RequirementKind.FILESYSTEM] * 2
