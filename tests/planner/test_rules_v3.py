"""Planner rules v3: v2 plus the allow list's resolver, and nothing else (pure).

A spec without an allow list plans exactly as under v2 (the same requests); with one, the
plan adds the resolver (``linux.netdns.v1`` at 53), a ``file`` mount at
``/etc/resolv.conf`` naming it, last in the private root, and a Landlock rule reading its
directory inside the root; a spec that would put its own file there is refused.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from bvisor.contract import FsAccess, Network, NetworkAllowList
from bvisor.contract import mechanisms as mech
from bvisor.contract.controls import ExposePath
from bvisor.contract.profile import ProfileSnapshot
from bvisor.front.defaults import default_spec
from bvisor.planner.errors import PlanRefusal
from bvisor.planner.planning import plan_boundary
from bvisor.planner.rules import CURRENT, RELEASED, v2, v3
from bvisor.planner.rules.v3.selection import DNS_PORT, RESOLV_CONF, RESOLV_TEXT
from tests.planner.helpers import FIXED_FACTS

FACTS = dataclasses.replace(FIXED_FACTS, pidns=True, netns_loopback=True)


def _plan(spec: Any, rules: Any = v3.RULES) -> Any:
    return plan_boundary(spec, ProfileSnapshot("linux", FACTS, rules.ceiling(FACTS)), rules)


def _spec(entries: tuple[str, ...] | None = ("pypi.org:443",), **changes: Any) -> Any:
    base = default_spec(["/bin/true"], cwd="/srv/work")
    if entries is None:
        return dataclasses.replace(base, **changes)
    caps = tuple(
        Network(NetworkAllowList(entries)) if isinstance(c, Network) else c
        for c in base.capabilities
    )
    return dataclasses.replace(base, capabilities=caps, **changes)


def _params(plan: Any, primitive: mech.Primitive) -> Any:
    return primitive.params.from_value(plan.params_of(primitive.id))


def test_v3_is_released_and_no_longer_the_current_version() -> None:
    # current until rules v4 (the UTS namespace); still planned with when a run names it
    assert RELEASED[3] is v3.RULES and v3.RULES.version == 3 and CURRENT is not v3.RULES


def test_without_an_allow_list_v3_selects_what_v2_does() -> None:
    spec = _spec(None)
    p2, p3 = _plan(spec, v2.RULES), _plan(spec)
    assert [(e.id, e.param_digest) for e in p2.entries] == [
        (e.id, e.param_digest) for e in p3.entries
    ]
    assert p3.admission.rules_version == 3


def test_an_allow_list_gets_the_resolver_and_its_resolv_conf() -> None:
    plan = _plan(_spec())
    ids = [e.id for e in plan.entries]
    assert mech.NETDNS.id in ids and ids.index(mech.NETPROXY.id) < ids.index(mech.NETDNS.id)
    assert _params(plan, mech.NETDNS) == mech.NetDns(DNS_PORT)
    rootfs = _params(plan, mech.ROOTFS)
    assert rootfs.mounts[-1] == mech.FileMount(RESOLV_CONF, RESOLV_TEXT, False)
    assert "nameserver 127.0.0.1\n" in RESOLV_TEXT
    landlock = _params(plan, mech.LANDLOCK)
    assert mech.PathRule("/etc", "read") in landlock.inside


def test_the_allow_list_cell_says_what_the_resolver_does() -> None:
    cell = next(c for c in v3.RULES.ceiling(FACTS) if c.key == "network_allow_list")
    assert "answers A and AAAA questions for listed names only" in cell.reason
    v2_cell = next(c for c in v2.RULES.ceiling(FACTS) if c.key == "network_allow_list")
    assert "resolver" not in v2_cell.reason


def test_a_spec_exposing_its_own_resolv_conf_is_refused() -> None:
    expose = ExposePath("/srv/resolv.conf", RESOLV_CONF, FsAccess.READ)
    base = _spec()
    spec = dataclasses.replace(base, controls=(*base.controls, expose))
    with pytest.raises(PlanRefusal) as info:
        _plan(spec)
    assert info.value.code == "invalid-policy" and RESOLV_CONF in str(info.value)
    # without an allow list the same exposure is the spec's own business
    plain = _spec(None)
    _plan(dataclasses.replace(plain, controls=(*plain.controls, expose)))
