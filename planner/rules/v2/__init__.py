"""Planner rules, version 2: a private root, a PID namespace with its own init.

The workload's root is an empty tmpfs holding only what the plan grants (pivot_root, the
old root detached), with a minimal /dev, a fresh /proc of its own PID namespace, and a
private /tmp when asked; the namespace's init is pid 1 and its death is the atomic kill
of the run tree, so descendants, kills and deadlines need no cgroup (cgroups carry the
budgets). Landlock and seccomp stay as independent layers. Unprivileged callers get the
same boundary.

The per-user kernel objects a workload may take (inotify, fanotify) are half of its
user's (``linux.userns.limits.v1``).

Released with round 2 at ``a4b14f6`` (which recorded ``tests/compat/ledgers/v2-a4b14f6``);
from now on frozen like v1, and its golden vectors (``tests/vectors/planner/v2/``)
byte-identical.
"""

from __future__ import annotations

from bvisor.planner.rules.base import Rules, declarations
from bvisor.planner.rules.v2.admission import RULES_VERSION, admit
from bvisor.planner.rules.v2.ceiling import linux_ceiling
from bvisor.planner.rules.v2.lowering import compile_schedule
from bvisor.planner.rules.v2.selection import select_primitives

__all__ = ["RULES"]


RULES = Rules(
    version=RULES_VERSION,
    released_at="a4b14f6",
    ceiling=linux_ceiling,
    admit=admit,
    select=select_primitives,
    compile=compile_schedule,
    decl_digests=declarations(RULES_VERSION),
)
