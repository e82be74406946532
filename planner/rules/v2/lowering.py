"""The lowering compiler of rules v2: v1's compiler over the current mechanism catalogue.

The checks and the order (topological, ties by phase, id, version) are v1's, frozen with
it; what changes is the catalogue (``bvisor.contract.mechanisms``) and the parameter keys
each primitive takes, which come from its typed parameters' declared fields.
"""

from __future__ import annotations

from collections.abc import Sequence

from bvisor.contract import mechanisms as mech
from bvisor.contract.plan import PlannedPrimitive
from bvisor.planner.rules.base import Request
from bvisor.planner.rules.v1.lowering import compile_schedule as v1_compile
from bvisor.planner.rules.v2.selection import PARAM_KEYS

__all__ = ["compile_schedule"]


def compile_schedule(requests: Sequence[Request]) -> tuple[PlannedPrimitive, ...]:
    """Check ``requests`` and return the ordered schedule (see v1's compiler)."""
    return v1_compile(requests, mech.BY_ID, PARAM_KEYS)  # type: ignore[arg-type]
