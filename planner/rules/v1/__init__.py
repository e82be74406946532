"""Planner rules, version 1: the rules of bvisor as released at commit 31a116f.

Frozen. Every digest a plan made by these rules carries (h_a, h_l, the decl digests) is a
function of this code, and ledgers recorded with it must replay forever, so nothing here
is ever edited; a change of meaning is a new version beside it
(``tests/vectors/planner/v1/`` holds the golden plans that prove it unchanged). Later
versions may import from here: frozen code is safe to build on.

Version 1 in brief: the workload sees the host's mount tree (read-only, Landlock deciding
what opens), a seccomp baseline on every host that has seccomp, namespaces only where a
requirement needs them, and a cgroup for descendants, kill and budgets.
"""

from __future__ import annotations

from bvisor.planner.rules.base import Rules
from bvisor.planner.rules.v1.admission import RULES_VERSION, admit
from bvisor.planner.rules.v1.catalogue import CATALOGUE, decl_digest
from bvisor.planner.rules.v1.ceiling import linux_ceiling
from bvisor.planner.rules.v1.lowering import compile_schedule
from bvisor.planner.rules.v1.selection import select_primitives

__all__ = ["RULES"]

RULES = Rules(
    version=RULES_VERSION,
    released_at="31a116f",
    ceiling=linux_ceiling,
    admit=admit,
    select=select_primitives,
    compile=compile_schedule,
    decl_digests={primitive.id: decl_digest(primitive) for primitive in CATALOGUE},
)
