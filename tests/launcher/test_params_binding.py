"""The launcher obeys the plan's parameters, and only them: the schedule is the program.

The launch body carries each lowering entry's typed parameters and there is no separate
"target": each mechanism reads its own parameters, re-hashed against the entry's
``param_digest`` (bound into h_l, hence plan_id). So a host that built the wrong launch,
or a body edited on the way, can only (a) change parameters, which breaks a digest, or
(b) hand over fds the parameters do not name, which the descriptor table check refuses.
Every case must be refused with its own code, and on the real launcher the workload
must never run.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bvisor import canonical
from bvisor.contract import mechanisms as mech
from bvisor.contract.lowering import lowering_digest, param_digest
from bvisor.launcher.host.launch import AuthorityFd, run_launcher
from bvisor.launcher.process.verify import Refusal, verify_body
from bvisor.launcher.wire.protocol import (
    DescriptorKind,
    DescriptorRole,
    DescriptorShape,
    DescriptorSlot,
    LaunchBody,
    LaunchPlan,
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
        seccomp=mech.Seccomp(deny_new_tasks=False, deny_sockets=True, threads_only=False),
        # /usr and /etc as roots here, so the unedited body can really run /bin/sh.
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


Edit = Callable[[LaunchBody], LaunchBody]


def _index(body: LaunchBody, entry_id: str) -> int:
    return next(i for i, e in enumerate(body.lowering) if e.id == entry_id)


def _with_params(body: LaunchBody, entry_id: str, params: canonical.Value) -> LaunchBody:
    """New params for one entry, the entry's digest left as the plan made it."""
    all_params = list(body.params)
    all_params[_index(body, entry_id)] = params
    return dataclasses.replace(body, params=tuple(all_params))


def _edited(
    entry_id: str, edit: Callable[[dict[str, object]], None]
) -> Callable[[LaunchBody], LaunchBody]:
    def apply(body: LaunchBody) -> LaunchBody:
        value = canonical.decode(canonical.encode(body.params[_index(body, entry_id)]))
        assert isinstance(value, dict)
        edit(value)
        return _with_params(body, entry_id, value)

    return apply


PARAM_EDITS: list[tuple[str, Edit]] = [
    ("argv", _edited(mech.EXEC.id, lambda v: v.__setitem__("argv", ["sh", "-c", "id"]))),
    ("environment", _edited(mech.AMBIENT_SCRUB.id, lambda v: v.__setitem__("env", []))),
    ("kept fds", _edited(mech.AMBIENT_SCRUB.id, lambda v: v.__setitem__("keep_fds", [0, 1, 2, 9]))),
    ("seccomp", _edited(mech.SECCOMP.id, lambda v: v.__setitem__("deny_sockets", False))),
    ("uid/gid maps", _edited(mech.USERNS.id, lambda v: v.__setitem__("uid", 12345))),
    (
        "landlock root accesses",
        _edited(
            mech.LANDLOCK.id,
            lambda v: v.__setitem__(
                "rules",
                [dict(r, access="write") for r in v["rules"]],  # type: ignore[attr-defined]
            ),
        ),
    ),
    ("landlock scope", _edited(mech.LANDLOCK.id, lambda v: v.__setitem__("scope", ["signal"]))),
    ("landlock abi_floor", _edited(mech.LANDLOCK.id, lambda v: v.__setitem__("abi_floor", 5))),
]


def test_the_consistent_body_verifies(planned: tuple[LaunchPlan, Auth]) -> None:
    verify_body(planned[0].body)


@pytest.mark.parametrize("what, edit", PARAM_EDITS, ids=[name for name, _ in PARAM_EDITS])
def test_any_parameter_other_than_the_plan_s_is_refused(
    planned: tuple[LaunchPlan, Auth], what: str, edit: Edit
) -> None:
    with pytest.raises(Refusal) as info:
        verify_body(edit(planned[0].body))
    assert info.value.code == "lowering-params-digest-mismatch", (what, info.value)


def _extra_root(body: LaunchBody, path: str, writable: bool = False) -> LaunchBody:
    slot = DescriptorSlot(
        99, DescriptorRole.FS_ROOT, DescriptorShape(DescriptorKind.DIRECTORY, writable), path
    )
    return dataclasses.replace(body, descriptor_table=(*body.descriptor_table, slot))


def test_a_root_the_parameters_do_not_name_is_refused(planned: tuple[LaunchPlan, Auth]) -> None:
    with pytest.raises(Refusal) as info:
        verify_body(_extra_root(planned[0].body, "/root"))
    assert info.value.code == "descriptor-table-invalid"
    assert "/root" in info.value.detail


def test_a_writable_root_fd_is_refused(planned: tuple[LaunchPlan, Auth]) -> None:
    body = planned[0].body
    table = tuple(
        dataclasses.replace(s, expected=DescriptorShape(s.expected.kind, True))
        if s.role is DescriptorRole.FS_ROOT and s.path == "/usr"
        else s
        for s in body.descriptor_table
    )
    with pytest.raises(Refusal) as info:
        verify_body(dataclasses.replace(body, descriptor_table=table))
    assert info.value.code == "descriptor-table-invalid"


def test_a_missing_parameter_set_is_refused(planned: tuple[LaunchPlan, Auth]) -> None:
    body = planned[0].body
    with pytest.raises(Refusal) as info:
        verify_body(dataclasses.replace(body, params=body.params[:-1]))
    assert info.value.code == "lowering-params-invalid"


def _with_matching_digest(body: LaunchBody, entry_id: str, params: canonical.Value) -> LaunchBody:
    """New params *and* a matching entry digest and h_l: only their shape can be wrong."""
    index = _index(body, entry_id)
    entries = list(body.lowering)
    entries[index] = dataclasses.replace(entries[index], param_digest=param_digest(params))
    return dataclasses.replace(
        _with_params(body, entry_id, params), lowering=tuple(entries), h_l=lowering_digest(entries)
    )


def test_malformed_params_with_a_matching_digest_are_refused(
    planned: tuple[LaunchPlan, Auth],
) -> None:
    body = _with_matching_digest(planned[0].body, mech.SECCOMP.id, {"deny_new_tasks": 1})
    with pytest.raises(Refusal) as info:
        verify_body(body)
    assert info.value.code == "lowering-params-invalid"


def test_params_with_matching_digests_still_verify(planned: tuple[LaunchPlan, Auth]) -> None:
    """Control: a consistent change (digests redone, as a new plan would) verifies; the
    binding is the digest chain up to h_l and plan_id, not a blanket rejection."""
    seccomp = mech.Seccomp(True, True, False).to_value()
    verify_body(_with_matching_digest(planned[0].body, mech.SECCOMP.id, seccomp))


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
    widened = _extra_root(plan.body, "/root")
    extra = os.open("/root", os.O_PATH | os.O_CLOEXEC)
    try:
        observation = run_launcher(
            launcher_path, LaunchPlan(widened), [*auth.fds, AuthorityFd(99, extra)]
        )
    finally:
        os.close(extra)
    assert observation.terminal == "SetupRefused", observation.notes
    assert observation.refusal_code() == "descriptor-table-invalid", observation.notes
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
