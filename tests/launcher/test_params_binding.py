"""The launcher obeys the plan's parameters, not just the plan's list of mechanisms.

The launch body carries each lowering entry's parameters; the launcher re-hashes them
against the entry's ``param_digest`` (bound into h_l, hence plan_id) and refuses a target
that says anything else. Each case below is a host that built the wrong target, or a
body edited on the way: every one must be refused with its own code, and on the real
launcher the workload must never run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bvisor import canonical
from bvisor.contract import mechanisms as mech
from bvisor.contract.lowering import lowering_digest, param_digest
from bvisor.launcher.host.launch import run_launcher
from bvisor.launcher.process.verify import Refusal, verify_body
from bvisor.launcher.wire.protocol import (
    DescriptorKind,
    DescriptorRole,
    DescriptorShape,
    DescriptorSlot,
    LandlockRequest,
    LandlockRule,
    LaunchBody,
    LaunchPlan,
    SeccompRequest,
    UserNamespaceRequest,
)
from tests.launcher.conftest import Auth, build_plan


@pytest.fixture
def planned(tmp_path: Path) -> Iterator[tuple[LaunchPlan, Auth]]:
    """A consistent body using every parameterised mechanism the launcher checks."""
    root = tmp_path / "root"
    root.mkdir()
    plan, auth = build_plan(
        "/bin/sh",
        ["sh", "-c", f"echo ran > {tmp_path / 'ran'}"],
        envp=(("PATH", "/usr/bin:/bin"), ("LANG", "C.UTF-8")),
        seccomp=SeccompRequest(deny_new_tasks=False, deny_sockets=True),
        # /usr and /etc as spec roots here, so the unedited body can really run /bin/sh.
        landlock=[
            (str(root), "read"),
            (str(tmp_path), "read_write"),
            ("/usr", "read"),
            ("/etc", "read"),
        ],
        userns=True,
        netns=True,
    )
    yield plan, auth
    auth.close()


def _replace_target(body: LaunchBody, **changes: object) -> LaunchBody:
    return dataclasses.replace(body, target=dataclasses.replace(body.target, **changes))  # type: ignore[arg-type]


def _replace_params(body: LaunchBody, entry_id: str, params: canonical.Value) -> LaunchBody:
    """New params *and* a matching entry digest and h_l: only the target can disagree."""
    index = next(i for i, e in enumerate(body.lowering) if e.id == entry_id)
    entries = list(body.lowering)
    entries[index] = dataclasses.replace(entries[index], param_digest=param_digest(params))
    all_params = list(body.params)
    all_params[index] = params
    return dataclasses.replace(
        body,
        lowering=tuple(entries),
        params=tuple(all_params),
        h_l=lowering_digest(entries),
    )


def _landlock(body: LaunchBody, **changes: object) -> LandlockRequest:
    assert body.target.landlock is not None
    return dataclasses.replace(body.target.landlock, **changes)  # type: ignore[arg-type]


Edit = Callable[[LaunchBody], LaunchBody]

TARGET_EDITS: list[tuple[str, Edit]] = [
    ("argv", lambda b: _replace_target(b, argv=("sh", "-c", "id"))),
    ("environment names", lambda b: _replace_target(b, envp=(("PATH", "/usr/bin:/bin"),))),
    (
        "environment LANG",
        lambda b: _replace_target(b, envp=(("PATH", "/usr/bin:/bin"), ("LANG", "C"))),
    ),
    ("seccomp", lambda b: _replace_target(b, seccomp=SeccompRequest(False, False))),
    (
        "uid/gid maps",
        lambda b: _replace_target(b, user_namespace=UserNamespaceRequest("0 12345 1", "0 0 1")),
    ),
    (
        "landlock root accesses",
        lambda b: _replace_target(
            b,
            landlock=_landlock(
                b,
                rules=tuple(dataclasses.replace(r, access="read_write") for r in _rules(b)),
            ),
        ),
    ),
    ("landlock system roots", lambda b: _with_extra_root(b)),
    ("landlock scope", lambda b: _replace_target(b, landlock=_landlock(b, scope=("signal",)))),
    ("landlock abi_floor", lambda b: _replace_target(b, landlock=_landlock(b, abi_floor=5))),
]


def _with_extra_root(body: LaunchBody) -> LaunchBody:
    """A root the plan never named, declared properly in the table so only params object."""
    slot = DescriptorSlot(
        99, DescriptorRole.FS_ROOT, DescriptorShape(DescriptorKind.DIRECTORY, False)
    )
    widened = dataclasses.replace(body, descriptor_table=(*body.descriptor_table, slot))
    return _replace_target(
        widened, landlock=_landlock(body, rules=(*_rules(body), LandlockRule(99, "read")))
    )


def _rules(body: LaunchBody) -> tuple[LandlockRule, ...]:
    assert body.target.landlock is not None
    return body.target.landlock.rules


def test_the_consistent_body_verifies(planned: tuple[LaunchPlan, Auth]) -> None:
    verify_body(planned[0].body)


@pytest.mark.parametrize("what, edit", TARGET_EDITS, ids=[name for name, _ in TARGET_EDITS])
def test_a_target_other_than_the_params_is_refused(
    planned: tuple[LaunchPlan, Auth], what: str, edit: Edit
) -> None:
    body = edit(planned[0].body)
    with pytest.raises(Refusal) as info:
        verify_body(body)
    assert info.value.code == "target-params-mismatch", info.value
    assert info.value.detail.startswith(what), info.value.detail


def test_params_that_do_not_hash_to_the_entry_are_refused(
    planned: tuple[LaunchPlan, Auth],
) -> None:
    body = planned[0].body
    index = next(i for i, e in enumerate(body.lowering) if e.id == mech.EXEC.id)
    params = list(body.params)
    params[index] = {"exe": "/bin/sh", "argv": ["sh", "-c", "id"]}
    forged = _replace_target(
        dataclasses.replace(body, params=tuple(params)), argv=("sh", "-c", "id")
    )
    with pytest.raises(Refusal) as info:
        verify_body(forged)
    assert info.value.code == "lowering-params-digest-mismatch"
    assert mech.EXEC.id in info.value.detail


def test_a_missing_parameter_set_is_refused(planned: tuple[LaunchPlan, Auth]) -> None:
    body = planned[0].body
    with pytest.raises(Refusal) as info:
        verify_body(dataclasses.replace(body, params=body.params[:-1]))
    assert info.value.code == "lowering-params-invalid"


def test_malformed_params_with_a_matching_digest_are_refused(
    planned: tuple[LaunchPlan, Auth],
) -> None:
    body = _replace_params(planned[0].body, mech.SECCOMP.id, {"deny_new_tasks": 1})
    with pytest.raises(Refusal) as info:
        verify_body(body)
    assert info.value.code == "lowering-params-invalid"


def test_params_and_target_changed_together_still_verify(
    planned: tuple[LaunchPlan, Auth],
) -> None:
    """Control: the check compares target with params; it is not a blanket rejection."""
    body = _replace_params(
        planned[0].body, mech.SECCOMP.id, {"deny_new_tasks": True, "deny_sockets": True}
    )
    verify_body(_replace_target(body, seccomp=SeccompRequest(True, True)))


def test_an_entry_with_a_foreign_declaration_is_refused(planned: tuple[LaunchPlan, Auth]) -> None:
    body = planned[0].body
    entries = tuple(
        dataclasses.replace(e, decl_digest=bytes(32)) if e.id == mech.SECCOMP.id else e
        for e in body.lowering
    )
    forged = dataclasses.replace(body, lowering=entries, h_l=lowering_digest(entries))
    with pytest.raises(Refusal) as info:
        verify_body(forged)
    assert info.value.code == "lowering-unknown-entry"
    assert "decl_digest" in info.value.detail


def test_the_real_launcher_refuses_a_widened_root_before_anything_runs(
    launcher_path: str, tmp_path: Path, planned: tuple[LaunchPlan, Auth]
) -> None:
    plan, auth = planned
    widened = TARGET_EDITS[5][1](plan.body)
    observation = run_launcher(launcher_path, LaunchPlan(widened), auth.fds)
    assert observation.terminal == "SetupRefused", observation.notes
    assert observation.refusal_code() == "target-params-mismatch", observation.notes
    assert observation.launcher_exit == 3
    assert observation.workload_pid is None
    assert not (tmp_path / "ran").exists(), "the workload ran under a target the plan never said"


def test_the_real_launcher_runs_the_consistent_body(
    launcher_path: str, tmp_path: Path, planned: tuple[LaunchPlan, Auth]
) -> None:
    """Control for the test above: the same body, unedited, runs."""
    plan, auth = planned
    observation = run_launcher(launcher_path, plan, auth.fds)
    assert observation.exec_succeeded(), observation.notes
    assert (tmp_path / "ran").read_text() == "ran\n"
