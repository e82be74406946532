"""The network allow list of rules v2: its ceiling cells, its admission checks, its plan.

Mechanism (``linux.netproxy.v1``): the workload keeps an empty network namespace; in the
child window, before privileges are dropped, its loopback is brought up and a TCP socket
is made listening on ``127.0.0.1:PROXY_PORT`` *inside* that namespace; the listening fd
travels to the host (child -> launcher -> host, SCM_RIGHTS), whose proxy accepts the
workload's connections there and opens the outbound ones in the host's namespace. There
is no relay inside the workload and no path to a host socket. ``HTTP_PROXY``,
``HTTPS_PROXY``, ``ALL_PROXY`` and their lower-case forms point at the listener, through
the plan's environment (the exec's environment lists them; nothing is added at launch).
The seccomp filter then allows ``socket()`` for AF_INET/AF_INET6 only.

Facts the cells need (each names the missing one): ``userns``, ``netns`` and a seccomp
errno filter (as deny-all networking), and ``netns_loopback`` (the probe made that very
listener in a new namespace). With them:

* ``network_allow_list`` is Enforced (``netproxy``);
* ``budget:network_bytes`` is Enforced (the proxy cuts connections at the limit);
* ``evidence:network_activity`` is Enforced (every decision of the proxy is recorded).

Refused at admission, naming the entry or key (fail closed, never dropped): an entry with
a protocol the proxy does not relay (``/udp``: ``unsupported``), an IPv6 address with a
zone (``unsupported``: it names a host interface); an environment entry
that sets one of the proxy variables to something else (``invalid-policy``); an Enforced
``network_bytes`` budget, or the ``network_activity`` claim, without a network capability
(there is then no namespace and no proxy to hold or see it).
"""

from __future__ import annotations

from collections.abc import Mapping

from bvisor.contract import mechanisms as mech
from bvisor.contract.budgets import BudgetDimension
from bvisor.contract.capabilities import Environment, Network, NetworkAllowList
from bvisor.contract.endpoints import parse_endpoint
from bvisor.contract.enforcement import MinGuarantee
from bvisor.contract.environment import EnvLiteral
from bvisor.contract.evidence import EvidenceClaim
from bvisor.contract.profile import CeilingCell, HostFacts
from bvisor.contract.requirements import RequirementKind
from bvisor.contract.spec import BoundarySpec
from bvisor.planner.errors import PlanRefusal
from bvisor.planner.rules.v1 import ceiling as v1
from bvisor.planner.rules.v1.ceiling import E, budget_key, evidence_key

__all__ = [
    "PROXY_PORT",
    "allow_list_of",
    "check_network",
    "netproxy_missing",
    "netproxy_params",
    "network_cells",
    "proxy_environment",
]

PROXY_PORT = 3128
_KEY = RequirementKind.NETWORK_ALLOW_LIST.value
_ACTIVITY = EvidenceClaim.NETWORK_ACTIVITY.value


def proxy_environment(port: int = PROXY_PORT) -> Mapping[str, str]:
    """The variables that point proxy-aware tools at the listener (names -> values).

    SOCKS is asked as ``socks5h`` so the name, not an address the workload resolved, goes
    to the proxy (the workload has no resolver that could answer it anyway).
    """
    http = f"http://127.0.0.1:{port}"
    socks = f"socks5h://127.0.0.1:{port}"
    names = {"HTTP_PROXY": http, "HTTPS_PROXY": http, "ALL_PROXY": socks}
    return {**names, **{name.lower(): value for name, value in names.items()}}


def netproxy_missing(facts: HostFacts) -> str | None:
    """The fact the allow list's proxy lacks here, or None when it can be made."""
    missing = v1._netns_missing(facts)
    if missing is not None:
        return missing
    if not facts.netns_loopback:
        return "netns_loopback"
    return None


