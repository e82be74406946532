"""Validation of individual contract values: every bad field is a ContractError naming it."""

from __future__ import annotations

import pytest

from bvisor import canonical
from bvisor.contract import (
    BoundarySpec,
    CaptureStreams,
    ChildSpawn,
    CommitArtifact,
    ContractError,
    DiscardArtifact,
    Durability,
    Environment,
    EnvPolicy,
    ExposePath,
    FdsOnly,
    Filesystem,
    FsAccess,
    InheritedFds,
    Kill,
    KillGuarantee,
    KillTarget,
    LaunchWorkload,
    Network,
    NetworkAllowList,
    NetworkDenyAll,
    ProcessWorkload,
    SpawnPolicy,
    StdStreams,
    TempRoot,
    WasmWorkload,
    capability_from_value,
    control_from_value,
)

SH = ProcessWorkload("/bin/sh")


def spec(*items: object) -> BoundarySpec:
    caps = tuple(i for i in items if not _is_control(i))
    controls = tuple(i for i in items if _is_control(i))
    return BoundarySpec(SH, caps, controls)  # type: ignore[arg-type]


def _is_control(item: object) -> bool:
    return isinstance(
        item,
        (
            LaunchWorkload,
            CaptureStreams,
            TempRoot,
            ExposePath,
            CommitArtifact,
            DiscardArtifact,
            Kill,
        ),
    )


@pytest.mark.parametrize(
    ("build", "path", "code"),
    [
        (lambda: ProcessWorkload("bin/sh"), "exe", "relative-path"),
        (lambda: ProcessWorkload(""), "exe", "empty"),
        (lambda: ProcessWorkload("/bin/s\x00h"), "exe", "nul-byte"),
        (lambda: ProcessWorkload("/bin/sh", ("ok", "b\x00d")), "args[1]", "nul-byte"),
        (lambda: WasmWorkload(""), "module_ref", "empty"),
        (lambda: Filesystem(FsAccess.READ, ()), "roots", "empty"),
        (lambda: Filesystem(FsAccess.READ, ("/a", "rel")), "roots[1]", "relative-path"),
        (lambda: Filesystem(FsAccess.READ, ("/a/../etc",)), "roots[0]", "unnormalized-path"),
        (lambda: Filesystem(FsAccess.READ, ("/a/",)), "roots[0]", "unnormalized-path"),
        (lambda: Filesystem(FsAccess.READ, ("//a",)), "roots[0]", "unnormalized-path"),
        (lambda: Filesystem(FsAccess.READ, ("/a", "/b", "/a")), "roots[2]", "duplicate"),
        (lambda: NetworkAllowList(()), "endpoints", "empty"),
        (lambda: NetworkAllowList(("example.org",)), "endpoints[0]", "bad-endpoint"),
        (lambda: NetworkAllowList(("example.org:0",)), "endpoints[0]", "bad-endpoint"),
        (lambda: NetworkAllowList(("example.org:65536",)), "endpoints[0]", "bad-endpoint"),
        (lambda: NetworkAllowList(("example.org:080",)), "endpoints[0]", "bad-endpoint"),
        (lambda: NetworkAllowList(("exa mple.org:80",)), "endpoints[0]", "bad-endpoint"),
        (lambda: NetworkAllowList(("[::g]:80",)), "endpoints[0]", "bad-endpoint"),
        (lambda: NetworkAllowList(("999.1.1.1:80",)), "endpoints[0]", "bad-endpoint"),
        (lambda: NetworkAllowList(("a.org:1", "A.ORG:1")), "endpoints[1]", "duplicate"),
        (lambda: FdsOnly(()), "fds", "empty"),
        (lambda: FdsOnly((2,)), "fds[0]", "out-of-range"),
        (lambda: FdsOnly((3, 3)), "fds[1]", "duplicate"),
        (lambda: FdsOnly((True,)), "fds[0]", "wrong-type"),
        (lambda: ExposePath("rel", "/d", FsAccess.READ), "source", "relative-path"),
        (lambda: ExposePath("/s", "/d/..", FsAccess.READ), "dest", "unnormalized-path"),
        (lambda: StdStreams(1, True), "stdout", "wrong-type"),  # type: ignore[arg-type]
    ],
)
def test_value_rules(build: object, path: str, code: str) -> None:
    with pytest.raises(ContractError) as info:
        build()  # type: ignore[operator]
    assert (info.value.path, info.value.code) == (path, code)
    assert str(info.value).startswith(f"{path}: ")


def test_error_str_is_path_colon_message() -> None:
    error = ContractError("capability[2].policy", "expected one of a, b")
    assert str(error) == "capability[2].policy: expected one of a, b"
    assert isinstance(error, ValueError)
    assert str(error.under("spec")) == "spec.capability[2].policy: expected one of a, b"


def test_sets_are_stored_canonically() -> None:
    assert Filesystem(FsAccess.READ, ("/b", "/a")) == Filesystem(FsAccess.READ, ("/a", "/b"))
    assert Filesystem(FsAccess.READ, ["/b", "/a"]).roots == ("/a", "/b")  # type: ignore[arg-type]
    allow = NetworkAllowList(("Example.ORG:443", "[0:0::1]:80"))
    assert allow.endpoints == ("[::1]:80", "example.org:443")
    assert FdsOnly((9, 3)).fds == (3, 9)


