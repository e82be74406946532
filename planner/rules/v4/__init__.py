"""Planner rules, version 4: v3 with a UTS namespace of the run's own.

What changes from v3, and nothing else: where the host lets a child make a UTS namespace
(the probe's ``utsns`` fact) and the plan has a user namespace (or bvisor runs as root),
the plan schedules ``linux.utsns.v1``: the workload's hostname is ``sandbox`` and its NIS
domain name ``(none)``, not the host's (:mod:`bvisor.planner.rules.v4.selection`). The
ceiling, admission and lowering are v3's; a plan records version 4, so replay selects
these rules for it and requires the mechanism's note.

Released at ``ce6e5c1`` (which recorded ``tests/compat/ledgers/v4-ce6e5c1``); from now on
frozen like v1 to v3, its golden vectors (``tests/vectors/planner/v4/``) byte-identical.
"""

from __future__ import annotations

from bvisor.planner.rules.base import Rules, declarations
from bvisor.planner.rules.v2.lowering import compile_schedule
from bvisor.planner.rules.v3.ceiling import linux_ceiling
from bvisor.planner.rules.v4.admission import RULES_VERSION, admit
from bvisor.planner.rules.v4.selection import select_primitives

__all__ = ["RULES"]

RULES = Rules(
    version=RULES_VERSION,
    released_at="ce6e5c1",
    ceiling=linux_ceiling,
    admit=admit,
    select=select_primitives,
    compile=compile_schedule,
    decl_digests=declarations(RULES_VERSION),
)
