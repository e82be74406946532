"""The report's denied attempts against the recording: notes, events and plan must agree.

Three recordings of the same thing exist, and each must say exactly what the others say:

* the launcher's notes in the transcript (``denied ...``), from which
  :func:`bvisor.contract.denials.derive` gives the entries and the denial findings;
* the ``run.denied`` events, one per entry;
* the sealed report's ``denied_attempts`` and its findings with the denial prefix.

And the plan bounds them: entries of a mechanism may exist only where the recorded
lowering made that mechanism report (seccomp: ``notify_denials`` in the seccomp entry),
and a kill entry exactly for a supervised workload the transcript says died by SIGSYS.
"""

from __future__ import annotations

import signal
from collections.abc import Mapping, Sequence

from bvisor import canonical
from bvisor.contract import denials
from bvisor.contract import notes as wire_notes
from bvisor.contract.report import BoundaryReportBody
from bvisor.replay.events import LoweringRecord

__all__ = ["denial_problems", "reporting_mechanisms"]

_SECCOMP_V2 = "linux.seccomp.apply.v2"
_EXIT_SIGSYS = wire_notes.exit_note(signal=int(signal.SIGSYS))


def reporting_mechanisms(lowering: Sequence[LoweringRecord]) -> frozenset[str]:
    """The mechanisms the recorded lowering asked to report their denials."""
    found: set[str] = set()
    for record in lowering:
        params = record.params
        if (
            record.entry.id == _SECCOMP_V2
            and isinstance(params, Mapping)
            and params.get("notify_denials") is True
        ):
            found.add("seccomp")
    return frozenset(found)


def _values(entries: Sequence[denials.DeniedAttempt]) -> bytes:
    return canonical.encode([entry.to_value() for entry in entries])


def _same(a: Sequence[denials.DeniedAttempt], b: Sequence[denials.DeniedAttempt]) -> bool:
    """Whether two lists of entries encode alike (two empty ones do, unencoded)."""
    return (not a and not b) or _values(a) == _values(b)


def denial_problems(
    body: BoundaryReportBody,
    notes: Sequence[str],
    events: Sequence[denials.DeniedAttempt],
    lowering: Sequence[LoweringRecord],
) -> list[str]:
    """What the report's denied attempts get wrong about the recording (empty: nothing)."""
    problems: list[str] = []
    evidence = denials.derive(notes)
    reported = body.denied_attempts
    if not _same(reported, evidence.attempts):
        problems.append(
            f"denied_attempts ({len(reported)} entries) are not what the launcher's denial "
            f"notes say ({len(evidence.attempts)} entries)"
        )
    if not _same(reported, events):
        problems.append(
            f"denied_attempts ({len(reported)} entries) are not the run.denied events "
            f"({len(events)})"
        )
    findings = [f for f in body.findings if f.startswith(denials.DENIAL_FINDING)]
    if findings != list(evidence.findings):
        problems.append(
            f"denial findings {findings} are not what the denial notes imply "
            f"{list(evidence.findings)}"
        )
    allowed = reporting_mechanisms(lowering)
    strays = sorted({e.mechanism for e in reported} - allowed)
    if strays:
        problems.append(
            f"denied_attempts name {', '.join(strays)}, which the plan did not ask to report "
            "denials"
        )
    kills = [e for e in reported if e.mechanism == "seccomp" and e.answer == "SIGSYS"]
    sigsys = _EXIT_SIGSYS in notes
    listening = any(note.startswith(denials.SUPERVISOR_NOTE) for note in notes)
    # The launcher notes the rusage after its tally: a transcript with it saw the tally.
    finished = any(wire_notes.rusage_text(note) is not None for note in notes)
    if len(kills) > 1 or (kills and not sigsys):
        problems.append(
            f"{len(kills)} kill entries, but the launcher noted the workload's exit by "
            f"SIGSYS {'once' if sigsys else 'never'}"
        )
    elif sigsys and listening and finished and not kills and len(reported) < denials.MAX_KINDS:
        problems.append(
            "the workload died by SIGSYS while its denials were supervised, but no kill "
            "entry says so"
        )
    return problems