class TestSpecRules:
    def test_launch_workload_required(self) -> None:
        with pytest.raises(ContractError) as info:
            spec(ChildSpawn(SpawnPolicy.DENY_NEW_TASKS))
        assert info.value.code == "missing-launch"

    def test_one_capability_per_family(self) -> None:
        with pytest.raises(ContractError) as info:
            spec(
                Network(NetworkDenyAll()),
                Network(NetworkAllowList(("a.b:1",))),
                LaunchWorkload(),
            )
        assert info.value.path == "capabilities[1]"
        assert info.value.code == "duplicate-capability"

    def test_filesystem_may_repeat_with_different_access(self) -> None:
        built = spec(
            Filesystem(FsAccess.READ_WRITE, ("/out",)),
            Filesystem(FsAccess.READ, ("/data",)),
            LaunchWorkload(),
        )
        assert len(built.capabilities) == 2

    def test_filesystem_same_access_twice_is_refused(self) -> None:
        with pytest.raises(ContractError) as info:
            spec(
                Filesystem(FsAccess.READ, ("/a",)),
                Filesystem(FsAccess.READ, ("/b",)),
                LaunchWorkload(),
            )
        assert info.value.code == "duplicate-capability"

    def test_root_in_two_filesystem_capabilities_is_refused(self) -> None:
        with pytest.raises(ContractError) as info:
            spec(
                Filesystem(FsAccess.READ, ("/a",)),
                Filesystem(FsAccess.WRITE, ("/a",)),
                LaunchWorkload(),
            )
        assert info.value.code == "duplicate-root"

    def test_duplicate_controls(self) -> None:
        with pytest.raises(ContractError) as info:
            spec(LaunchWorkload(), TempRoot(), LaunchWorkload())
        assert (info.value.path, info.value.code) == ("controls[2]", "duplicate-control")

    def test_expose_path_per_destination(self) -> None:
        one = ExposePath("/s1", "/d", FsAccess.READ)
        two = ExposePath("/s2", "/d", FsAccess.READ)
        with pytest.raises(ContractError) as info:
            spec(LaunchWorkload(), one, two)
        assert info.value.code == "duplicate-control"
        assert (
            len(spec(LaunchWorkload(), one, ExposePath("/s2", "/e", FsAccess.READ)).controls) == 3
        )

    def test_commit_and_discard_conflict(self) -> None:
        with pytest.raises(ContractError) as info:
            spec(LaunchWorkload(), CommitArtifact(Durability.SYNCED), DiscardArtifact())
        assert info.value.code == "conflicting-controls"

    def test_order_of_capabilities_and_controls_does_not_change_the_spec(self) -> None:
        items = (
            InheritedFds(FdsOnly((3,))),
            Environment(EnvPolicy.of({"A": "1"})),
            ChildSpawn(SpawnPolicy.DENY_NEW_TASKS),
            Filesystem(FsAccess.READ, ("/a",)),
            Kill(KillTarget.RUN_TREE, KillGuarantee.ATOMIC),
            LaunchWorkload(),
            CaptureStreams(StdStreams.capture_out_err()),
        )
        forward = spec(*items)
        backward = spec(*reversed(items))
        assert forward == backward
        assert forward.encode() == backward.encode()
        assert BoundarySpec.from_value(canonical.decode(forward.encode())) == forward


class TestStrictDecoding:
    def test_unknown_key(self) -> None:
        value = ChildSpawn(SpawnPolicy.DENY_NEW_TASKS).to_value()
        value["child_spawn"]["extra"] = 1  # type: ignore[index]
        with pytest.raises(ContractError) as info:
            capability_from_value(value)
        assert info.value.path == "capability.child_spawn.extra"

    def test_bad_variant_lists_choices(self) -> None:
        with pytest.raises(ContractError) as info:
            capability_from_value({"child_spawn": {"policy": "fork_freely"}})
        assert str(info.value) == (
            "capability.child_spawn.policy: expected one of deny_new_tasks, "
            "allow_threads_within_boundary, allow_descendants_within_boundary "
            "(got 'fork_freely')"
        )

    def test_unsorted_set_is_not_canonical(self) -> None:
        with pytest.raises(ContractError) as info:
            capability_from_value(
                {"filesystem": {"access": "read", "roots": ["/b", "/a"], "recursive": True}}
            )
        assert info.value.code == "not-canonical"

    def test_unit_control_with_data_is_refused(self) -> None:
        with pytest.raises(ContractError):
            control_from_value({"launch_workload": {}})

    def test_bool_is_not_an_int(self) -> None:
        with pytest.raises(ContractError) as info:
            capability_from_value({"inherited_fds": {"policy": {"only": [True]}}})
        assert info.value.code == "wrong-type"

    def test_unsorted_spec_value_is_refused(self) -> None:
        built = spec(LaunchWorkload(), TempRoot())
        value = built.to_value()
        value["controls"] = list(reversed(value["controls"]))  # type: ignore[arg-type]
        with pytest.raises(ContractError) as info:
            BoundarySpec.from_value(value)
        assert info.value.code == "not-canonical"
