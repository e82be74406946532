"""Admission of rules v2: v1's admission body, judged against the v2 ceiling.

Two things change: the ceiling (:mod:`bvisor.planner.rules.v2.ceiling`), and one spec
check before any requirement is judged — the private root must be buildable
(:func:`bvisor.planner.rules.v2.rootfs.check_mounts`: a temp root or exposed path needs a
filesystem capability; no two mounts at one destination; nothing at or under ``/dev`` or
``/proc``) — and the network allow list's own checks
(:func:`bvisor.planner.rules.v2.network.check_network`: entries the proxy cannot enforce,
proxy variables the spec would override, a network budget or claim without a network
capability).
"""

from __future__ import annotations

from bvisor.contract.admission import AdmissionRecord
from bvisor.contract.profile import ProfileSnapshot
from bvisor.contract.spec import BoundarySpec
from bvisor.planner.rules.v1.admission import admit_with
from bvisor.planner.rules.v2.ceiling import linux_ceiling
from bvisor.planner.rules.v2.network import check_network
from bvisor.planner.rules.v2.rootfs import check_mounts

__all__ = ["RULES_VERSION", "admit"]

RULES_VERSION = 2
_DERIVATIONS = {"linux": linux_ceiling}


def admit(spec: BoundarySpec, snapshot: ProfileSnapshot) -> AdmissionRecord:
    """Admit ``spec`` against ``snapshot`` under rules v2, or raise PlanRefusal (pure)."""
    return admit_with(spec, snapshot, _DERIVATIONS, RULES_VERSION, _check_spec)


def _check_spec(spec: BoundarySpec) -> None:
    check_mounts(spec)
    check_network(spec)
