"""The network allow list in a recording: its decision events, and what the report says.

Each connection the allow list's proxy judged is one ``network.decision`` event, appended
while the run goes on, so its events interleave with ``launcher.phase`` ones. They are
taken out of the run before its grammar is checked (:func:`split_decisions`), under their
own rules: every one after ``plan.admitted`` and before ``run.terminal``, indexes counting
0, 1, 2, ..., each payload exactly ``{index, decision}`` with a strictly valid decision.

:func:`network_problems` (part of the ``report`` check) then holds the report to them and
re-judges every decision — trusting nothing the proxy said about its own policy:

* a run whose plan has no ``linux.netproxy.v1`` has no decisions and no
  ``network_activity`` facts;
* the ``network_activity`` facts are exactly the decisions, in order
  (:func:`bvisor.contract.netpolicy.activity_fact`);
* every decision the policy makes (listed, not-listed, refused-range, unresolved) is what
  :func:`bvisor.contract.netpolicy.judge` gives again for the recorded destination and
  address against the plan's entries (a DNS question: what ``judge_name`` gives, and only
  in a run whose plan has the resolver, ``linux.netdns.v1``, on that port; an address
  allowed as ``answered``: what ``judge_answered`` gives over the names the resolver
  answered with that address in the decisions *before* it, kept in an ``Answers``) —
  so a proxy that let through what the list does not name (or a forger who edited a
  verdict) fails here; an address-literal destination is pinned to that very address;
  a ``budget-exhausted`` refusal (of a connection or, once the budget is spent, of a DNS
  question) needs an Enforced budget;
* the ``network_bytes`` witness is the sum of the decisions' bytes, and an Enforced
  budget (``linux.budget.network.v1``) is not passed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from bvisor.contract._wire import expect_int, expect_map
from bvisor.contract.budgets import BudgetDimension
from bvisor.contract.endpoints import Endpoint, parse_address
from bvisor.contract.errors import ContractError
from bvisor.contract.events import NETWORK_DECISION, RUN_TERMINAL, SHAPES
from bvisor.contract.netpolicy import (
    ACTIVITY_FACT,
    ANSWERED,
    BAD_REQUEST,
    BUDGET_EXHAUSTED,
    DNS,
    POLICY_REASONS,
    Answers,
    NetworkDecision,
    activity_fact,
    judge,
    judge_name,
    normal_host,
    parse_entries,
)
from bvisor.contract.report import BoundaryReportBody
from bvisor.ledger import Event
from bvisor.replay import observed

__all__ = [
    "NETDNS_ID",
    "NETPROXY_ID",
    "NETWORK_BUDGET_ID",
    "network_problems",
    "split_decisions",
]

NETPROXY_ID = "linux.netproxy.v1"
NETDNS_ID = "linux.netdns.v1"
NETWORK_BUDGET_ID = "linux.budget.network.v1"


class _Misplaced(ValueError):
    pass


def split_decisions(
    events: Sequence[Event],
) -> tuple[list[Event], tuple[NetworkDecision, ...], str | None]:
    """``(the other events, the decoded decisions, the first problem or None)``."""
    rest: list[Event] = []
    decisions: list[NetworkDecision] = []
    terminal_seen = False
    for event in events:
        if event.kind != NETWORK_DECISION:
            terminal_seen = terminal_seen or event.kind == RUN_TERMINAL
            rest.append(event)
            continue
        where = f"event {event.seq} ({event.kind})"
        if terminal_seen:
            return rest, (), f"{where}: after run.terminal (every decision is made before it)"
        try:
            body = expect_map(event.payload, "", required=SHAPES[NETWORK_DECISION].required)
            index = expect_int(body["index"], "index", minimum=0)
            if index != len(decisions):
                raise ContractError(
                    "index",
                    f"expected {len(decisions)} (decisions count 0, 1, 2, ...), got {index}",
                )
            decisions.append(NetworkDecision.from_value(body["decision"], "decision"))
        except ContractError as exc:
            return rest, (), f"{where}: {str(exc).removeprefix(': ')}"
    return rest, tuple(decisions), None


def _plan_params(lowering: Sequence[object]) -> Mapping[str, Mapping[str, object]]:
    params: dict[str, Mapping[str, object]] = {}
    for record in lowering:
        entry = getattr(record, "entry", None)
        value = getattr(record, "params", None)
        if entry is not None and isinstance(value, Mapping):
            params[entry.id] = value
    return params


def _derived(
    d: NetworkDecision, entries: Sequence[Endpoint], answers: Answers
) -> tuple[str, str, str | None]:
    """What the allow list (and, for an answered address, the answers before it) gives."""
    if d.via == DNS:
        again = judge_name(entries, d.host, d.address)
    else:
        again = judge(entries, d.host, d.port, d.address)
        if d.reason == ANSWERED and not again.allowed and d.address is not None:
            again = answers.opens(entries, d.address, d.port) or again
    return again.verdict, again.reason, again.entry


def _judge_problems(
    position: int,
    d: NetworkDecision,
    entries: Sequence[Endpoint],
    answers: Answers,
    budget: bool,
    resolver: int | None,
) -> list[str]:
    where = f"network decision {position}"
    if d.via == DNS and (resolver is None or d.port != resolver):
        if resolver is None:
            return [f"{where}: a DNS decision in a run whose plan has no resolver ({NETDNS_ID})"]
        return [f"{where}: a DNS decision on port {d.port}, the plan's resolver is on {resolver}"]
    if d.reason == BAD_REQUEST:
        if d.verdict != "deny" or d.entry is not None or d.address is not None:
            return [f"{where}: a bad request is a denial naming no entry and no address"]
        return []
    if d.reason == BUDGET_EXHAUSTED:
        if d.verdict != "deny" or not budget:
            return [f"{where}: budget-exhausted without an Enforced network budget"]
        return []
    assert d.reason in POLICY_REASONS
    if normal_host(d.host) != d.host:
        return [f"{where}: destination host {d.host!r} is not in the form the proxy judges"]
    literal = parse_address(d.host)
    if d.via != DNS and literal is not None and d.address != literal.compressed:
        return [f"{where}: asked for address {d.host} but recorded address {d.address!r}"]
    if d.verdict == "allow" and d.address is None:
        return [f"{where}: allowed without an address to connect to"]
    recorded = (d.verdict, d.reason, d.entry)
    derived = _derived(d, entries, answers)
    if recorded != derived:
        return [
            f"{where} ({d.via} {d.host}:{d.port} at {d.address or '-'}): recorded "
            f"{'/'.join(map(str, recorded))}, the allow list gives {'/'.join(map(str, derived))}"
        ]
    return []


def network_problems(
    body: BoundaryReportBody, decisions: Sequence[NetworkDecision], lowering: Sequence[object]
) -> list[str]:
    """What in the report disagrees with the decisions and the plan (see the docstring)."""
    params = _plan_params(lowering)
    reported = list(observed.details(body, ACTIVITY_FACT))
    proxy = params.get(NETPROXY_ID)
    if proxy is None:
        if decisions or reported:
            return ["network decisions or network_activity facts in a run without a proxy"]
        return []
    problems: list[str] = []
    expected = [activity_fact(d).detail for d in decisions]
    if reported != expected:
        problems.append(
            f"network_activity facts ({len(reported)}) are not the recorded network decisions "
            f"({len(expected)}) in order"
        )
    allow = proxy.get("allow")
    try:
        entries = parse_entries([str(text) for text in allow] if isinstance(allow, list) else [])
    except ContractError as exc:
        return [*problems, f"the plan's allow list cannot be read: {exc}"]
    limit_value = params.get(NETWORK_BUDGET_ID, {}).get("limit_bytes")
    limit = limit_value if isinstance(limit_value, int) else None
    port_value = params.get(NETDNS_ID, {}).get("port")
    resolver = port_value if NETDNS_ID in params and isinstance(port_value, int) else None
    answers = Answers()
    for position, decision in enumerate(decisions):
        problems += _judge_problems(
            position, decision, entries, answers, limit is not None, resolver
        )
        if decision.via == DNS and decision.verdict == "allow" and decision.address:
            answers.add(decision.host, decision.address)
    total = sum(d.total for d in decisions)
    witness = next(
        (w for w in body.budget_witnesses if w.dimension is BudgetDimension.NETWORK_BYTES), None
    )
    if witness is None or witness.observed != total:
        shown = "none" if witness is None else witness.observed
        problems.append(
            f"network_bytes witness observed {shown}, the recorded decisions moved {total} bytes"
        )
    if limit is not None and total > limit:
        problems.append(f"the Enforced network budget {limit} was passed: {total} bytes moved")
    return problems
