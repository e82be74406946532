"""Planner rules, version 3: v2 with the allow list's resolver.

What changes from v2, and nothing else: a spec with a network allow list also gets the
resolver (``linux.netdns.v1``: a UDP socket at ``127.0.0.1:53`` in the workload's empty
network namespace, served by the host's proxy, which answers A and AAAA questions for
listed names only), and — with a private root — a generated ``/etc/resolv.conf`` naming it
(a ``file`` mount, readable under the Landlock domain). Every other spec plans as under
v2, with v2's ceiling but for the allow list's cell, which now says what the resolver
does.

Released at ``0c7aac4`` (which recorded ``tests/compat/ledgers/v3-0c7aac4``); from now on
frozen like v1 and v2, its golden vectors (``tests/vectors/planner/v3/``) byte-identical.
"""

from __future__ import annotations

from bvisor.planner.rules.base import Rules, declarations
from bvisor.planner.rules.v2.lowering import compile_schedule
from bvisor.planner.rules.v3.admission import RULES_VERSION, admit
from bvisor.planner.rules.v3.ceiling import linux_ceiling
from bvisor.planner.rules.v3.selection import select_primitives

__all__ = ["RULES"]

RULES = Rules(
    version=RULES_VERSION,
    released_at="0c7aac4",
    ceiling=linux_ceiling,
    admit=admit,
    select=select_primitives,
    compile=compile_schedule,
    decl_digests=declarations(RULES_VERSION),
)
