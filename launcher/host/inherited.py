"""Which of a spec's inherited fds the calling process does not have open.

``bvisor run`` asks this before it opens anything that lasts (the ledger, the executable,
pipes): at that moment the open fds are exactly the ones the command was started with, so
any other number a spec names would be one of bvisor's own, and handing it over would give
the workload the evidence.
"""

from __future__ import annotations

from bvisor.contract import BoundarySpec, FdsOnly, InheritedFds
from bvisor.fdtable import open_fds

__all__ = ["inherited_fds_not_open", "set_caller_fds"]

_caller_fds: frozenset[int] | None = None


def set_caller_fds(fds: list[int]) -> None:
    """Name the fds the caller had open, when this process is not the caller itself.

    ``bvisor serve`` runs a command in a copy of itself that holds the caller's fds at
    their numbers *and* fds of its own (its resident launcher's socket); only the
    caller's may be handed to a workload.
    """
    global _caller_fds
    _caller_fds = frozenset(fds)


def inherited_fds_not_open(spec: BoundarySpec) -> list[int]:
    """The fds above stdio that ``spec`` hands over but the caller does not hold open."""
    held = set(open_fds()) if _caller_fds is None else set(_caller_fds)
    wanted = {
        fd
        for capability in spec.capabilities
        if isinstance(capability, InheritedFds) and isinstance(capability.policy, FdsOnly)
        for fd in capability.policy.fds
        if fd > 2
    }
    return sorted(wanted - held)
