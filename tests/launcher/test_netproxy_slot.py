"""The NetProxy slot: the launcher takes the host's channel exactly when the plan has the
allow list's listener, and only as a socket (pure: verify_body on real launch bodies)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from bvisor.contract import Network, NetworkAllowList
from bvisor.contract.profile import ProfileSnapshot
from bvisor.front.defaults import default_spec
from bvisor.launcher.host.launch_body import PreparedLaunch, prepare_launch
from bvisor.launcher.host.secrets import NoSecrets
from bvisor.launcher.process.verify import Refusal, verify_body
from bvisor.launcher.wire.lowered import lowered_params
from bvisor.launcher.wire.protocol import DescriptorKind, DescriptorRole, DescriptorShape
from bvisor.planner.planning import plan_boundary
from bvisor.planner.rules import v2
from tests.planner.helpers import FIXED_FACTS

# A normal user's host (no cgroup to prepare), able to make the listener.
FACTS = dataclasses.replace(
    FIXED_FACTS,
    pidns=True,
    netns_loopback=True,
    cgroup_v2_base=None,
    cgroup_v2_kill=False,
    cgroup_v1_bases=(),
)


def _prepared(tmp_path: Path, allow: bool) -> PreparedLaunch:
    snapshot = ProfileSnapshot("linux", FACTS, v2.RULES.ceiling(FACTS))
    spec = default_spec(["/bin/true"], cwd=str(tmp_path), snapshot=snapshot)
    if allow:
        caps = tuple(
            Network(NetworkAllowList(("pypi.org:443",))) if isinstance(c, Network) else c
            for c in spec.capabilities
        )
        spec = dataclasses.replace(spec, capabilities=caps)
    plan = plan_boundary(spec, snapshot, v2.RULES)
    return prepare_launch(plan, lowered_params(plan), b"\x07" * 32, NoSecrets(), None)


@pytest.fixture
def allowed(tmp_path: Path) -> Iterator[PreparedLaunch]:
    prepared = _prepared(tmp_path, allow=True)
    yield prepared
    prepared.close()
    assert prepared.netproxy_channel is not None
    prepared.netproxy_channel.close()


def test_the_channel_is_a_socket_slot_of_its_own(allowed: PreparedLaunch) -> None:
    verified = verify_body(allowed.plan.body)
    slots = [s for s in allowed.plan.body.descriptor_table if s.role is DescriptorRole.NET_PROXY]
    assert len(slots) == 1 and verified.netproxy_slot == slots[0].slot_index
    assert slots[0].expected == DescriptorShape(DescriptorKind.SOCKET, True)
    assert allowed.netproxy_channel is not None  # the host's end, for its proxy


def test_a_body_without_the_slot_is_refused(allowed: PreparedLaunch) -> None:
    body = allowed.plan.body
    table = tuple(s for s in body.descriptor_table if s.role is not DescriptorRole.NET_PROXY)
    with pytest.raises(Refusal) as info:
        verify_body(dataclasses.replace(body, descriptor_table=table))
    assert info.value.code == "descriptor-table-invalid" and "NetProxy" in info.value.detail


def test_the_slot_must_be_a_read_write_socket(allowed: PreparedLaunch) -> None:
    body = allowed.plan.body
    for shape in (
        DescriptorShape(DescriptorKind.FIFO, True),
        DescriptorShape(DescriptorKind.SOCKET, False),
    ):
        table = tuple(
            dataclasses.replace(s, expected=shape) if s.role is DescriptorRole.NET_PROXY else s
            for s in body.descriptor_table
        )
        with pytest.raises(Refusal) as info:
            verify_body(dataclasses.replace(body, descriptor_table=table))
        assert info.value.code == "descriptor-table-invalid"


def test_a_plan_without_the_listener_takes_no_channel(
    tmp_path: Path, allowed: PreparedLaunch
) -> None:
    denied = _prepared(tmp_path, allow=False)
    try:
        assert denied.netproxy_channel is None
        verify_body(denied.plan.body)
        extra = next(
            s for s in allowed.plan.body.descriptor_table if s.role is DescriptorRole.NET_PROXY
        )
        body = denied.plan.body
        table = (*body.descriptor_table, dataclasses.replace(extra, slot_index=800))
        with pytest.raises(Refusal) as info:
            verify_body(dataclasses.replace(body, descriptor_table=table))
        assert info.value.code == "descriptor-table-invalid"
    finally:
        denied.close()
