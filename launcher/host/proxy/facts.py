"""The report facts and findings a run's proxy result gives.

``network_activity`` — one per decision, in decision order, worded by
:func:`bvisor.contract.netpolicy.activity_fact` (replay derives the same from the
``network.decision`` events); ``network_listener`` — where the listener was and that
the host checked it; ``network_proxy_problem`` — anything that stopped the proxy from
serving or recording, each also a finding (a run whose decisions are not all on record
must not read as a clean one), as is an Enforced network budget that was passed.
"""

from __future__ import annotations

from bvisor.contract.budgets import BudgetDimension, BudgetRequirements
from bvisor.contract.enforcement import MinGuarantee
from bvisor.contract.netpolicy import activity_fact
from bvisor.contract.report import ObservedFact
from bvisor.launcher.host.proxy.session import ProxyResult

__all__ = ["PROXY_BYTES_SOURCE", "network_facts"]

PROXY_BYTES_SOURCE = "bytes the host's proxy relayed, both ways, on every connection"


def network_facts(
    result: ProxyResult, budgets: BudgetRequirements
) -> tuple[list[ObservedFact], list[str]]:
    """``(facts, findings)`` for the report."""
    facts: list[ObservedFact] = []
    findings: list[str] = []
    if result.listener is not None:
        facts.append(
            ObservedFact(
                "network_listener",
                f"{result.listener}: the workload's namespace, not the host's (checked by "
                "the launcher and the host)",
            )
        )
    facts += [activity_fact(decision) for decision in result.decisions]
    for problem in result.problems:
        facts.append(ObservedFact("network_proxy_problem", problem))
        findings.append(f"network proxy: {problem}")
    budget = budgets.get(BudgetDimension.NETWORK_BYTES)
    if (
        budget is not None
        and budget.guarantee is MinGuarantee.ENFORCED
        and result.total_bytes > budget.limit
    ):
        findings.append(
            f"ENFORCED budget network_bytes breached: observed {result.total_bytes} > limit "
            f"{budget.limit} — the proxy did not hold it"
        )
    return facts, findings
