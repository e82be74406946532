"""The parts of a report body that are pure functions of the plan.

The runner builds a report from them and replay re-derives them from the recorded plan,
so both must use this one definition: which requirements were admitted (with their
verdict and mechanism) and the profile label a report names.
"""

from __future__ import annotations

from bvisor.contract.admission import AdmissionRecord
from bvisor.contract.profile import ProfileSnapshot
from bvisor.contract.report import AdmittedRequirement
from bvisor.contract.requirements import RequirementKind

__all__ = ["admitted_requirements", "profile_label"]


def admitted_requirements(admission: AdmissionRecord) -> tuple[AdmittedRequirement, ...]:
    """One entry per admitted requirement, in the admission record's order."""
    return tuple(
        AdmittedRequirement(
            # Cell keys are the kind's value, refined after a colon where one kind has
            # several cells (``kill:atomic``); the report names the kind.
            kind=RequirementKind(decision.key.partition(":")[0]),
            enforcement=decision.verdict,
            mechanism=decision.mechanism,
        )
        for decision in admission.requirements
    )


def profile_label(profile: ProfileSnapshot) -> str:
    """A human label for the profile a run was admitted under (h_p is the binding one)."""
    facts = profile.facts
    return f"{profile.backend}:{facts.kernel_release}:{facts.arch}"
