"""Every refusal is distinct, exits 3, and the workload never runs.

The workload would create a marker file; after each refused launch the file must not
exist (an oracle on disk, outside the launcher's own report).
"""

from __future__ import annotations

import dataclasses
import os
import struct
from collections.abc import Callable
from pathlib import Path

import pytest

from bvisor import canonical
from bvisor.contract import mechanisms as mech
from bvisor.contract.lowering import LoweringEntry, lowering_digest, param_digest
from bvisor.launcher.host.launch import (
    AuthorityFd,
    LaunchObservation,
    LaunchRefused,
    run_launcher,
    run_launcher_payload,
)
from bvisor.launcher.wire import envelope
from bvisor.launcher.wire.protocol import (
    DescriptorKind,
    DescriptorRole,
    DescriptorShape,
    DescriptorSlot,
    LaunchBody,
    LaunchPlan,
)
from tests.launcher.conftest import EXE_SLOT, ZERO, Auth, build_plan


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "workload-ran"


def _plan(marker: Path) -> tuple[LaunchPlan, Auth]:
    return build_plan("/bin/sh", ["sh", "-c", f"echo ran > {marker}"])


def _assert_refused(obs: LaunchObservation, code: str, marker: Path) -> None:
    assert obs.terminal == "SetupRefused", (obs.terminal, obs.notes)
    assert obs.refusal_code() == code, obs.notes
    assert obs.launcher_exit == 3
    assert obs.workload_pid is None
    assert "ChildCreated" not in obs.transcript
    assert not marker.exists(), "the workload ran although the launch was refused"


def test_control_an_accepted_plan_does_run(launcher_path: str, marker: Path) -> None:
    plan, auth = _plan(marker)
    obs = run_launcher(launcher_path, plan, auth.fds)
    auth.close()
    assert obs.exec_succeeded()
    assert marker.read_text() == "ran\n"


def _payload_case(name: str) -> Callable[[bytes], bytes]:
    def truncated(p: bytes) -> bytes:
        return p[:20]

    def bad_magic(p: bytes) -> bytes:
        return b"XXLAUNCH" + p[8:]

    def unknown_version(p: bytes) -> bytes:
        return p[:8] + struct.pack(">H", 99) + p[10:]

    def length_mismatch(p: bytes) -> bytes:
        return p + b"\0"

    def digest_mismatch(p: bytes) -> bytes:
        return p[:-1] + bytes([p[-1] ^ 1])

    return {
        "envelope-truncated": truncated,
        "envelope-bad-magic": bad_magic,
        "envelope-unknown-version": unknown_version,
        "envelope-length-mismatch": length_mismatch,
        "envelope-digest-mismatch": digest_mismatch,
    }[name]


@pytest.mark.parametrize(
    "code",
    [
        "envelope-truncated",
        "envelope-bad-magic",
        "envelope-unknown-version",
        "envelope-length-mismatch",
        "envelope-digest-mismatch",
    ],
)
def test_envelope_refusals(launcher_path: str, marker: Path, code: str) -> None:
    plan, auth = _plan(marker)
    payload = _payload_case(code)(envelope.seal(plan.body.encode()))
    obs = run_launcher_payload(launcher_path, payload, auth.fds)
    auth.close()
    _assert_refused(obs, code, marker)


def test_unsealed_memfd_is_refused(launcher_path: str, marker: Path) -> None:
    plan, auth = _plan(marker)
    obs = run_launcher_payload(
        launcher_path, envelope.seal(plan.body.encode()), auth.fds, seal=False
    )
    auth.close()
    _assert_refused(obs, "plan-unsealed", marker)


def test_malformed_body_is_refused(launcher_path: str, marker: Path) -> None:
    plan, auth = _plan(marker)
    value = plan.body.to_value()
    value["surprise"] = 1
    obs = run_launcher_payload(launcher_path, envelope.seal(canonical.encode(value)), auth.fds)
    auth.close()
    _assert_refused(obs, "body-malformed", marker)


def _with_body(plan: LaunchPlan, **changes: object) -> LaunchPlan:
    return LaunchPlan(dataclasses.replace(plan.body, **changes))  # type: ignore[arg-type]


def test_h_l_mismatch_is_refused(launcher_path: str, marker: Path) -> None:
    plan, auth = _plan(marker)
    obs = run_launcher(launcher_path, _with_body(plan, h_l=bytes(32)), auth.fds)
    auth.close()
    _assert_refused(obs, "lowering-digest-mismatch", marker)


def test_unknown_lowering_entry_is_refused(launcher_path: str, marker: Path) -> None:
    plan, auth = _plan(marker)
    entries = (LoweringEntry("linux.mystery.v1", 1, 3, ZERO, ZERO), *plan.body.lowering)
    obs = run_launcher(
        launcher_path, _with_body(plan, lowering=entries, h_l=lowering_digest(entries)), auth.fds
    )
    auth.close()
    _assert_refused(obs, "lowering-unknown-entry", marker)


