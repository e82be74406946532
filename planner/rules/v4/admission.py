"""Admission of rules v4: v3's, recorded as v4.

The spec checks, the evidence needs, the ceiling and the denial check after admission are
v3's (:mod:`bvisor.planner.rules.v3.admission`): the UTS namespace answers no requirement,
so nothing a spec asks is judged differently. Only the version recorded in every admission
record changes, by which replay picks these rules again (and so v4's selection).
"""

from __future__ import annotations

from bvisor.contract.admission import AdmissionRecord
from bvisor.contract.profile import ProfileSnapshot
from bvisor.contract.spec import BoundarySpec
from bvisor.planner.rules.v1.admission import admit_with
from bvisor.planner.rules.v2.admission import EVIDENCE_NEEDS
from bvisor.planner.rules.v2.denials import check_denial_evidence
from bvisor.planner.rules.v3.admission import _check_spec as v3_check_spec
from bvisor.planner.rules.v3.ceiling import linux_ceiling

__all__ = ["RULES_VERSION", "admit"]

RULES_VERSION = 4
_DERIVATIONS = {"linux": linux_ceiling}


def admit(spec: BoundarySpec, snapshot: ProfileSnapshot) -> AdmissionRecord:
    """Admit ``spec`` against ``snapshot`` under rules v4, or raise PlanRefusal (pure)."""
    record = admit_with(spec, snapshot, _DERIVATIONS, RULES_VERSION, v3_check_spec, EVIDENCE_NEEDS)
    check_denial_evidence(snapshot, record)
    return record
