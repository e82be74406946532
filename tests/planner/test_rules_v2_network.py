"""Planner rules v2, the network allow list: its cells, its refusals, its schedule (pure).

The cells follow from facts alone (each missing fact named); admission refuses what the
proxy could not enforce rather than dropping it; the plan says everything the launch will
do: the empty namespace, the listener and its entries, the proxy variables in the exec's
environment, inet-only sockets, the byte budget. Rules v1 keeps refusing the allow list.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from bvisor.contract import (
    Budget,
    BudgetRequirements,
    EnvEntry,
    Environment,
    EnvLiteral,
    EnvPolicy,
    EvidenceClaim,
    EvidenceRequirements,
    LaunchWorkload,
    MinGuarantee,
    Network,
    NetworkAllowList,
    NetworkDenyAll,
)
from bvisor.contract import mechanisms as mech
from bvisor.contract.enforcement import Enforcement
from bvisor.contract.profile import HostFacts, ProfileSnapshot
from bvisor.front.defaults import default_spec
from bvisor.planner.errors import PlanRefusal
from bvisor.planner.planning import plan_boundary
from bvisor.planner.rules import v1, v2
from bvisor.planner.rules.v1.ceiling import missing_fact_of
from bvisor.planner.rules.v2.network import PROXY_PORT, proxy_environment
from tests.planner.helpers import FIXED_FACTS

FACTS = dataclasses.replace(FIXED_FACTS, pidns=True, netns_loopback=True)
KEYS = ("network_allow_list", "budget:network_bytes", "evidence:network_activity")


def _cells(facts: HostFacts) -> dict[str, Any]:
    return {cell.key: cell for cell in v2.RULES.ceiling(facts)}


def _plan(spec: Any, facts: HostFacts = FACTS, rules: Any = v2.RULES) -> Any:
    return plan_boundary(spec, ProfileSnapshot("linux", facts, rules.ceiling(facts)), rules)


def _refusal(spec: Any, facts: HostFacts = FACTS, rules: Any = v2.RULES) -> PlanRefusal:
    with pytest.raises(PlanRefusal) as info:
        _plan(spec, facts, rules)
    return info.value


def _spec(entries: tuple[str, ...] = ("pypi.org:443",), **changes: Any) -> Any:
    base = default_spec(["/bin/true"], cwd="/srv/work")
    caps = tuple(
        Network(NetworkAllowList(entries)) if isinstance(c, Network) else c
        for c in base.capabilities
    )
    return dataclasses.replace(base, capabilities=caps, **changes)


def test_the_cells_are_enforced_with_the_proxy() -> None:
    cells = _cells(FACTS)
    assert cells["network_allow_list"].mechanism == "linux:netproxy:Enforced"
    assert cells["budget:network_bytes"].mechanism == "linux:netproxy_byte_budget:Enforced"
    assert cells["evidence:network_activity"].mechanism == "linux:netproxy_decisions:Enforced"
    assert "network_activity" in cells["network_allow_list"].evidence


@pytest.mark.parametrize(
    ("changes", "fact"),
    [
        ({"userns": False}, "userns"),
        ({"netns": False}, "netns"),
        ({"seccomp_filter": False}, "seccomp_filter"),
        ({"seccomp_actions": ("allow",)}, "seccomp_actions"),
        ({"netns_loopback": False}, "netns_loopback"),
        ({"netns_loopback": None}, "netns_loopback"),  # a profile from before the fact
    ],
)
def test_each_missing_fact_is_named(changes: dict[str, Any], fact: str) -> None:
    facts = dataclasses.replace(FACTS, **changes)
    cells = _cells(facts)
    assert cells["network_allow_list"].enforcement is Enforcement.UNSUPPORTED
    assert missing_fact_of(cells["network_allow_list"]) == fact
    assert cells["budget:network_bytes"].enforcement is Enforcement.MEDIATED
    assert cells["evidence:network_activity"].enforcement is Enforcement.UNSUPPORTED
    bare = _spec()  # no filesystem capability: the allow list is what is judged wanting
    bare = dataclasses.replace(
        bare,
        capabilities=tuple(c for c in bare.capabilities if isinstance(c, Network)),
        controls=(LaunchWorkload(),),
    )
    refusal = _refusal(bare, facts)
    assert (refusal.code, refusal.requirement, refusal.missing_fact) == (
        "unsupported",
        "network_allow_list",
        fact,
    )


def test_rules_v1_still_refuse_an_allow_list() -> None:
    refusal = _refusal(_spec(), FIXED_FACTS, v1.RULES)
    assert (refusal.code, refusal.requirement) == ("unsupported", "network_allow_list")


def test_the_plan_says_everything_the_launch_does() -> None:
    entries = ("*.example.org:443", "10.0.0.0/8:5432", "pypi.org:443")
    plan = _plan(
        _spec(
            entries,
            budgets=BudgetRequirements(network_bytes=Budget(4096, MinGuarantee.ENFORCED)),
        )
    )
    ids = [entry.id for entry in plan.entries]
    assert mech.NETNS.id in ids and ids.index(mech.NETNS.id) < ids.index(mech.NETPROXY.id)
    proxy = mech.NetProxy.from_value(plan.params_of(mech.NETPROXY.id))
    assert proxy == mech.NetProxy(PROXY_PORT, entries)
    assert mech.NetworkBudget.from_value(plan.params_of(mech.BUDGET_NETWORK.id)).limit_bytes == 4096
    seccomp = mech.Seccomp.from_value(plan.params_of(mech.SECCOMP.id))
    assert (seccomp.deny_sockets, seccomp.inet_sockets_only) == (False, True)
    landlock = mech.LandlockNet.from_value(plan.params_of(mech.LANDLOCK_NET.id))
    assert landlock.connect_ports == (PROXY_PORT,)
    policy = [e.id for e in plan.entries if e.phase_code == 4]
    assert policy[-1] == mech.SECCOMP.id  # the filter stays the last policy installed
    scrub = mech.AmbientScrub.from_value(plan.params_of(mech.AMBIENT_SCRUB.id))
    env = {source.name: source.literal for source in scrub.env}
    assert {name: env[name] for name in proxy_environment()} == dict(proxy_environment())
    assert env["HTTPS_PROXY"] == env["https_proxy"] == f"http://127.0.0.1:{PROXY_PORT}"
    assert env["ALL_PROXY"] == f"socks5h://127.0.0.1:{PROXY_PORT}"
    names = [source.name for source in scrub.env]
    assert names == sorted(names, key=str.encode)  # one order, whatever added them
    facts = {fact.kind: fact.detail for fact in plan_facts(plan)}
    assert facts["network_lowered"].startswith("allow_list:"), facts


def plan_facts(plan: Any) -> Any:
    from bvisor.contract.report_inputs import lowering_facts

    return lowering_facts(plan)


def test_deny_all_keeps_its_socket_filter_and_no_proxy() -> None:
    plan = _plan(default_spec(["/bin/true"], cwd="/srv/work"))
    ids = [entry.id for entry in plan.entries]
    assert mech.NETNS.id in ids and mech.NETPROXY.id not in ids
    seccomp = mech.Seccomp.from_value(plan.params_of(mech.SECCOMP.id))
    assert (seccomp.deny_sockets, seccomp.inet_sockets_only) == (True, False)


@pytest.mark.parametrize(
    ("entry", "says"), [("dns.example:53/udp", "TCP only"), ("[fe80::1%eth0]:80", "IPv6 zone")]
)
def test_an_entry_the_proxy_cannot_enforce_is_refused_naming_it(entry: str, says: str) -> None:
    refusal = _refusal(_spec(("pypi.org:443", entry)))
    assert (refusal.code, refusal.requirement) == ("unsupported", "network_allow_list")
    assert entry in refusal.detail and says in refusal.detail


def _with_env(spec: Any, **values: str) -> Any:
    entries = tuple(EnvEntry(name, EnvLiteral(value)) for name, value in sorted(values.items()))
    caps = tuple(c for c in spec.capabilities if not isinstance(c, Environment))
    return dataclasses.replace(spec, capabilities=(*caps, Environment(EnvPolicy.exact(entries))))


def test_a_proxy_variable_set_elsewhere_is_refused() -> None:
    refusal = _refusal(_with_env(_spec(), HTTPS_PROXY="http://evil.example:8080"))
    assert (refusal.code, refusal.requirement) == ("invalid-policy", "environment")
    assert "HTTPS_PROXY" in refusal.detail
    same = _with_env(_spec(), HTTPS_PROXY=f"http://127.0.0.1:{PROXY_PORT}", LANG="C")
    plan = _plan(same)  # the very value the plan sets is no conflict
    scrub = mech.AmbientScrub.from_value(plan.params_of(mech.AMBIENT_SCRUB.id))
    assert [s.name for s in scrub.env].count("HTTPS_PROXY") == 1


def _without_network(spec: Any) -> Any:
    return dataclasses.replace(
        spec, capabilities=tuple(c for c in spec.capabilities if not isinstance(c, Network))
    )


def test_a_network_budget_or_claim_needs_a_network_capability() -> None:
    budget = BudgetRequirements(network_bytes=Budget(10, MinGuarantee.ENFORCED))
    refusal = _refusal(_without_network(_spec(budgets=budget)))
    assert (refusal.code, refusal.requirement) == ("budget-refused", "budget:network_bytes")
    claim = EvidenceRequirements.of({EvidenceClaim.NETWORK_ACTIVITY})
    refusal = _refusal(_without_network(_spec(evidence=claim)))
    assert (refusal.code, refusal.requirement) == (
        "evidence-unsatisfiable",
        "evidence:network_activity",
    )
    # With deny_all both hold trivially: nothing can move, and nothing is seen moving.
    deny = _without_network(_spec(budgets=budget, evidence=claim))
    deny = dataclasses.replace(deny, capabilities=(*deny.capabilities, Network(NetworkDenyAll())))
    plan = _plan(deny)
    assert mech.BUDGET_NETWORK.id not in [entry.id for entry in plan.entries]
    # A mediated network budget needs nothing: it is witnessed where it can be.
    mediated = BudgetRequirements(network_bytes=Budget(10, MinGuarantee.MEDIATED))
    _plan(_without_network(_spec(budgets=mediated)))


def test_landlock_network_rules_come_with_abi_4() -> None:
    for abi, scheduled in ((3, False), (4, True), (7, True)):
        plan = _plan(_spec(), dataclasses.replace(FACTS, landlock_abi=abi))
        assert (mech.LANDLOCK_NET.id in [e.id for e in plan.entries]) is scheduled, abi
