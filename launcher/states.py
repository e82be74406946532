"""The launcher state machine as pure data: state names and the legal transitions.

The launcher writes one state per line on its control channel; the host records the
transcript and the replayer checks, from the ledger alone, that it is a legal walk of this
machine. Replay must not import the launcher package, so it keeps a copy of this table;
this module therefore holds data and one pure checker, and makes no OS calls.

The happy path is a straight line ending in ``ExecSucceeded``. ``SetupRefused`` (the plan
or a handle failed verification — nothing was created) is legal only before the child
exists; ``SetupFaulted`` (an OS operation failed) is legal from any non-terminal state.
Notes (lines starting ``# ``) are not states and are ignored by the checker.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping

__all__ = [
    "CHILD_CREATED",
    "EXEC_SUCCEEDED",
    "FD_PHASE_RESOLVED",
    "FILESYSTEM_PHASE_RESOLVED",
    "HANDLES_VERIFIED",
    "HAPPY_PATH",
    "IDENTITY_VERIFIED",
    "INITIAL",
    "LAUNCHER_STARTED",
    "NAMESPACE_PHASE_RESOLVED",
    "NOTE_PREFIX",
    "PLAN_VERIFIED",
    "POLICY_PHASE_RESOLVED",
    "READY_TO_EXEC",
    "SETUP_FAULTED",
    "SETUP_REFUSED",
    "STATES",
    "TERMINALS",
    "TRANSITIONS",
    "is_legal_walk",
    "walk_error",
]

LAUNCHER_STARTED = "LauncherStarted"
IDENTITY_VERIFIED = "IdentityVerified"
PLAN_VERIFIED = "PlanVerified"
HANDLES_VERIFIED = "HandlesVerified"
CHILD_CREATED = "ChildCreated"
NAMESPACE_PHASE_RESOLVED = "NamespacePhaseResolved"
FD_PHASE_RESOLVED = "FdPhaseResolved"
FILESYSTEM_PHASE_RESOLVED = "FilesystemPhaseResolved"
POLICY_PHASE_RESOLVED = "PolicyPhaseResolved"
READY_TO_EXEC = "ReadyToExec"
EXEC_SUCCEEDED = "ExecSucceeded"
SETUP_REFUSED = "SetupRefused"
SETUP_FAULTED = "SetupFaulted"

NOTE_PREFIX = "# "

HAPPY_PATH: tuple[str, ...] = (
    LAUNCHER_STARTED,
    IDENTITY_VERIFIED,
    PLAN_VERIFIED,
    HANDLES_VERIFIED,
    CHILD_CREATED,
    NAMESPACE_PHASE_RESOLVED,
    FD_PHASE_RESOLVED,
    FILESYSTEM_PHASE_RESOLVED,
    POLICY_PHASE_RESOLVED,
    READY_TO_EXEC,
    EXEC_SUCCEEDED,
)
TERMINALS: frozenset[str] = frozenset({EXEC_SUCCEEDED, SETUP_REFUSED, SETUP_FAULTED})
STATES: frozenset[str] = frozenset(HAPPY_PATH) | TERMINALS

# The pseudo-state before the first line.
INITIAL = ""

_REFUSABLE = (LAUNCHER_STARTED, IDENTITY_VERIFIED, PLAN_VERIFIED, HANDLES_VERIFIED)


def _build() -> dict[str, frozenset[str]]:
    table: dict[str, set[str]] = {INITIAL: {LAUNCHER_STARTED}}
    for here, there in itertools.pairwise(HAPPY_PATH):
        table.setdefault(here, set()).add(there)
    for state in HAPPY_PATH[:-1]:
        table[state].add(SETUP_FAULTED)
    for state in _REFUSABLE:
        table[state].add(SETUP_REFUSED)
    for terminal in TERMINALS:
        table.setdefault(terminal, set())
    return {state: frozenset(nexts) for state, nexts in table.items()}


TRANSITIONS: Mapping[str, frozenset[str]] = _build()


def walk_error(transcript: Iterable[str], *, require_terminal: bool = True) -> str | None:
    """Why ``transcript`` (state names in order) is not a legal walk, or None if it is."""
    here = INITIAL
    for index, state in enumerate(transcript):
        if state not in STATES:
            return f"line {index}: {state!r} is not a launcher state"
        if state not in TRANSITIONS[here]:
            return f"line {index}: {here or 'start'} -> {state} is not a legal transition"
        here = state
    if require_terminal and here not in TERMINALS:
        return f"transcript ends in {here or 'nothing'}, not a terminal state"
    return None


def is_legal_walk(transcript: Iterable[str], *, require_terminal: bool = True) -> bool:
    """True when ``transcript`` is a legal walk (ending in a terminal unless told not to)."""
    return walk_error(transcript, require_terminal=require_terminal) is None