def test_wrong_entry_version_is_refused(launcher_path: str, marker: Path) -> None:
    plan, auth = _plan(marker)
    entries = tuple(
        LoweringEntry(e.id, 2, e.phase_code, ZERO, ZERO) if e.id == mech.EXEC.id else e
        for e in plan.body.lowering
    )
    obs = run_launcher(
        launcher_path, _with_body(plan, lowering=entries, h_l=lowering_digest(entries)), auth.fds
    )
    auth.close()
    _assert_refused(obs, "lowering-unknown-entry", marker)


def test_a_policy_entry_after_the_seccomp_filter_is_refused(
    launcher_path: str, marker: Path
) -> None:
    # The filter must be installed last: a Landlock domain entered after it could be
    # made to fail by the filter, or the filter relied on to guard a later step.
    plan, auth = build_plan(
        "/bin/sh", ["sh", "-c", f"echo ran > {marker}"], seccomp=mech.Seccomp(True, False, False)
    )
    scope = mech.LandlockScope(("signal",)).to_value()
    extra = LoweringEntry(
        mech.LANDLOCK_SCOPE.id,
        mech.LANDLOCK_SCOPE.version,
        int(mech.LANDLOCK_SCOPE.phase),
        param_digest(scope),
        mech.decl_digest(mech.LANDLOCK_SCOPE),
    )
    at = next(i for i, e in enumerate(plan.body.lowering) if e.id == mech.SECCOMP.id) + 1
    entries = (*plan.body.lowering[:at], extra, *plan.body.lowering[at:])
    params = (*plan.body.params[:at], scope, *plan.body.params[at:])
    body = dataclasses.replace(
        plan.body, lowering=entries, params=params, h_l=lowering_digest(entries)
    )
    obs = run_launcher(launcher_path, LaunchPlan(body), auth.fds)
    auth.close()
    _assert_refused(obs, "lowering-inconsistent", marker)


def test_parameters_that_do_not_decode_are_refused(launcher_path: str, marker: Path) -> None:
    # The digest matches (it is recomputed), but the parameters lack a key their class
    # declares: the launcher never guesses a default.
    plan, auth = build_plan(
        "/bin/sh", ["sh", "-c", f"echo ran > {marker}"], seccomp=mech.Seccomp(True, False, False)
    )
    at = next(i for i, e in enumerate(plan.body.lowering) if e.id == mech.SECCOMP.id)
    broken = {"deny_new_tasks": True, "deny_sockets": False}
    entries = list(plan.body.lowering)
    entries[at] = dataclasses.replace(entries[at], param_digest=param_digest(broken))
    params = list(plan.body.params)
    params[at] = broken
    body = dataclasses.replace(
        plan.body,
        lowering=tuple(entries),
        params=tuple(params),
        h_l=lowering_digest(entries),
    )
    obs = run_launcher(launcher_path, LaunchPlan(body), auth.fds)
    auth.close()
    _assert_refused(obs, "lowering-params-invalid", marker)


def test_a_root_slot_no_parameter_names_is_refused(launcher_path: str, marker: Path) -> None:
    plan, auth = _plan(marker)
    fd = os.open("/etc", os.O_PATH | os.O_CLOEXEC)
    slot = auth.add(fd, DescriptorRole.FS_ROOT, DescriptorKind.DIRECTORY, path="/etc")
    table = (*plan.body.descriptor_table, auth.table[-1])
    assert table[-1].slot_index == slot
    obs = run_launcher(launcher_path, _with_body(plan, descriptor_table=table), auth.fds)
    auth.close()
    _assert_refused(obs, "descriptor-table-invalid", marker)


def test_a_secret_the_environment_does_not_name_is_refused(
    launcher_path: str, marker: Path
) -> None:
    plan, auth = _plan(marker)
    obs = run_launcher(launcher_path, _with_body(plan, secrets=(("stray", "value"),)), auth.fds)
    auth.close()
    _assert_refused(obs, "secrets-mismatch", marker)


def test_missing_exec_entry_is_refused(launcher_path: str, marker: Path) -> None:
    plan, auth = _plan(marker)
    entries = tuple(e for e in plan.body.lowering if e.id != mech.EXEC.id)
    obs = run_launcher(
        launcher_path, _with_body(plan, lowering=entries, h_l=lowering_digest(entries)), auth.fds
    )
    auth.close()
    _assert_refused(obs, "lowering-inconsistent", marker)


def test_wrong_fd_kind_is_refused(launcher_path: str, marker: Path) -> None:
    plan, _auth = _plan(marker)
    _auth.close()
    dir_fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        obs = run_launcher(launcher_path, plan, [AuthorityFd(EXE_SLOT, dir_fd)])
    finally:
        os.close(dir_fd)
    _assert_refused(obs, "handle-mismatch", marker)
    assert any("is a Directory, expected Regular" in n for n in obs.notes)


