"""Pure tests: the launch body wire form, the envelope, the state machine, capture."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bvisor import canonical
from bvisor.contract import mechanisms as mech
from bvisor.launcher.host.capture import LineSplitter, StreamSink
from bvisor.launcher.process.verify import Refusal, verify_body
from bvisor.launcher.wire import envelope, states
from bvisor.launcher.wire.protocol import (
    CgroupPlacement,
    DescriptorKind,
    DescriptorRole,
    DescriptorShape,
    DescriptorSlot,
    LandlockRequest,
    LandlockRule,
    LaunchBody,
    NetworkNamespaceRequest,
    ProtocolError,
    SeccompRequest,
    TargetSpec,
    UserNamespaceRequest,
)
from tests.launcher.conftest import ZERO, schedule


def _body(**target_changes: object) -> LaunchBody:
    entries, params = schedule(
        [
            (mech.AMBIENT_SCRUB, {"env": [["PATH", {"literal": "/bin"}]], "keep_fds": [0, 1, 2]}),
            (mech.SECCOMP, {"deny_new_tasks": True, "deny_sockets": False}),
            (mech.EXEC, {"exe": "/bin/sh", "argv": ["sh", "-c", "true"]}),
        ]
    )
    from bvisor.contract.lowering import lowering_digest

    target = TargetSpec(
        argv=("sh", "-c", "true"),
        envp=(("PATH", "/bin"),),
        exe_slot=10,
        user_namespace=None,
        network_namespace=None,
        seccomp=SeccompRequest.deny_new_tasks(),  # type: ignore[operator]
    )
    if target_changes:
        import dataclasses

        target = dataclasses.replace(target, **target_changes)  # type: ignore[arg-type]
    return LaunchBody(
        attempt_id=bytes([9]) * 32,
        plan_id=bytes([1]) * 32,
        h_a=bytes([2]) * 32,
        h_p=bytes([3]) * 32,
        h_l=lowering_digest(entries),
        lowering=entries,
        params=params,
        descriptor_table=(
            DescriptorSlot(
                10, DescriptorRole.TARGET_EXE, DescriptorShape(DescriptorKind.REGULAR, False)
            ),
        ),
        target=target,
    )


def test_seed_shaped_body_round_trips_and_verifies() -> None:
    body = _body()
    assert LaunchBody.decode(body.encode()) == body
    verify_body(body)
    assert SeccompRequest.deny_new_tasks() == SeccompRequest(True, False)  # type: ignore[operator]
    assert body.target.seccomp is not None and body.target.seccomp.deny_new_tasks is True


def test_full_target_round_trips() -> None:
    target = TargetSpec(
        argv=("a",),
        envp=(("K", "v"),),
        exe_slot=10,
        user_namespace=UserNamespaceRequest("0 1000 1", "0 1000 1"),
        network_namespace=NetworkNamespaceRequest(),
        seccomp=SeccompRequest(False, True),
        landlock=LandlockRequest(3, (LandlockRule(11, "read"), LandlockRule(12, "read_write"))),
        cgroup=CgroupPlacement(13, (14, 15)),
        keep_fds=(16,),
    )
    assert TargetSpec.from_value(canonical.decode(canonical.encode(target.to_value()))) == target


@pytest.mark.parametrize(
    "mutate, field",
    [
        (lambda v: v.pop("h_l"), "missing"),
        (lambda v: v.__setitem__("h_a", b"short"), "body.h_a"),
        (lambda v: v["target"].__setitem__("exe_slot", -1), "body.target.exe_slot"),
        (lambda v: v["target"].__setitem__("argv", []), "argv"),
        (lambda v: v["target"]["seccomp"].__setitem__("deny_new_tasks", 1), "deny_new_tasks"),
        (lambda v: v["descriptor_table"][0].__setitem__("role", "Root"), "role"),
        (lambda v: v.__setitem__("test_hooks", ["skip_all"]), "unknown hooks"),
        (lambda v: v["target"].__setitem__("envp", [["A=B", "c"]]), "name"),
        (lambda v: v["target"].__setitem__("envp", [["A", "1"], ["A", "2"]]), "duplicate"),
    ],
)
def test_strict_decoding_names_the_field(mutate: object, field: str) -> None:
    value = _body().to_value()
    mutate(value)  # type: ignore[operator]
    with pytest.raises(ProtocolError, match=field):
        LaunchBody.from_value(value)


def test_user_namespace_maps_are_validated() -> None:
    with pytest.raises(ProtocolError, match="uid_map"):
        UserNamespaceRequest("0 0", "0 0 1")
    with pytest.raises(ProtocolError, match="gid_map"):
        UserNamespaceRequest("0 0 1", "0 0 0")


@pytest.mark.parametrize(
    "changes, code",
    [
        ({"seccomp": None}, "target-lowering-mismatch"),
        ({"network_namespace": NetworkNamespaceRequest()}, "target-lowering-mismatch"),
        ({"no_new_privs": False}, "target-invalid"),
        ({"exe_slot": 11}, "descriptor-table-invalid"),
        ({"keep_fds": (10,)}, "descriptor-table-invalid"),
    ],
)
def test_verify_refusals(changes: dict[str, object], code: str) -> None:
    with pytest.raises(Refusal) as info:
        verify_body(_body(**changes))
    assert info.value.code == code


@given(st.binary(max_size=4096))
def test_envelope_round_trip(body: bytes) -> None:
    assert envelope.open_envelope(envelope.seal(body)) == body


@given(st.binary(max_size=256), st.integers(min_value=0, max_value=4096))
def test_envelope_rejects_any_single_bit_flip(body: bytes, position: int) -> None:
    sealed = bytearray(envelope.seal(body))
    index = position % len(sealed)
    sealed[index] ^= 0x01
    with pytest.raises(envelope.EnvelopeError):
        envelope.open_envelope(bytes(sealed))


def test_envelope_codes_are_distinct() -> None:
    sealed = envelope.seal(b"abc")
    cases = {
        "envelope-truncated": sealed[:10],
        "envelope-bad-magic": b"Z" + sealed[1:],
        "envelope-unknown-version": sealed[:8]
        + struct.pack(">H", envelope.ENVELOPE_VERSION + 1)
        + sealed[10:],
        "envelope-length-mismatch": sealed[:-1],
        "envelope-digest-mismatch": sealed[:-1] + b"x",
    }
    for code, data in cases.items():
        with pytest.raises(envelope.EnvelopeError) as info:
            envelope.open_envelope(data)
        assert info.value.code == code


def test_state_machine_walks() -> None:
    assert states.is_legal_walk(states.HAPPY_PATH)
    assert states.is_legal_walk(["LauncherStarted", "SetupRefused"])
    assert states.is_legal_walk(
        ["LauncherStarted", "IdentityVerified", "PlanVerified", "SetupFaulted"]
    )
    assert not states.is_legal_walk(["LauncherStarted", "PlanVerified", "SetupRefused"])
    assert not states.is_legal_walk([*list(states.HAPPY_PATH[:5]), "SetupRefused"])
    assert not states.is_legal_walk([*list(states.HAPPY_PATH), "SetupFaulted"])
    assert not states.is_legal_walk(states.HAPPY_PATH[:-1])
    assert states.is_legal_walk(states.HAPPY_PATH[:-1], require_terminal=False)
    assert states.walk_error(["Bogus"]) == "line 0: 'Bogus' is not a launcher state"


def test_stream_sink_caps_and_counts() -> None:
    seen: list[bytes] = []
    sink = StreamSink(5, seen.append)
    for chunk in (b"abc", b"def", b"ghi"):
        sink.feed(chunk)
    assert sink.data() == b"abcde" and sink.total == 9 and sink.truncated
    assert b"".join(seen) == b"abcdefghi"
    exact = StreamSink(3)
    exact.feed(b"abc")
    assert not exact.truncated


def test_line_splitter_keeps_partial_lines() -> None:
    splitter = LineSplitter()
    splitter.feed(b"Launcher")
    splitter.feed(b"Started\n# a note\nparti")
    splitter.close()
    assert splitter.lines == ["LauncherStarted", "# a note", "parti"]


def test_zero_digest_constant() -> None:
    assert bytes(32) == ZERO


def test_confinement_unavailable_only_for_enosys_and_eopnotsupp() -> None:
    from bvisor.launcher.host.launch import notes_confinement_unavailable

    assert notes_confinement_unavailable(["fault mechanism=landlock errno=38 name=ENOSYS: x"])
    assert notes_confinement_unavailable(["fault mechanism=seccomp errno=95 name=EOPNOTSUPP: x"])
    assert not notes_confinement_unavailable(["fault mechanism=landlock errno=1 name=EPERM: x"])
    assert not notes_confinement_unavailable(["fault mechanism=userns errno=22 name=EINVAL: x"])
    assert not notes_confinement_unavailable(["fault mechanism=exec errno=38 name=ENOSYS: x"])
