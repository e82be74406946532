"""What one version of the planner rules is: the pure functions that make a plan.

A plan's digests are functions of these rules: the ceiling derived from host facts (h_p),
admission with its budget and evidence judgements (h_a), mechanism selection and the
lowering compiler with its catalogue (h_l). A :class:`Rules` value bundles one released
version of all of them so the planner can plan with the newest and replay can re-derive
each recorded run with the version that run names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from bvisor import canonical
from bvisor.contract import mechanisms as mech
from bvisor.contract.admission import AdmissionRecord
from bvisor.contract.plan import PlannedPrimitive
from bvisor.contract.profile import CeilingCell, HostFacts, ProfileSnapshot
from bvisor.contract.spec import BoundarySpec

__all__ = ["ADDED_BY", "Request", "Rules", "declarations"]

# One requested primitive: (catalogue id, canonical parameters).
Request = tuple[str, canonical.Value]

# The rules version that added each primitive to the current catalogue after rules v2
# (which shares the catalogue of its release; v1 keeps a catalogue of its own).
ADDED_BY: Mapping[str, int] = {mech.NETDNS.id: 3, mech.UTSNS.id: 4}


def declarations(version: int) -> Mapping[str, bytes]:
    """The declaration digests of the catalogue as rules ``version`` knows it (v2 on):
    a primitive a later version added is not among them."""
    return {
        primitive.id: mech.decl_digest(primitive)
        for primitive in mech.CATALOGUE
        if ADDED_BY.get(primitive.id, 2) <= version
    }


@dataclass(frozen=True, slots=True)
class Rules:
    """One released version of the planner rules (see the module docstring).

    ``decl_digests`` maps each catalogue primitive's id to the digest of its declaration
    (what a lowering entry's ``decl_digest`` must be); ``released_at`` names the commit
    that first shipped the version, for people reading a recorded run.
    """

    version: int
    released_at: str
    ceiling: Callable[[HostFacts], tuple[CeilingCell, ...]]
    admit: Callable[[BoundarySpec, ProfileSnapshot], AdmissionRecord]
    select: Callable[[BoundarySpec, HostFacts, AdmissionRecord], Sequence[Request]]
    compile: Callable[[Sequence[Request]], tuple[PlannedPrimitive, ...]]
    decl_digests: Mapping[str, bytes]

    def lower(
        self, spec: BoundarySpec, facts: HostFacts, record: AdmissionRecord
    ) -> tuple[PlannedPrimitive, ...]:
        """Select the primitives for an admitted spec and compile their schedule."""
        return self.compile(self.select(spec, facts, record))
