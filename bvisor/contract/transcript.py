"""The launcher's state machine as pure data, and the rule for a legal transcript.

The launcher writes one control-channel line per state (and ``# `` notes anywhere); replay
checks a recorded transcript is a legal walk of this machine without importing the
launcher, so the table lives here in the contract and both sides use the same one.

A legal transcript starts with ``LauncherStarted``, advances through the setup states in
order (it may stop early), and ends in exactly one terminal state, which must be its last
state. ``ExecSucceeded`` is reachable only from ``ReadyToExec``; ``SetupRefused`` and
``SetupFaulted`` from any setup state. Which outcomes each terminal may lead to is fixed by
``OUTCOMES_BY_TERMINAL`` (``None`` stands for "the launcher wrote no terminal", which is
consistent only with a supervisor fault, a host-side denial, or a host interrupted before
the launcher finished).
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "EXEC_SUCCEEDED",
    "NOTE_PREFIX",
    "OUTCOMES_BY_TERMINAL",
    "SETUP_FAULTED",
    "SETUP_REFUSED",
    "SETUP_STATES",
    "TERMINAL_STATES",
    "TranscriptError",
    "check_walk",
    "split_lines",
]

SETUP_STATES: tuple[str, ...] = (
    "LauncherStarted",
    "IdentityVerified",
    "PlanVerified",
    "HandlesVerified",
    "ChildCreated",
    "NamespacePhaseResolved",
    "FdPhaseResolved",
    "FilesystemPhaseResolved",
    "PolicyPhaseResolved",
    "ReadyToExec",
)
EXEC_SUCCEEDED = "ExecSucceeded"
SETUP_REFUSED = "SetupRefused"
SETUP_FAULTED = "SetupFaulted"
TERMINAL_STATES: tuple[str, ...] = (EXEC_SUCCEEDED, SETUP_REFUSED, SETUP_FAULTED)
NOTE_PREFIX = "# "

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
    """Validate a sequence of states; return the terminal (or None if there is none)."""
    if not states:
        return None
    if states[0] != SETUP_STATES[0]:
        raise TranscriptError(f"transcript starts with {states[0]!r}, not {SETUP_STATES[0]!r}")
    position = 0  # index in SETUP_STATES of the last state seen
    for index, state in enumerate(states[1:], start=1):
        if state in TERMINAL_STATES:
            if index != len(states) - 1:
                raise TranscriptError(f"terminal {state!r} at {index} is not the last state")
            if state == EXEC_SUCCEEDED and SETUP_STATES[position] != "ReadyToExec":
                raise TranscriptError(
                    f"ExecSucceeded after {SETUP_STATES[position]!r}; only ReadyToExec precedes it"
                )
            return state
        if state not in SETUP_STATES:
            raise TranscriptError(f"unknown launcher state {state!r} at position {index}")
        expected = SETUP_STATES[position + 1] if position + 1 < len(SETUP_STATES) else None
        if state != expected:
            raise TranscriptError(
                f"state {state!r} at position {index} does not follow {SETUP_STATES[position]!r}"
                f" (expected {expected!r})"
            )
        position += 1  # noqa: SIM113 - advances only on a legal setup step
    return None
