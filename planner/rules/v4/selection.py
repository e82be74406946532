"""Mechanism selection of rules v4: v3's requests, plus a UTS namespace of the run's own.

Where the kernel lets a child make a UTS namespace and set its names there (the probe's
``utsns`` fact) and the child will hold the capability to (a user namespace is scheduled,
or bvisor runs as root: the rule v2 gives the IPC namespace), v4 schedules
``linux.utsns.v1`` naming :data:`HOSTNAME` and :data:`DOMAINNAME`, so the workload reads
the run's names, not the host's, and cannot rename the host. No spec field asks for it: a
host without the fact gets no such entry (the plan then claims nothing about the names,
and the workload sees the host's, as under v3) rather than a refusal of a spec that never
asked. Every other request is v3's, unchanged.
"""

from __future__ import annotations

from typing import Final

from bvisor.contract import mechanisms as mech
from bvisor.contract.admission import AdmissionRecord
from bvisor.contract.profile import HostFacts
from bvisor.contract.spec import BoundarySpec
from bvisor.contract.utsname import UNSET_DOMAIN
from bvisor.planner.rules.base import Request
from bvisor.planner.rules.v3.selection import select_primitives as v3_select

__all__ = ["DOMAINNAME", "HOSTNAME", "select_primitives", "uts_namespace_possible"]

HOSTNAME: Final = "sandbox"
# What a freshly booted kernel shows before anyone sets one: the run claims no domain.
DOMAINNAME: Final = UNSET_DOMAIN


def uts_namespace_possible(facts: HostFacts) -> bool:
    """Whether a run on ``facts`` gets ``linux.utsns.v1`` (see the module docstring)."""
    return bool(facts.utsns) and (facts.userns or facts.host_uid == 0)


def select_primitives(
    spec: BoundarySpec, facts: HostFacts, record: AdmissionRecord
) -> list[Request]:
    """The (primitive id, params) requests for an admitted spec (unordered)."""
    requests = list(v3_select(spec, facts, record))
    if uts_namespace_possible(facts):
        requests.append((mech.UTSNS.id, mech.UtsNamespace(HOSTNAME, DOMAINNAME).to_value()))
    return requests
