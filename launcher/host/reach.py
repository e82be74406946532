"""Keep the evidence out of the workload's reach.

The ledger holds every run's captured output and is the proof of every run; a workload
whose filesystem roots cover the ledger directory could read other runs' output, and one
with a write root over it could corrupt or truncate the store under the host (a bus error
kills the host mid-run, and that run is never sealed). ``bvisor run`` from ``$HOME`` with
the default ledger under ``~/.local/share`` is exactly that case. So a run whose roots
cover its ledger is refused before anything is recorded or started.

A spec without a filesystem capability asks for no filesystem confinement at all; its
workload can reach the ledger like any other file its uid may open (README says so).

The artifact directory a plan commits to is kept out of reach the same way, both ways
round: no root the run can reach may contain it (the workload could tamper with other
runs' committed outputs) or lie inside it (it could write into them).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from bvisor.launcher.wire.lowered import LoweredParams, LoweringParamsError, lowered_params

if TYPE_CHECKING:
    from bvisor.contract.plan import BoundaryPlan

__all__ = [
    "ArtifactsReachable",
    "LedgerReachable",
    "covering_root",
    "refuse_if_artifacts_reachable",
    "refuse_if_fds_reach",
    "refuse_if_plan_reaches",
    "refuse_if_reachable",
]


class LedgerReachable(ValueError):
    """The ledger directory lies inside a filesystem root the workload can reach."""


class ArtifactsReachable(LedgerReachable):
    """The artifact directory and a root the workload can reach overlap.

    A :class:`LedgerReachable` so that every caller that refuses a run for its ledger
    refuses it for its artifacts as well (nothing ran or was recorded: a usage mistake).
    """


def covering_root(path: str, lowered: LoweredParams) -> str | None:
    """The first host path the workload can reach (a bind of its root, a Landlock rule)
    that contains ``path``, if any."""
    target = os.path.realpath(path)
    for root in lowered.reachable_paths():
        real = os.path.realpath(root)
        if target == real or target.startswith(real.rstrip("/") + "/"):
            return root
    return None


def refuse_if_reachable(ledger_path: str, lowered: LoweredParams) -> None:
    """Raise :class:`LedgerReachable` (naming both paths) when ``covering_root`` finds one."""
    root = covering_root(ledger_path, lowered)
    if root is not None:
        raise LedgerReachable(
            f"the ledger {ledger_path} lies inside the filesystem root {root}, which the "
            "workload can reach (it could read other runs' output or damage the record); "
            "record elsewhere (--ledger DIR) or run from another directory"
        )


def refuse_if_fds_reach(ledger_path: str, lowered: LoweredParams) -> None:
    """Refuse when an fd the spec keeps (``InheritedFds``) is one of the ledger's own files.

    The spec names fd *numbers*; in a process that has the ledger open, a number nobody
    opened on purpose can be LMDB's ``lock.mdb`` or ``data.mdb`` — read-write.
    """
    ledger_files: dict[tuple[int, int], str] = {}
    for name in ("data.mdb", "lock.mdb"):
        try:
            info = os.stat(os.path.join(ledger_path, name))
        except OSError:
            continue
        ledger_files[(info.st_dev, info.st_ino)] = name
    for fd in (fd for fd in lowered.keep_fds if fd > 2):
        try:
            info = os.fstat(fd)
        except OSError:
            continue  # not open: the launch itself refuses that
        held = ledger_files.get((info.st_dev, info.st_ino))
        if held is not None:
            raise LedgerReachable(
                f"inherited fd {fd} is the ledger's own {held} ({ledger_path}): the workload "
                "would get the evidence store read-write; pass the fd you meant to give"
            )


def refuse_if_plan_reaches(ledger_path: str, plan: BoundaryPlan) -> None:
    """Both refusals above for an admitted plan (unreadable params: the backend's)."""
    try:
        lowered = lowered_params(plan)
    except LoweringParamsError:
        return  # the backend refuses such a plan itself, and seals that
    refuse_if_reachable(ledger_path, lowered)
    refuse_if_fds_reach(ledger_path, lowered)


def refuse_if_artifacts_reachable(artifact_dir: str | os.PathLike[str], plan: BoundaryPlan) -> None:
    """Refuse (:class:`ArtifactsReachable`) a committing plan whose roots overlap
    ``artifact_dir``; a plan that commits nothing is not concerned."""
    try:
        lowered = lowered_params(plan)
    except LoweringParamsError:
        return  # the backend refuses such a plan itself, and seals that
    if not lowered.commits:
        return
    target = os.path.realpath(artifact_dir)
    for root in lowered.reachable_paths():
        real = os.path.realpath(root)
        if _within(target, real) or _within(real, target):
            raise ArtifactsReachable(
                f"the artifact directory {os.fspath(artifact_dir)} and the filesystem root "
                f"{root}, which the workload can reach, overlap (it could tamper with "
                "committed artifacts); commit elsewhere (--artifacts DIR)"
            )


def _within(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")
