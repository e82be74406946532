"""Pure tests: the launch body wire form, the envelope, the gate, the state machine, capture."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bvisor import canonical
from bvisor.contract import mechanisms as mech
from bvisor.contract.lowering import lowering_digest
from bvisor.launcher.host.capture import LineSplitter, StreamSink
from bvisor.launcher.process.verify import Refusal, verify_body
from bvisor.launcher.wire import channel, envelope, states
from bvisor.launcher.wire.protocol import (
    DescriptorKind,
    DescriptorRole,
    DescriptorShape,
    DescriptorSlot,
    LaunchBody,
    ProtocolError,
)
from tests.launcher.conftest import ZERO, deny_new_tasks, schedule

_EXE = DescriptorSlot(10, DescriptorRole.TARGET_EXE, DescriptorShape(DescriptorKind.REGULAR, False))


def _body(
    *,
    extra: tuple[tuple[mech.Primitive, mech.Params], ...] = (),
    table: tuple[DescriptorSlot, ...] = (_EXE,),
    env: tuple[mech.EnvSource, ...] = (mech.EnvSource("PATH", "/bin", None),),
    secrets: tuple[tuple[str, str], ...] = (),
    keep: tuple[int, ...] = (0, 1, 2),
) -> LaunchBody:
    planned: list[tuple[mech.Primitive, mech.Params]] = [
        (mech.AMBIENT_SCRUB, mech.AmbientScrub(env, keep, False)),
        (mech.NO_NEW_PRIVS, mech.NoParams()),
        (mech.SECCOMP, deny_new_tasks()),
        (mech.EXEC, mech.Exec("/bin/sh", ("sh", "-c", "true"))),
        *extra,
    ]
    entries, params = schedule([(p, v.to_value()) for p, v in planned])
    return LaunchBody(
        attempt_id=bytes([9]) * 32,
        plan_id=bytes([1]) * 32,
        h_a=bytes([2]) * 32,
        h_p=bytes([3]) * 32,
        h_l=lowering_digest(entries),
        lowering=entries,
        params=params,
        descriptor_table=table,
        secrets=secrets,
    )


def test_seed_shaped_body_round_trips_and_verifies() -> None:
    body = _body()
    assert LaunchBody.decode(body.encode()) == body
    verified = verify_body(body)
    seccomp = verified.params[mech.SECCOMP.id]
    assert seccomp == mech.Seccomp(True, False, False)
    assert verified.exe_slot == 10


def test_every_mechanism_s_parameters_round_trip() -> None:
    # The typed parameters are what both sides read: each class decodes what it encodes.
    values: list[mech.Params] = [
        mech.UserNamespace(1000, 1000),
        mech.CgroupLeaf("/sys/fs/cgroup/unified/x", (("memory", "/a"), ("pids", "/b"))),
        mech.PidsLimit(9, "v1"),
        mech.MemoryLimit(1 << 30, "v2"),
        mech.Rootfs(
            (
                mech.BindMount("/usr", "/usr", "read", False),
                mech.DevMount("/dev", ("null", "tty"), 1 << 20, True),
                mech.ProcMount("/proc"),
                mech.TmpfsMount("/tmp", 1 << 20, 0o1777),
                mech.DirMount("/tmp/home", 0o700),
            ),
            "/tmp/home",
        ),
        mech.OomScore(1000),
        mech.AmbientScrub((mech.EnvSource("T", None, "lease"),), (0, 1, 2, 7), True),
        mech.LandlockApply(3, (mech.PathRule("/srv", "read"),), (mech.PathRule("/", "list"),), ()),
        mech.LandlockScope(("signal",)),
        mech.Seccomp(False, True, True),
        mech.Exec("/bin/sh", ("sh",)),
        mech.StreamCapture(True, True, False, 16),
        mech.WallBudget(5),
        mech.KillGuarantee("atomic"),
    ]
    for value in values:
        wire = canonical.decode(canonical.encode(value.to_value()))
        assert type(value).from_value(wire) == value


@pytest.mark.parametrize(
    "mutate, field",
    [
        (lambda v: v.pop("h_l"), "missing"),
        (lambda v: v.__setitem__("h_a", b"short"), "body.h_a"),
        (lambda v: v["descriptor_table"][0].__setitem__("slot_index", -1), "slot_index"),
        (lambda v: v["descriptor_table"][0].__setitem__("role", "Root"), "role"),
        (lambda v: v["descriptor_table"][0].__setitem__("path", "/x"), "must not name a path"),
        (lambda v: v.__setitem__("test_hooks", ["skip_all"]), "unknown hooks"),
        (lambda v: v.__setitem__("secrets", [["b", "1"], ["a", "2"]]), "sorted"),
        (lambda v: v.__setitem__("secrets", [["a"]]), "reference, value"),
    ],
)
def test_strict_decoding_names_the_field(mutate: object, field: str) -> None:
    value = _body().to_value()
    mutate(value)  # type: ignore[operator]
    with pytest.raises(ProtocolError, match=field):
        LaunchBody.from_value(value)


def test_a_mount_of_an_unknown_kind_is_refused() -> None:
    wire = mech.Rootfs((mech.ProcMount("/proc"),), "/").to_value()
    wire["mounts"][0]["kind"] = "overlay"  # type: ignore[index]
    with pytest.raises(mech.ContractError, match="kind"):
        mech.Rootfs.from_value(wire)


@pytest.mark.parametrize(
    "body, code",
    [
        (lambda: _body(table=()), "descriptor-table-invalid"),
        (lambda: _body(keep=(0, 1, 2, 10)), "descriptor-table-invalid"),
        (
            lambda: _body(env=(mech.EnvSource("T", None, "lease"),)),
            "secrets-mismatch",
        ),
        (lambda: _body(secrets=(("x", "y"),)), "secrets-mismatch"),
        (
            lambda: _body(extra=((mech.NETNS, mech.NoParams()),)),
            "lowering-inconsistent",  # a network namespace needs its user namespace
        ),
        (
            lambda: _body(
                extra=(
                    (
                        mech.ROOTFS,
                        mech.Rootfs((mech.BindMount("/srv", "/srv", "read", True),), "/"),
                    ),
                    (mech.PIDNS, mech.NoParams()),
                )
            ),
            "descriptor-table-invalid",  # a required root with no fd
        ),
    ],
)
def test_verify_refusals(body: object, code: str) -> None:
    with pytest.raises(Refusal) as info:
        verify_body(body())  # type: ignore[operator]
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


@given(st.integers(min_value=1, max_value=2**64 - 1))
def test_the_gate_carries_the_deadline_exactly(deadline_ns: int) -> None:
    assert channel.parse_gate(channel.gate_message(deadline_ns)) == deadline_ns


def test_a_gate_without_a_deadline_opens_with_none() -> None:
    assert channel.parse_gate(channel.gate_message(None)) is None


@pytest.mark.parametrize(
    "said",
    [b"", b"G", b"G" + bytes(7), b"X" + bytes(8), channel.gate_message(5) + b"!"],
    ids=["closed", "opening-only", "cut", "not-an-opening", "too-long"],
)
def test_anything_but_an_opening_opens_nothing(said: bytes) -> None:
    """The launcher creates no child unless the gate said exactly an opening: a host that
    could not record the plan closes it (no bytes), and nothing else may pass for one."""
    with pytest.raises(channel.GateError):
        channel.parse_gate(said)
