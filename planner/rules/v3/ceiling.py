"""The Linux ceiling of rules v3: v2's cells, the allow list's saying what its resolver does.

The network allow list stays Enforced on the same facts (its resolver is made beside the
proxy's listener, in the same namespace, by the same child); the cell's reason adds that
the proxy answers DNS for listed names only, so a plan's h_p says which proxy it has.
"""

from __future__ import annotations

import dataclasses

from bvisor.contract.enforcement import Enforcement
from bvisor.contract.profile import CeilingCell, HostFacts
from bvisor.contract.requirements import RequirementKind
from bvisor.planner.rules.v2.ceiling import linux_ceiling as v2_ceiling

__all__ = ["RESOLVER_REASON", "linux_ceiling"]

RESOLVER_REASON = (
    "; its resolver on the workload's loopback (udp 127.0.0.1:53, named by the private "
    "root's /etc/resolv.conf) answers A and AAAA questions for listed names only, with "
    "one address judged as a connection to it would be, and refuses every other name "
    "without looking it up"
)
_KEY = RequirementKind.NETWORK_ALLOW_LIST.value


def _with_resolver(cell: CeilingCell) -> CeilingCell:
    if cell.key != _KEY or cell.enforcement is not Enforcement.ENFORCED:
        return cell
    return dataclasses.replace(cell, reason=cell.reason + RESOLVER_REASON)


def linux_ceiling(facts: HostFacts) -> tuple[CeilingCell, ...]:
    """Every Linux ceiling cell for ``facts`` (see the module docstring)."""
    return tuple(_with_resolver(cell) for cell in v2_ceiling(facts))