def network_cells(facts: HostFacts) -> dict[str, CeilingCell]:
    """The v2 cells that replace v1's for the allow list, its budget and its evidence."""
    missing = netproxy_missing(facts)
    if missing is not None:
        return {
            _KEY: v1._absent(
                _KEY,
                "netproxy",
                missing,
                "an allow list needs an empty network namespace in a user namespace whose "
                "loopback a child can bring up and listen on, and a seccomp errno filter",
            )
        }
    return {
        _KEY: v1._cell(
            _KEY,
            E,
            "netproxy",
            "the workload's network namespace is empty but for a listener on its loopback, "
            "served by the host's proxy (HTTP CONNECT, HTTP, SOCKS5), which resolves names "
            "itself, connects only to the address it checked, refuses private, loopback, "
            "link-local and metadata ranges unless an entry names them, and everything not "
            "on the list; seccomp allows only AF_INET/AF_INET6 sockets",
            (EvidenceClaim.MECHANISM_ATTESTATION.value, _ACTIVITY),
        ),
        budget_key(BudgetDimension.NETWORK_BYTES): v1._cell(
            budget_key(BudgetDimension.NETWORK_BYTES),
            E,
            "netproxy_byte_budget",
            "every byte in or out passes the host's proxy, which counts both ways and cuts "
            "the connections at the limit",
            (EvidenceClaim.RESOURCE_USAGE.value,),
        ),
        evidence_key(EvidenceClaim.NETWORK_ACTIVITY): v1._cell(
            evidence_key(EvidenceClaim.NETWORK_ACTIVITY),
            E,
            "netproxy_decisions",
            "every allow and deny of the proxy (destination, address, bytes each way) is a "
            "ledger event and a report fact",
            (_ACTIVITY,),
        ),
    }


def allow_list_of(spec: BoundarySpec) -> NetworkAllowList | None:
    for capability in spec.capabilities:
        if isinstance(capability, Network) and isinstance(capability.policy, NetworkAllowList):
            return capability.policy
    return None


def _has_network(spec: BoundarySpec) -> bool:
    return any(isinstance(c, Network) for c in spec.capabilities)


def _check_entries(allow: NetworkAllowList) -> None:
    for index, text in enumerate(allow.endpoints):
        endpoint = parse_endpoint(text, f"allow_list[{index}]")
        if endpoint.zoned:
            raise PlanRefusal(
                "unsupported",
                f"allow list entry {text!r} (allow_list[{index}]): an IPv6 zone names an "
                "interface of the host, not a destination the proxy can judge",
                requirement=_KEY,
            )
        if endpoint.protocol != "tcp":
            raise PlanRefusal(
                "unsupported",
                f"allow list entry {text!r} (allow_list[{index}]): the proxy relays TCP only "
                f"(HTTP CONNECT, HTTP, SOCKS5 CONNECT), not {endpoint.protocol}",
                requirement=_KEY,
            )


def _check_environment(spec: BoundarySpec) -> None:
    wanted = proxy_environment()
    for capability in spec.capabilities:
        if not isinstance(capability, Environment):
            continue
        for entry in capability.policy.entries:
            if entry.name not in wanted:
                continue
            value = entry.value.value if isinstance(entry.value, EnvLiteral) else None
            if value != wanted[entry.name]:
                raise PlanRefusal(
                    "invalid-policy",
                    f"environment entry {entry.name} would point the workload elsewhere, but "
                    f"with a network allow list it is {wanted[entry.name]!r} (the proxy); "
                    "leave it out",
                    requirement=RequirementKind.ENVIRONMENT.value,
                )


def check_network(spec: BoundarySpec) -> None:
    """The admission checks of the module docstring (raise PlanRefusal; pure)."""
    allow = allow_list_of(spec)
    if allow is not None:
        _check_entries(allow)
        _check_environment(spec)
    if _has_network(spec):
        return
    budget = spec.budgets.get(BudgetDimension.NETWORK_BYTES)
    if budget is not None and budget.guarantee is MinGuarantee.ENFORCED:
        raise PlanRefusal(
            "budget-refused",
            "an Enforced network_bytes budget needs a network capability (deny_all or an "
            "allow list): without one the workload uses the host's network directly",
            requirement=budget_key(BudgetDimension.NETWORK_BYTES),
        )
    if EvidenceClaim.NETWORK_ACTIVITY in spec.evidence.required:
        raise PlanRefusal(
            "evidence-unsatisfiable",
            "network_activity needs a network capability (deny_all or an allow list): "
            "without one the workload uses the host's network, unseen",
            requirement=evidence_key(EvidenceClaim.NETWORK_ACTIVITY),
        )


def netproxy_params(allow: NetworkAllowList) -> mech.NetProxy:
    return mech.NetProxy(PROXY_PORT, tuple(allow.endpoints))