def test_wrong_fd_mode_is_refused(launcher_path: str, marker: Path, tmp_path: Path) -> None:
    plan, _auth = _plan(marker)
    _auth.close()
    writable = tmp_path / "exe-copy"
    writable.write_bytes(Path("/bin/sh").read_bytes())
    fd = os.open(writable, os.O_RDWR | os.O_CLOEXEC)
    try:
        obs = run_launcher(launcher_path, plan, [AuthorityFd(EXE_SLOT, fd)])
    finally:
        os.close(fd)
    _assert_refused(obs, "handle-mismatch", marker)
    assert any("expected read-only" in n for n in obs.notes)


def test_declared_shape_writable_but_fd_read_only_is_refused(
    launcher_path: str, marker: Path
) -> None:
    plan, auth = build_plan("/bin/sh", ["sh", "-c", f"echo ran > {marker}"], keep_fds=(11,))
    extra_fd = os.open("/etc/passwd", os.O_RDONLY | os.O_CLOEXEC)
    table = (
        *plan.body.descriptor_table,
        DescriptorSlot(11, DescriptorRole.INHERITED, DescriptorShape(DescriptorKind.REGULAR, True)),
    )
    try:
        obs = run_launcher(
            launcher_path,
            _with_body(plan, descriptor_table=table),
            [*auth.fds, AuthorityFd(11, extra_fd)],
        )
    finally:
        os.close(extra_fd)
        auth.close()
    _assert_refused(obs, "handle-mismatch", marker)


def test_cgroup_role_on_a_non_cgroup_dir_is_refused(launcher_path: str, marker: Path) -> None:
    tmp_fd = os.open("/tmp", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        plan, auth = build_plan("/bin/sh", ["sh", "-c", f"echo ran > {marker}"], cgroup_v2=tmp_fd)
        obs = run_launcher(launcher_path, plan, auth.fds)
        auth.close()
    finally:
        os.close(tmp_fd)
    _assert_refused(obs, "handle-mismatch", marker)


def test_table_referencing_unused_slot_is_refused(launcher_path: str, marker: Path) -> None:
    plan, auth = _plan(marker)
    extra_fd = os.open("/etc/passwd", os.O_RDONLY | os.O_CLOEXEC)
    table = (
        *plan.body.descriptor_table,
        DescriptorSlot(
            11,
            DescriptorRole.FS_ROOT,
            DescriptorShape(DescriptorKind.REGULAR, False),
            "/etc/passwd",
        ),
    )
    try:
        obs = run_launcher(
            launcher_path,
            _with_body(plan, descriptor_table=table),
            [*auth.fds, AuthorityFd(11, extra_fd)],
        )
    finally:
        os.close(extra_fd)
        auth.close()
    _assert_refused(obs, "descriptor-table-invalid", marker)


@pytest.mark.parametrize(
    "slots, message",
    [
        ((EXE_SLOT, EXE_SLOT), "used twice"),
        ((-1,), "negative"),
        ((1,), "stdio"),
        ((EXE_SLOT, 12), "not in the descriptor_table"),
        ((), "have no authority fd"),
    ],
)
def test_host_refuses_bad_slots_before_spawning(
    launcher_path: str, marker: Path, slots: tuple[int, ...], message: str
) -> None:
    plan, auth = _plan(marker)
    fd = auth.fds[0].fileno()
    spawned: list[int] = []
    from bvisor.launcher.host.launch import LaunchOptions

    with pytest.raises(LaunchRefused, match=message):
        run_launcher(
            launcher_path,
            plan,
            [AuthorityFd(slot, fd) for slot in slots],
            options=LaunchOptions(on_spawned=spawned.append),
        )
    auth.close()
    assert spawned == []
    assert not marker.exists()


def test_launch_body_rejects_unknown_test_hooks() -> None:
    with pytest.raises(ValueError, match="unknown hooks"):
        LaunchBody(
            attempt_id=ZERO,
            plan_id=ZERO,
            h_a=ZERO,
            h_p=ZERO,
            h_l=ZERO,
            lowering=(),
            params=(),
            descriptor_table=(),
            test_hooks=frozenset({"skip_everything"}),
        )


def test_script_exe_is_refused_clearly(launcher_path: str, marker: Path, tmp_path: Path) -> None:
    script = tmp_path / "script.sh"
    script.write_text(f"#!/bin/sh\necho ran > {marker}\n")
    script.chmod(0o755)
    plan, auth = build_plan(str(script), ["script.sh"])
    obs = run_launcher(launcher_path, plan, auth.fds)
    auth.close()
    _assert_refused(obs, "exe-is-script", marker)
