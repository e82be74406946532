"""The launcher's state machine as pure data, and the rule for a legal transcript.

The launcher writes one control-channel line per state (and ``# `` notes anywhere); the
host records the transcript and replay checks, from the ledger alone, that it is a legal
walk of this machine — without importing the launcher. So the table lives here, in the
pure contract, and ``bvisor.launcher.wire.states`` re-exports it: one definition for both sides.

The happy path is a straight line ending in ``ExecSucceeded``. ``SetupRefused`` (the plan
or a handle failed verification — nothing was created) is legal only before the child
exists; ``SetupFaulted`` (an OS operation failed) is legal from any non-terminal state.
Notes (lines starting ``# ``) are not states and are ignored by the checker.

Which outcomes each terminal may lead to is fixed by ``OUTCOMES_BY_TERMINAL`` (``None``
stands for "the launcher wrote no terminal", which is consistent only with a supervisor
fault, a host-side denial, or a host interrupted before the launcher finished).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence

from bvisor.contract.lowering import Phase

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
    "OUTCOMES_BY_TERMINAL",
    "PLAN_VERIFIED",
    "POLICY_PHASE_RESOLVED",
    "READY_TO_EXEC",
    "SETUP_FAULTED",
    "SETUP_REFUSED",
    "STATES",
    "TERMINALS",
    "TERMINAL_STATES",
    "TRANSITIONS",
    "TranscriptError",
    "check_walk",
    "is_legal_walk",
    "split_lines",
    "state_of",
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


def state_of(phase: Phase, *, policy: bool = False) -> str:
    """The phase state after which the launcher reports the work done in ``phase``.

    It writes a state once the child says every op of that group is done, and then the
    notes of the mechanisms it covers (``policy``: the seccomp filter's, installed last,
    reported with PolicyPhaseResolved); replay requires a mechanism's note after it.
    """
    if policy:
        return POLICY_PHASE_RESOLVED
    if phase <= Phase.FS_SETUP:
        return NAMESPACE_PHASE_RESOLVED
    if phase <= Phase.FD_HYGIENE:
        return FD_PHASE_RESOLVED
    return FILESYSTEM_PHASE_RESOLVED


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


TERMINAL_STATES: tuple[str, ...] = (EXEC_SUCCEEDED, SETUP_REFUSED, SETUP_FAULTED)

OUTCOMES_BY_TERMINAL: dict[str | None, frozenset[str]] = {
    EXEC_SUCCEEDED: frozenset({"completed", "failed", "timeout", "killed", "supervisor_fault"}),
    SETUP_REFUSED: frozenset({"unsupported"}),
    SETUP_FAULTED: frozenset({"supervisor_fault"}),
    None: frozenset({"supervisor_fault", "denied", "killed"}),
}


class TranscriptError(ValueError):
    """A transcript is not a legal walk of the launcher state machine."""


def split_lines(lines: Sequence[str]) -> tuple[list[str], list[str]]:
    """Separate state lines from note lines (notes keep their text without the prefix)."""
    states: list[str] = []
    notes: list[str] = []
    for line in lines:
        if line.startswith(NOTE_PREFIX):
            notes.append(line[len(NOTE_PREFIX) :])
        else:
            states.append(line)
    return states, notes


def check_walk(states: Sequence[str]) -> str | None:
    """Validate states (a terminal is optional); return the terminal, or None if none."""
    error = walk_error(states, require_terminal=False)
    if error is not None:
        raise TranscriptError(error)
    return states[-1] if states and states[-1] in TERMINALS else None
