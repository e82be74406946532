"""The host side reads lowering parameters through one strict parser: malformed or
unexpected parameters stop a run before anything is opened or spawned."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from bvisor.contract import SpawnPolicy
from bvisor.launcher.host.probe import linux_profile
from bvisor.launcher.wire.lowered import LoweringParamsError, lowered_params
from bvisor.planner.planning import plan_boundary
from tests.e2e.helpers import spawn_spec


@dataclass
class _Entry:
    id: str


@dataclass
class _Primitive:
    entry: _Entry
    params: object


@dataclass
class _Plan:
    lowering: tuple[_Primitive, ...]


def _real_plan_primitives() -> list[_Primitive]:
    plan = plan_boundary(
        spawn_spec(SpawnPolicy.ALLOW_DESCENDANTS_WITHIN_BOUNDARY, ["-c", "true"]),
        linux_profile(None),
    )
    return [_Primitive(_Entry(p.entry.id), p.params) for p in plan.lowering]


def test_a_real_plan_parses() -> None:
    params = lowered_params(_Plan(tuple(_real_plan_primitives())))  # type: ignore[arg-type]
    assert params.exe == "/bin/sh" and params.argv[1:] == ("-c", "true")
    # Descendants are contained by the PID namespace where the host has one, else a cgroup.
    assert params.pidns or (params.cgroup is not None and params.kill_guarantee is not None)


@pytest.mark.parametrize(
    "entry_id, params, message",
    [
        ("linux.exec.v1", {"exe": 7, "argv": []}, "expected a string"),
        ("linux.exec.v1", {"argv": ["sh"]}, "missing required key"),
        (
            "linux.ambient.scrub.v2",
            {
                "env": [{"name": "A", "literal": None, "lease": None}],
                "keep_fds": [0, 1, 2],
                "tty": False,
            },
            "exactly one of literal and lease",
        ),
        ("linux.budget.pids.v1", {"limit": 4, "hierarchy": "v3"}, "v1, v2"),
        ("linux.budget.wall.v2", {"limit_micros": True}, "expected an integer"),
        (
            "linux.landlock.apply.v2",
            {
                "abi_floor": 3,
                "rules": [{"path": "/x", "access": "execute"}],
                "inside": [],
                "scope": [],
            },
            "list, read, write",
        ),
        ("linux.rootfs.v1", {"mounts": [{"kind": "overlay"}], "cwd": "/"}, "kind"),
    ],
)
def test_malformed_params_fail_closed(entry_id: str, params: object, message: str) -> None:
    primitives = [p for p in _real_plan_primitives() if p.entry.id != entry_id]
    primitives.append(_Primitive(_Entry(entry_id), params))
    with pytest.raises(LoweringParamsError, match=message):
        lowered_params(_Plan(tuple(primitives)))  # type: ignore[arg-type]


def test_a_plan_without_exec_is_refused() -> None:
    primitives = [p for p in _real_plan_primitives() if p.entry.id != "linux.exec.v1"]
    with pytest.raises(LoweringParamsError, match=r"no linux\.exec\.v1"):
        lowered_params(_Plan(tuple(primitives)))  # type: ignore[arg-type]
