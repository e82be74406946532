"""The enforcement lattice: Enforced > Mediated > Unsupported.

*Enforced* means the kernel itself stops the workload (a seccomp filter, a Landlock
ruleset, a cgroup limit). *Mediated* means bvisor observes and reports but cannot stop
it. *Unsupported* means neither. Combining two facts about one requirement (the family's
best case and this host's ceiling cell) takes the weaker — the lattice meet — so a
claim can only ever be lowered by combination, never raised.

``MinGuarantee`` is what a spec asks for (a budget's floor); it maps onto the lattice so
admission can ask ``level.satisfies(minimum)``.
"""

from __future__ import annotations

from enum import Enum

__all__ = ["Enforcement", "MinGuarantee", "meet"]


class MinGuarantee(Enum):
    """The weakest enforcement a spec accepts for a budget dimension."""

    MEDIATED = "mediated"
    ENFORCED = "enforced"

    def to_value(self) -> str:
        return self.value

    @property
    def enforcement(self) -> Enforcement:
        """The lattice level this minimum corresponds to."""
        return Enforcement.ENFORCED if self is MinGuarantee.ENFORCED else Enforcement.MEDIATED


class Enforcement(Enum):
    """How strongly a requirement is held; ordered ENFORCED > MEDIATED > UNSUPPORTED."""

    ENFORCED = "enforced"
    MEDIATED = "mediated"
    UNSUPPORTED = "unsupported"

    @property
    def rank(self) -> int:
        """Position in the lattice: higher is stronger."""
        return _RANK[self]

    @property
    def title(self) -> str:
        """``Enforced`` / ``Mediated`` / ``Unsupported`` (the form used in mechanism strings)."""
        return self.value.capitalize()

    def to_value(self) -> str:
        return self.value

    def meet(self, other: Enforcement) -> Enforcement:
        """The weaker of the two; usable as ``a.meet(b)`` or ``Enforcement.meet(a, b)``."""
        return self if self.rank <= other.rank else other

    def join(self, other: Enforcement) -> Enforcement:
        """The stronger of the two (the lattice join)."""
        return self if self.rank >= other.rank else other

    def at_least(self, other: Enforcement) -> bool:
        return self.rank >= other.rank

    def satisfies(self, minimum: MinGuarantee) -> bool:
        """Whether this level meets a spec's minimum guarantee."""
        return self.rank >= minimum.enforcement.rank

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Enforcement):
            return NotImplemented
        return self.rank < other.rank

    def __le__(self, other: object) -> bool:
        if not isinstance(other, Enforcement):
            return NotImplemented
        return self.rank <= other.rank

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, Enforcement):
            return NotImplemented
        return self.rank > other.rank

    def __ge__(self, other: object) -> bool:
        if not isinstance(other, Enforcement):
            return NotImplemented
        return self.rank >= other.rank


_RANK = {Enforcement.ENFORCED: 2, Enforcement.MEDIATED: 1, Enforcement.UNSUPPORTED: 0}


def meet(*levels: Enforcement) -> Enforcement:
    """The weakest of any number of levels; the meet of nothing is ENFORCED (the top)."""
    result = Enforcement.ENFORCED
    for level in levels:
        result = result.meet(level)
    return result
