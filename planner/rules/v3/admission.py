"""Admission of rules v3: v2's, judged against the v3 ceiling.

The spec checks, the evidence needs and the denial check after admission are v2's
(:mod:`bvisor.planner.rules.v2.admission`), with one check more: with an allow list, a
spec may not put a mount of its own at ``/etc/resolv.conf`` (the resolver's file would
cover it). The ceiling differs (:mod:`bvisor.planner.rules.v3.ceiling`), and the version
recorded in every admission record, by which replay picks these rules again.
"""

from __future__ import annotations

from bvisor.contract.admission import AdmissionRecord
from bvisor.contract.profile import ProfileSnapshot
from bvisor.contract.requirements import RequirementKind
from bvisor.contract.spec import BoundarySpec
from bvisor.planner.errors import PlanRefusal
from bvisor.planner.rules.v1.admission import admit_with
from bvisor.planner.rules.v2.admission import EVIDENCE_NEEDS
from bvisor.planner.rules.v2.admission import check_spec as v2_check_spec
from bvisor.planner.rules.v2.denials import check_denial_evidence
from bvisor.planner.rules.v2.network import allow_list_of
from bvisor.planner.rules.v2.rootfs import mount_table, wants_private_root
from bvisor.planner.rules.v3.ceiling import linux_ceiling
from bvisor.planner.rules.v3.selection import RESOLV_CONF

__all__ = ["RULES_VERSION", "admit"]

RULES_VERSION = 3
_DERIVATIONS = {"linux": linux_ceiling}


def _check_resolv_conf(spec: BoundarySpec) -> None:
    """With an allow list, the private root's resolv.conf is the resolver's: a spec that
    puts its own there is refused, not overridden in silence."""
    if allow_list_of(spec) is None or not wants_private_root(spec):
        return
    if any(mount.dest == RESOLV_CONF for mount in mount_table(spec).mounts):
        raise PlanRefusal(
            "invalid-policy",
            f"{RESOLV_CONF} is the network allow list's resolver's (it names the proxy's "
            "DNS listener); leave it out of the roots and exposed paths",
            requirement=RequirementKind.NETWORK_ALLOW_LIST.value,
        )


def _check_spec(spec: BoundarySpec) -> None:
    v2_check_spec(spec)
    _check_resolv_conf(spec)


def admit(spec: BoundarySpec, snapshot: ProfileSnapshot) -> AdmissionRecord:
    """Admit ``spec`` against ``snapshot`` under rules v3, or raise PlanRefusal (pure)."""
    record = admit_with(spec, snapshot, _DERIVATIONS, RULES_VERSION, _check_spec, EVIDENCE_NEEDS)
    check_denial_evidence(snapshot, record)
    return record
