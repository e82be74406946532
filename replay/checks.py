"""The named checks, one function each, over one run's recorded events.

Every check recomputes what it can from the recording and compares; nothing is taken on
trust from the recording itself. The order is fixed (:data:`CHECK_NAMES`) and each check
says in its detail what it compared, or — when it could not run — why (``skipped:`` after
an upstream failure, ``incomplete:`` when the run has no terminal yet). Which check fails
for a given tampering is part of the contract of this module: an edit is reported by the
check that owns the property the edit breaks, even when the forger rewrote the hash chain.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import cbor2

from bvisor import canonical
from bvisor.contract import facts as fact_kinds
from bvisor.contract import notes as wire_notes
from bvisor.contract.admission import AdmissionRecord
from bvisor.contract.lowering import lowering_digest, param_digest
from bvisor.contract.plan import plan_identity
from bvisor.contract.report import (
    AdmittedRequirement,
    BoundaryReportBody,
    ExitStatus,
    stream_digest,
)
from bvisor.contract.report_inputs import (
    LOWERING_FACT_KINDS,
    MEDIATED_FINDING,
    TEST_HOOK_FINDING,
    admitted_requirements,
    finding_subjects,
    profile_label,
)
from bvisor.contract.requirements import RequirementKind
from bvisor.contract.rerun import RerunLink
from bvisor.contract.spec import BoundarySpec
from bvisor.contract.transcript import (
    OUTCOMES_BY_TERMINAL,
    READY_TO_EXEC,
    TranscriptError,
    check_walk,
    split_lines,
)
from bvisor.digest import Purpose, digest_bytes
from bvisor.ledger import Event, Finding
from bvisor.replay import observed
from bvisor.replay.applied import applied_problems
from bvisor.replay.denials import denial_problems
from bvisor.replay.derive import Rederived
from bvisor.replay.diff import first_difference, show
from bvisor.replay.events import (
    Admitted,
    GrammarError,
    LoweringRecord,
    ParsedRun,
    StreamChunk,
    parse_run,
)
from bvisor.replay.network import network_problems
from bvisor.replay.outputs import outputs_problems
from bvisor.replay.results import CheckResult

__all__ = [
    "CHECK_NAMES",
    "REFUSED_CHECK_NAMES",
    "RERUN_CHECK",
    "ChainEvidence",
    "check_chain",
    "check_grammar",
    "check_h_a",
    "check_h_l",
    "check_h_p",
    "check_plan_id",
    "check_report",
    "check_rerun_of",
    "check_seal",
    "check_streams",
    "check_transcript",
    "grammar_verdict",
]

CHECK_NAMES = (
    "chain",
    "grammar",
    "h_p",
    "h_a",
    "h_l",
    "plan_id",
    "transcript",
    "streams",
    "report",
    "seal",
)
# A refused plan ran nothing: only these apply to it.
REFUSED_CHECK_NAMES = CHECK_NAMES[:4]
# Only a run that names a run it re-executes (``plan.admitted``'s ``rerun_of``) has it,
# after the others: every run that is no rerun keeps exactly CHECK_NAMES.
RERUN_CHECK = "rerun_of"

_NO_TERMINAL = "the run has no run.terminal (the host crashed, or the run is still going)"


def _same(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)


def _enc(value: object) -> bytes:
    """Canonical bytes for comparing a recorded value (strictly decoded: its types checked
    already) with a re-derived one (built by the contract's own encoders)."""
    try:
        data: bytes = cbor2.dumps(value, canonical=True)
    except Exception:  # not encodable at all: compare as the checked encoder would refuse
        return canonical.encode(value)
    return data


# -- chain -----------------------------------------------------------------------------


# Findings about the ledger's caches, not about any run's events: the stored Merkle tree
# (the records determine it) — reported by the ledger verdict, never held against a run.
_CACHE_CODES = frozenset({"tree-mismatch"})


@dataclass(frozen=True, slots=True)
class ChainEvidence:
    """What ``bvisor.ledger.verify`` found, indexed for per-run questions.

    ``first_bad_seq``: the header chain proves nothing at or after it (verify's
    ``chain_bad_seq``): damage confined to one event's payload (or encoding, or index row)
    leaves it where it was. ``by_seq``: findings tied to one event. ``ledger_wide``:
    findings tied to none (head, stray index rows). ``rewritten``: ranges of events a failed
    checkpoint shows were changed after they were signed. ``local``: seqs of damage
    confined to its own event, for saying what later runs are still proven by.
    """

    first_bad_seq: int | None
    by_seq: Mapping[int, tuple[Finding, ...]]
    ledger_wide: tuple[Finding, ...]
    verified_events: int
    rewritten: tuple[tuple[int, int], ...] = ()
    local: tuple[int, ...] = ()
    covered: int | None = None  # with an anchor: events 0..covered-1 are the ones it proves
    covered_by: str = ""

    @classmethod
    def of(
        cls,
        first_bad_seq: int | None,
        findings: Sequence[Finding],
        events: int,
        rewritten: Sequence[tuple[int, int]] = (),
        covered: int | None = None,
        covered_by: str = "",
    ) -> ChainEvidence:
        by_seq: dict[int, list[Finding]] = {}
        wide: list[Finding] = []
        for finding in findings:
            if finding.code in _CACHE_CODES:
                continue
            if finding.seq is None:
                wide.append(finding)
            else:
                by_seq.setdefault(finding.seq, []).append(finding)
        local = tuple(
            sorted(
                seq for seq, found in by_seq.items() if first_bad_seq is None or seq < first_bad_seq
            )
        )
        return cls(
            first_bad_seq,
            {k: tuple(v) for k, v in by_seq.items()},
            tuple(wide),
            events,
            tuple(rewritten),
            local,
            covered,
            covered_by,
        )


def check_chain(seqs: Sequence[int], chain: ChainEvidence, read_error: str | None) -> CheckResult:
    """The run's events are exactly what was appended: chained from genesis, indexed."""
    name = "chain"
    if read_error is not None:
        return CheckResult.failed(name, f"the run's events cannot be read: {read_error}")
    if not seqs:
        return CheckResult.failed(name, "the ledger lists no events for this run")
    if chain.ledger_wide:
        first = chain.ledger_wide[0]
        return CheckResult.failed(name, f"ledger verify: {first.code}: {first.detail}")
    for seq in seqs if chain.by_seq else ():
        found = chain.by_seq.get(seq)
        if found:
            return CheckResult.failed(name, f"event {seq}: {found[0].code}: {found[0].detail}")
    for start, stop in chain.rewritten:
        inside = [seq for seq in seqs if start <= seq < stop]
        if inside:
            return CheckResult.failed(
                name,
                f"event {inside[0]} lies in events {start}..{stop - 1}, which a checkpoint "
                "shows were changed after they were signed",
            )
    if chain.first_bad_seq is not None and max(seqs) >= chain.first_bad_seq:
        bad = chain.first_bad_seq
        why = chain.by_seq.get(bad) or chain.by_seq.get(bad + 1) or ()
        reason = f" ({why[0].code}: {why[0].detail})" if why else ""
        return CheckResult.failed(name, f"events from seq {bad} on are not proven intact{reason}")
    if chain.covered is not None and max(seqs) >= chain.covered:
        beyond = [seq for seq in seqs if seq >= chain.covered]
        return CheckResult.failed(
            name,
            f"events {beyond[0]}..{beyond[-1]} of this run are not yet covered by "
            f"{chain.covered_by}",
        )
    detail = f"{len(seqs)} events (seq {min(seqs)}..{max(seqs)}) chained from genesis"
    earlier = [seq for seq in chain.local if seq < max(seqs)]
    if earlier:
        detail += (
            f"; the damage at event {earlier[0]} (another run's) is confined to that event: "
            "its header still links, so this run's events are proven"
        )
    return CheckResult.passed(name, detail)


# -- grammar ---------------------------------------------------------------------------


def check_grammar(run_id: bytes, events: Sequence[object]) -> tuple[CheckResult, ParsedRun | None]:
    """Kinds in grammar order, payloads strictly well-formed; a started run may be pending."""
    try:
        parsed = parse_run(run_id, events)  # type: ignore[arg-type]
    except GrammarError as exc:
        return CheckResult.failed("grammar", str(exc)), None
    return grammar_verdict(parsed), parsed


def grammar_verdict(parsed: ParsedRun) -> CheckResult:
    """The ``grammar`` check of a run that parsed: passed, or pending when incomplete."""
    name = "grammar"
    if parsed.refused is not None:
        return CheckResult.passed(name, "plan.refused, recorded alone")
    counts = f"{len(parsed.lowering)} lowering entries, {len(parsed.lines)} launcher lines"
    if not parsed.complete:
        return CheckResult.pending(name, f"{_NO_TERMINAL}; so far: admitted, {counts}")
    return CheckResult.passed(
        name, f"admitted, {counts}, terminal, {len(parsed.streams)} stream chunks, sealed"
    )


# -- digests of the plan ---------------------------------------------------------------


def check_h_p(parsed: ParsedRun) -> CheckResult:
    """h_p is the digest of the recorded profile snapshot."""
    name = "h_p"
    source = parsed.admitted or parsed.refused
    assert source is not None
    computed = digest_bytes(Purpose.PROFILE, source.profile_bytes)  # = profile_digest(...)
    if not _same(computed, source.h_p):
        return CheckResult.failed(
            name,
            f"recorded h_p {source.h_p.hex()[:16]} is not the digest of the recorded profile "
            f"({computed.hex()[:16]}): the profile was changed after it was digested",
        )
    return CheckResult.passed(name, f"h_p {computed.hex()[:16]} recomputed from the profile")


def _refusal_text(code: str, requirement: str | None) -> str:
    return f"{code} [{requirement}]" if requirement else code


def check_h_a(parsed: ParsedRun, derived: Rederived) -> CheckResult:
    """Admission re-run on the recorded spec and profile gives the recorded decisions."""
    name = "h_a"
    if parsed.refused is not None:
        return _check_refusal(parsed, derived)
    admitted = parsed.admitted
    assert admitted is not None
    if derived.unknown_rules is not None:
        computed = digest_bytes(Purpose.ADMISSION, admitted.admission_bytes)
        if not _same(computed, admitted.h_a):
            return CheckResult.failed(
                name,
                f"recorded h_a {admitted.h_a.hex()[:16]} is not the digest of the recorded "
                f"admission record ({computed.hex()[:16]})",
            )
        return CheckResult.skipped(name, "admission cannot be re-run here")
    if derived.admission_refusal is not None:
        refusal = derived.admission_refusal
        return CheckResult.failed(
            name,
            "admission re-run on the recorded spec and profile refuses "
            f"({_refusal_text(refusal.code, refusal.requirement)}: {refusal.detail})",
        )
    if derived.record is None:
        return CheckResult.failed(name, derived.error or "admission could not be re-run")
    if derived.record_bytes != admitted.admission_bytes:
        difference = first_difference(admitted.admission_value, derived.record.to_value())
        return CheckResult.failed(
            name,
            f"the recorded admission is not what admission gives: {difference or 'encoding'}",
        )
    computed = digest_bytes(Purpose.ADMISSION, derived.record_bytes)  # = admission_digest
    if not _same(computed, admitted.h_a):
        return CheckResult.failed(
            name,
            f"recorded h_a {admitted.h_a.hex()[:16]} is not the digest of the admission record "
            f"({computed.hex()[:16]})",
        )
    decisions = (
        f"{len(derived.record.requirements)} requirements, {len(derived.record.evidence)} "
        f"evidence claims, {len(derived.record.budgets)} budgets"
    )
    return CheckResult.passed(
        name, f"admission re-run agrees ({decisions}); h_a {computed.hex()[:16]}"
    )


def _check_refusal(parsed: ParsedRun, derived: Rederived) -> CheckResult:
    name = "h_a"
    refused = parsed.refused
    assert refused is not None
    recorded = refused.refusal
    if refused.backend != refused.profile.backend:
        return CheckResult.failed(
            name,
            f"plan.refused names backend {refused.backend!r} but its profile is for "
            f"{refused.profile.backend!r}",
        )
    if derived.unknown_rules is not None:
        return CheckResult.skipped(name, "admission cannot be re-run here")
    again = derived.refusal
    if again is None:
        what = "admits it" if derived.plan is not None else (derived.error or "does not refuse")
        return CheckResult.failed(
            name,
            f"admission re-run on the recorded spec and profile {what}; the recorded "
            f"refusal was {_refusal_text(recorded.code, recorded.requirement)}",
        )
    # The structured facts of the refusal; its detail is prose for people, and rewording
    # it must never fail a recorded run.
    pairs = (
        ("code", recorded.code, again.code),
        ("requirement", recorded.requirement, again.requirement),
        ("missing_fact", recorded.missing_fact, again.missing_fact),
    )
    for field, was, now in pairs:
        if was != now:
            return CheckResult.failed(
                name, f"refusal {field}: recorded {was!r}, admission re-run gives {now!r}"
            )
    wording = ""
    if recorded.detail != again.detail:
        wording = (
            f"; its wording differs from these rules' (recorded {_clip(recorded.detail)!r}, "
            f"now {_clip(again.detail)!r}): prose, shown, not compared"
        )
    return CheckResult.passed(
        name,
        f"admission re-run refuses again: {_refusal_text(again.code, again.requirement)}" + wording,
    )


def _clip(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def check_h_l(parsed: ParsedRun, derived: Rederived) -> CheckResult:
    """The recorded lowering is exactly the one the re-derived admission compiles to."""
    name = "h_l"
    admitted = parsed.admitted
    assert admitted is not None
    for position, record in enumerate(parsed.lowering):
        if not _same(param_digest(record.params), record.entry.param_digest):
            return CheckResult.failed(
                name,
                f"lowering.entry[{position}] ({record.entry.id}): param_digest is not the "
                "digest of its recorded params",
            )
    recorded_entries = [record.entry for record in parsed.lowering]
    recorded_h_l = lowering_digest(recorded_entries)
    digest_problem = None
    if not _same(recorded_h_l, admitted.h_l):
        digest_problem = (
            f"recorded h_l {admitted.h_l.hex()[:16]} is not the digest of the recorded "
            f"lowering entries ({recorded_h_l.hex()[:16]})"
        )
    if derived.lowering_refusal is not None:
        refusal = derived.lowering_refusal
        return CheckResult.failed(
            name,
            "the lowering compiler refuses the re-derived admission "
            f"({_refusal_text(refusal.code, refusal.requirement)}: {refusal.detail})",
        )
    plan = derived.plan
    if plan is None:
        if digest_problem is not None:
            return CheckResult.failed(name, digest_problem)
        why = "admission could not be re-derived" if derived.record is None else derived.error
        return CheckResult.skipped(name, why or "no re-derived plan")
    # Compare with the recompiled lowering first: it says *what* differs.
    expected = list(plan.lowering)
    recorded_ids = [e.id for e in recorded_entries]
    expected_ids = [p.entry.id for p in expected]
    if recorded_ids != expected_ids:
        return CheckResult.failed(name, _order_difference(recorded_ids, expected_ids))
    for position, (record, primitive) in enumerate(zip(parsed.lowering, expected, strict=True)):
        if _enc(record.entry.to_value()) != _enc(primitive.entry.to_value()):
            difference = first_difference(
                record.entry.to_value(), primitive.entry.to_value(), f"entry[{position}]"
            )
            return CheckResult.failed(name, f"{record.entry.id}: {difference}")
        if _enc(record.params) != _enc(primitive.params):
            difference = first_difference(record.params, primitive.params, f"params[{position}]")
            return CheckResult.failed(name, f"{record.entry.id}: {difference}")
    if digest_problem is not None:
        return CheckResult.failed(name, digest_problem)
    if not _same(plan.h_l, admitted.h_l):  # pragma: no cover - implied by the above
        return CheckResult.failed(name, "recorded h_l differs from the re-derived lowering's")
    return CheckResult.passed(
        name,
        f"{len(expected)} entries and params match the recompiled lowering; "
        f"h_l {plan.h_l.hex()[:16]}",
    )


def _order_difference(recorded: list[str], expected: list[str]) -> str:
    """Say how two different lists of entry ids differ: missing, extra, repeated or moved."""
    missing = [e for e in expected if e not in recorded]
    extra = [r for r in recorded if r not in expected]
    if missing:
        return (
            f"recorded lowering lacks {', '.join(missing)} "
            f"(the plan implies {len(expected)} entries)"
        )
    if extra:
        return f"recorded lowering has entries the plan does not imply: {', '.join(extra)}"
    position = next(
        (i for i, (a, b) in enumerate(zip(recorded, expected, strict=False)) if a != b), None
    )
    if position is None:
        # Same ids, same order, different counts: one list is the other with an entry
        # repeated at its end (a forger can append a renumbered copy of the last entry).
        position = min(len(recorded), len(expected))
        longer = recorded if len(recorded) > len(expected) else expected
        whose = "recorded lowering" if longer is recorded else "plan"
        return (
            f"lowering.entry[{position}]: the {whose} repeats entry {longer[position]} "
            f"(recorded {len(recorded)} entries, the plan implies {len(expected)})"
        )
    return (
        f"lowering entries out of order at position {position}: recorded {recorded[position]}, "
        f"the plan schedules {expected[position]}"
    )


def check_plan_id(parsed: ParsedRun, derived: Rederived) -> CheckResult:
    """plan_id is the digest of its recorded inputs, and equals the re-derived plan's."""
    name = "plan_id"
    a = parsed.admitted
    assert a is not None
    computed = plan_identity(a.schema_version, a.backend, a.spec, a.h_p, a.h_a, a.h_l, a.admission)
    if not _same(computed, a.plan_id):
        return CheckResult.failed(
            name,
            f"recorded plan_id {a.plan_id.hex()[:16]} is not the digest of its recorded inputs "
            f"({computed.hex()[:16]})",
        )
    if derived.plan is None:
        return CheckResult.skipped(name, "no re-derived plan to compare with (see h_a / h_l)")
    if not _same(derived.plan.plan_id, a.plan_id):
        return CheckResult.failed(
            name,
            f"recorded plan_id {a.plan_id.hex()[:16]} differs from the re-derived plan's "
            f"{derived.plan.plan_id.hex()[:16]}",
        )
    return CheckResult.passed(name, f"plan_id {computed.hex()[:16]} recomputed and re-derived")


# -- what ran --------------------------------------------------------------------------


# The last run's lines, split: the transcript and report checks of a run both read them.
# Held with the very tuple they were split from, so an identity test finds them.
_last_split: tuple[tuple[str, ...], tuple[list[str], list[str]]] = ((), ([], []))


def _split(lines: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """``split_lines(lines)``, once per run (the result is only read)."""
    global _last_split
    last = _last_split  # one read: another thread may replace it meanwhile
    if last[0] is lines:
        return last[1]
    split = split_lines(lines)
    _last_split = (lines, split)
    return split


def check_transcript(parsed: ParsedRun) -> CheckResult:
    """A legal walk of the launcher state machine whose terminal fits the outcome, and,
    when it reached ReadyToExec (every phase done: exec came next, or a kill), the note of
    every mechanism the plan scheduled in the phase that applied it
    (:mod:`bvisor.replay.applied`)."""
    name = "transcript"
    states, notes = _split(parsed.lines)
    try:
        terminal = check_walk(states)
    except TranscriptError as exc:
        return CheckResult.failed(name, f"illegal launcher transcript: {exc}")
    shown = terminal or "no terminal state"
    applied = ""
    if READY_TO_EXEC in states and parsed.admitted is not None:
        applied, missing = _applied(parsed.admitted, parsed.lowering, parsed.lines)
        if missing:
            return CheckResult.failed(
                name,
                "the launcher reached exec without noting what it applied: " + "; ".join(missing),
            )
    if parsed.terminal is None:
        return CheckResult.pending(
            name, f"{_NO_TERMINAL}; the {len(states)} states so far are a legal walk"
        )
    outcome = parsed.terminal.outcome.value
    allowed = OUTCOMES_BY_TERMINAL.get(terminal, frozenset())
    if outcome not in allowed:
        return CheckResult.failed(
            name,
            f"run.terminal says {outcome!r}, which the launcher terminal {shown} cannot lead "
            f"to (allowed: {', '.join(sorted(allowed)) or 'none'})",
        )
    return CheckResult.passed(
        name,
        f"{len(states)} states, {len(notes)} notes, ending {shown}; outcome {outcome}{applied}",
    )


def _applied(
    admitted: Admitted, lowering: Sequence[LoweringRecord], lines: Sequence[str]
) -> tuple[str, list[str]]:
    """What the transcript check says of the applied-mechanism notes, and what is missing."""
    rules = admitted.admission.rules_version
    shown = f"; every scheduled mechanism noted as applied before {READY_TO_EXEC}"
    return shown, applied_problems(lowering, lines, rules, admitted.profile.facts.arch)


def _group_streams(
    chunks: Sequence[StreamChunk],
) -> tuple[dict[str, bytes], dict[str, StreamChunk], str | None]:
    """Concatenate each stream's chunks, checking offsets, finality and totals agree."""
    data: dict[str, bytearray] = {}
    last: dict[str, StreamChunk] = {}
    for chunk in chunks:
        previous = last.get(chunk.stream)
        where = f"event {chunk.seq} ({chunk.stream})"
        if previous is not None:
            if previous.final:
                return {}, {}, f"{where}: chunk after the stream's final chunk"
            if (previous.total, previous.truncated) != (chunk.total, chunk.truncated):
                return {}, {}, f"{where}: total/truncated disagree with the stream's earlier chunks"
        buffer = data.setdefault(chunk.stream, bytearray())
        if chunk.offset != len(buffer):
            return (
                {},
                {},
                f"{where}: offset {chunk.offset}, expected {len(buffer)} "
                "(chunks must be contiguous)",
            )
        buffer += chunk.data
        last[chunk.stream] = chunk
    for stream, chunk in last.items():
        if not chunk.final:
            return (
                {},
                {},
                f"stream {stream}: its last chunk (event {chunk.seq}) is not marked final",
            )
    return {k: bytes(v) for k, v in data.items()}, last, None


def check_streams(parsed: ParsedRun) -> CheckResult:
    """The recorded captured bytes hash to the report's stream digests."""
    name = "streams"
    if parsed.terminal is None:
        return CheckResult.pending(name, _NO_TERMINAL)
    sealed = parsed.sealed
    assert sealed is not None
    data, last, problem = _group_streams(parsed.streams)
    if problem is not None:
        return CheckResult.failed(name, problem)
    records = {record.name: record for record in sealed.body.streams}
    if len(records) != len(sealed.body.streams):
        return CheckResult.failed(name, "the report lists a stream twice")
    if set(records) != set(data):
        return CheckResult.failed(
            name,
            f"the report lists streams {sorted(records)} but the ledger holds {sorted(data)}",
        )
    shown: list[str] = []
    for stream, record in records.items():
        captured = data[stream]
        chunk = last[stream]
        if len(captured) != record.captured:
            return CheckResult.failed(
                name, f"{stream}: {len(captured)} bytes recorded, the report says {record.captured}"
            )
        if not _same(stream_digest(captured), record.digest):
            return CheckResult.failed(
                name, f"{stream}: the recorded bytes do not hash to the report's digest"
            )
        if chunk.total != record.length or chunk.truncated != record.truncated:
            return CheckResult.failed(
                name,
                f"{stream}: recorded total={chunk.total} truncated={chunk.truncated}, the report "
                f"says length={record.length} truncated={record.truncated}",
            )
        if chunk.truncated != (len(captured) < chunk.total):
            return CheckResult.failed(
                name, f"{stream}: truncated flag disagrees with the byte counts"
            )
        shown.append(f"{stream} {len(captured)}/{record.length} bytes")
    return CheckResult.passed(
        name, f"{', '.join(shown) or 'no streams'} match the report's digests"
    )


def check_report(parsed: ParsedRun, derived: Rederived) -> CheckResult:
    """The sealed body says what the events say."""
    name = "report"
    if parsed.terminal is None:
        return CheckResult.pending(name, _NO_TERMINAL)
    admitted, terminal, sealed = parsed.admitted, parsed.terminal, parsed.sealed
    assert admitted is not None and sealed is not None
    body = sealed.body
    problems: list[str] = []

    def differ(field: str, reported: object, recorded: object) -> None:
        if not canonical.same_value(reported, recorded):
            problems.append(f"{field}: report {show(reported)}, events {show(recorded)}")

    for field in ("plan_id", "h_a", "h_p", "h_l", "backend"):
        differ(field, getattr(body, field), getattr(admitted, field))
    differ("attempt_id", body.attempt_id, parsed.run_id)
    differ("profile", body.profile, profile_label(admitted.profile))
    differ("outcome", body.outcome.value, terminal.outcome.value)
    differ(
        "exit",
        None if body.exit is None else body.exit.to_value(),
        None if terminal.exit is None else terminal.exit.to_value(),
    )
    # Equal witnesses (and admitted requirements) are equal values: each field is checked
    # to its exact type when one is made, so the encodings are compared only when not.
    if body.budget_witnesses != terminal.budget_witnesses:
        differ(
            "budget_witnesses",
            [w.to_value() for w in body.budget_witnesses],
            [w.to_value() for w in terminal.budget_witnesses],
        )
    if derived.record is not None and derived.admitted is not None:
        expected, unknown = derived.admitted, None
    else:
        expected, unknown = _admitted_requirements(derived.record or admitted.admission)
    if unknown is not None:
        problems.append(unknown)
    elif expected != body.admitted:
        difference = first_difference(
            [a.to_value() for a in expected], [a.to_value() for a in body.admitted], "admitted"
        )
        if difference is not None:
            problems.append(f"admitted requirements disagree with the admission: {difference}")
    states, notes = _split(parsed.lines)
    reported_notes = list(observed.details(body, fact_kinds.LAUNCHER_NOTE))
    if reported_notes != notes:
        problems.append(
            f"launcher_note facts ({len(reported_notes)}) are not the recorded launcher notes "
            f"({len(notes)}) in order"
        )
    terminals = list(observed.details(body, fact_kinds.LAUNCHER_TERMINAL))
    try:
        recorded_terminal = check_walk(states) or "none"
    except TranscriptError:
        recorded_terminal = None
    if recorded_terminal is not None and terminals != [recorded_terminal]:
        problems.append(
            f"launcher_terminal facts {terminals} do not say the recorded terminal "
            f"{recorded_terminal!r}"
        )
    problems += _outcome_problems(body, states, notes)
    problems += _witness_problems(body, admitted.spec)
    problems += _fact_problems(body, admitted, notes)
    problems += _marking_problems(body, notes)
    problems += outputs_problems(body, notes, parsed.lowering)
    problems += _derived_fact_problems(body, derived)
    problems += denial_problems(body, notes, parsed.denied, parsed.lowering)
    problems += network_problems(body, parsed.network, parsed.lowering)
    if problems:
        return CheckResult.failed(name, "; ".join(problems))
    return CheckResult.passed(
        name,
        f"ids, outcome {body.outcome.value}, exit, {len(body.admitted)} admitted requirements, "
        f"{len(notes)} launcher notes and {len(body.budget_witnesses)} budget witnesses agree",
    )


def _admitted_requirements(
    admission: AdmissionRecord,
) -> tuple[tuple[AdmittedRequirement, ...], str | None]:
    """The report's ``admitted`` list for ``admission``, or which key names no requirement.

    When admission cannot be re-run, the *recorded* admission record is all there is, and
    its strict decoder checks a requirement key's type but not that it names a
    :class:`RequirementKind`: a forged key must fail this check, not crash the audit.
    """
    known = {kind.value for kind in RequirementKind}
    for position, decision in enumerate(admission.requirements):
        if decision.key.partition(":")[0] not in known:
            return (), (
                f"admission.requirements[{position}].key {show(decision.key)} names no "
                "requirement kind, so the report's admitted requirements cannot be derived"
            )
    try:
        return admitted_requirements(admission), None
    except ValueError as exc:  # ContractError included: belt and braces for other fields
        return (), f"admission.requirements: the report's admitted list cannot be derived ({exc})"


_ERRANT_OUTCOMES = frozenset({"unsupported", "denied", "supervisor_fault"})


def _exit_text(exit_status: ExitStatus | None) -> str:
    if exit_status is None:
        return "no exit"
    if exit_status.signal is not None:
        return f"exit signal={exit_status.signal}"
    return f"exit code={exit_status.code}"


def _outcome_problems(
    body: BoundaryReportBody, states: Sequence[str], notes: Sequence[str]
) -> list[str]:
    """The exit agrees with the launcher's note, and the outcome agrees with the exit."""
    problems: list[str] = []
    exit_status, outcome = body.exit, body.outcome.value
    facts = observed.kinds(body)
    noted = [e for e in map(wire_notes.noted_exit, notes) if e is not None]
    if noted and fact_kinds.HOST_INTERRUPTED not in facts:
        if len(set(noted)) > 1:
            problems.append(f"the transcript notes more than one workload exit ({noted})")
        elif exit_status is None or _exit_text(exit_status) != f"exit {noted[-1]}":
            problems.append(
                f"report {_exit_text(exit_status)}, but the launcher noted workload exit "
                f"{noted[-1]}"
            )
    code = None if exit_status is None else exit_status.code
    signal = None if exit_status is None else exit_status.signal
    if outcome == "completed" and code != 0:
        problems.append(f"outcome completed with {_exit_text(exit_status)} (needs exit code 0)")
    elif outcome == "failed" and code in (None, 0):
        problems.append(
            f"outcome failed with {_exit_text(exit_status)} (needs a non-zero exit code)"
        )
    elif outcome in ("timeout", "killed") and signal is None:
        interrupted = (
            outcome == "killed" and exit_status is None and fact_kinds.HOST_INTERRUPTED in facts
        )
        if not (interrupted or _deadline_race(body)):
            problems.append(
                f"outcome {outcome} with {_exit_text(exit_status)} (needs an exit signal; "
                "a workload that exited with a code was not killed, unless a wall budget's "
                "deadline passed as it exited: a budget_exceeded wall_micros fact)"
            )
    elif outcome in _ERRANT_OUTCOMES and exit_status is not None and "ExecSucceeded" not in states:
        problems.append(
            f"outcome {outcome} with {_exit_text(exit_status)}, but the transcript never "
            "reached ExecSucceeded (no workload ran to exit)"
        )
    if "ExecSucceeded" not in states:
        captured = sum(record.captured for record in body.streams)
        if captured:
            problems.append(
                f"the report holds {captured} bytes of the workload's output, but the "
                "transcript never reached ExecSucceeded (no workload ran to write them)"
            )
    return problems


def _deadline_race(body: BoundaryReportBody) -> bool:
    """A timeout whose workload exited with a code of its own: the deadline race.

    The host's deadline is the *launcher's*: it fires when the launcher has not exited by
    then. A workload that exits in the last milliseconds (the launcher still reporting
    its status) leaves the run past its wall budget — so never ``completed`` — with the
    workload's real code, which the kill came too late to change. That pair is the truth,
    and the runner records it with the ``budget_exceeded`` fact for ``wall_micros``; a
    report without that fact, or without a wall budget to exceed, cannot claim it.
    """
    if body.exit is None or body.exit.code is None or body.outcome.value != "timeout":
        return False
    budgeted = any(
        w.dimension.value == "wall_micros" and w.limit is not None for w in body.budget_witnesses
    )
    deadline = any(
        detail.startswith("wall_micros:")
        for detail in observed.details(body, fact_kinds.BUDGET_EXCEEDED)
    )
    return budgeted and deadline


def _witness_problems(body: BoundaryReportBody, spec: BoundarySpec) -> list[str]:
    """Each witness states the spec's limit and guarantee, and ``exceeded`` follows from them."""
    problems: list[str] = []
    seen: set[str] = set()
    oom = any(
        detail.startswith("resident_bytes")
        for detail in observed.details(body, fact_kinds.BUDGET_EXCEEDED)
    )
    for witness in body.budget_witnesses:
        name = witness.dimension.value
        if name in seen:
            problems.append(f"budget witness {name} appears twice")
        seen.add(name)
        budget = spec.budgets.get(witness.dimension)
        if budget is None:
            if witness.limit is not None or witness.guarantee != "unrequested":
                problems.append(
                    f"budget witness {name}: the spec did not request it, so limit must be "
                    f"null and guarantee 'unrequested' (report: limit {witness.limit}, "
                    f"guarantee {witness.guarantee!r})"
                )
        else:
            if witness.limit != budget.limit:
                problems.append(
                    f"budget witness {name}: limit {witness.limit}, the spec's limit is "
                    f"{budget.limit}"
                )
            if witness.guarantee != budget.guarantee.value:
                problems.append(
                    f"budget witness {name}: guarantee {witness.guarantee!r}, the spec asks "
                    f"{budget.guarantee.value!r}"
                )
        over = (
            witness.observed is not None
            and witness.limit is not None
            and witness.observed > witness.limit
        )
        oom_exceeded = oom and name == "resident_bytes" and budget is not None
        if witness.exceeded != over and not (witness.exceeded and oom_exceeded):
            problems.append(
                f"budget witness {name}: exceeded={witness.exceeded}, but observed "
                f"{witness.observed} against limit {witness.limit} says {over}"
            )
    return problems


def _fact_problems(body: BoundaryReportBody, admitted: Admitted, notes: Sequence[str]) -> list[str]:
    """Facts that restate recorded evidence must restate it exactly."""
    problems: list[str] = []
    lengths = {record.name: record.length for record in body.streams}
    pids = [p for p in map(wire_notes.noted_workload_pid, notes) if p is not None]
    identity = admitted.profile.facts.launcher_identity
    for fact in body.observed:
        if fact.kind == fact_kinds.STREAM_CAPTURED:
            name, _, total = fact.detail.partition(" bytes=")
            if name not in lengths or total != str(lengths[name]):
                shown = "no such stream" if name not in lengths else f"length {lengths[name]}"
                problems.append(
                    f"stream_captured fact {fact.detail!r} disagrees with the report's "
                    f"stream record ({shown})"
                )
        elif fact.kind == fact_kinds.WORKLOAD_LAUNCHED:
            if not pids or fact.detail != f"pid={pids[-1]}":
                noted = f"pid={pids[-1]}" if pids else "no workload pid"
                problems.append(
                    f"workload_launched fact {fact.detail!r}, but the launcher noted {noted}"
                )
        elif (
            fact.kind == fact_kinds.LAUNCHER_IDENTITY
            and identity is not None
            and fact.detail != identity
        ):
            problems.append(
                f"launcher_identity fact {fact.detail[:16]!r} is not the profile's "
                f"launcher identity {identity[:16]!r}"
            )
    return problems


def _derived_fact_problems(body: BoundaryReportBody, derived: Rederived) -> list[str]:
    """Facts that follow from the plan alone must be exactly what the plan implies."""
    plan = derived.plan
    if plan is None:
        return []
    problems: list[str] = []
    expected = list(derived.lowering_facts)  # lowering_facts(plan), computed with it
    reported = [(f.kind, f.detail) for f in body.observed if f.kind in LOWERING_FACT_KINDS]
    if reported != expected:
        problems.append(f"lowering facts {reported} are not what the plan implies {expected}")
    grants = derived.grants  # filesystem_grants(plan)
    confined = observed.details(body, fact_kinds.FILESYSTEM_CONFINED)
    if len(confined) > 1:
        problems.append("more than one filesystem_confined fact")
    for detail in confined:
        extra = [item for item in detail.split(", ") if item not in grants]
        if extra:
            problems.append(f"filesystem_confined names grants the plan does not make: {extra}")
    return problems


def _marking_problems(body: BoundaryReportBody, notes: Sequence[str]) -> list[str]:
    """Marks a forger would most like to drop or add must follow from the evidence.

    * A run the launcher ran with a test hook (its own DANGER note) must carry the
      ``test_hook_active`` fact and finding for that hook, and no run may claim a hook the
      launcher did not note: a lying run can never pass for an honest one.
    * A "mediated budget ... exceeded" finding exists exactly for the witnesses that say a
      mediated budget was exceeded.
    * Denied attempts: :mod:`bvisor.replay.denials`; artifacts: :mod:`bvisor.replay.outputs`.
    """
    problems: list[str] = []
    prefix = wire_notes.DANGER_PREFIX
    noted = sorted(n.removeprefix(prefix) for n in notes if n.startswith(prefix))
    marked = sorted(observed.details(body, fact_kinds.TEST_HOOK_ACTIVE))
    flagged = finding_subjects(body.findings, TEST_HOOK_FINDING)
    if not noted == marked == flagged:
        problems.append(
            f"test hooks: launcher noted {noted}, report facts say {marked}, findings say {flagged}"
        )
    exceeded = sorted(
        w.dimension.value for w in body.budget_witnesses if w.guarantee == "mediated" and w.exceeded
    )
    reported = finding_subjects(body.findings, MEDIATED_FINDING)
    if exceeded != reported:
        problems.append(
            f"mediated budgets exceeded per witnesses {exceeded}, per findings {reported}"
        )
    return problems


def check_seal(parsed: ParsedRun) -> CheckResult:
    """The seal is the ``bvisor.report.v1`` digest of the recorded canonical body."""
    name = "seal"
    if parsed.terminal is None:
        return CheckResult.pending(name, _NO_TERMINAL)
    sealed = parsed.sealed
    assert sealed is not None
    computed = digest_bytes(Purpose.REPORT, sealed.body_bytes)
    if not _same(computed, sealed.seal):
        return CheckResult.failed(
            name,
            f"seal {sealed.seal.hex()[:16]} is not the digest of the recorded body "
            f"({computed.hex()[:16]}): the body was edited after sealing",
        )
    return CheckResult.passed(name, f"seal {computed.hex()[:16]} recomputed from the body")


# -- rerun link --------------------------------------------------------------------------


def check_rerun_of(
    link: RerunLink, run_id: bytes, first_seq: int, linked: Sequence[Event] | str
) -> CheckResult:
    """The run a rerun names is in the ledger, came before it, and is that very run.

    ``linked`` is the named run's events as the ledger holds them, or why they cannot be
    had. The named run is decoded as strictly as any run, and its plan id and seal (the
    seal re-computed from its body) must be the ones the link states: pointing at a run
    that does not exist, at a later one, or with a digest of another plan or report fails.
    The named run's own verdict is its own audit's (``bvisor-replay`` on it).
    """
    name = RERUN_CHECK
    old = link.run_id.hex()[:16]
    if link.run_id == run_id:
        return CheckResult.failed(name, "the run names itself as the run it re-executes")
    if isinstance(linked, str):
        return CheckResult.failed(name, f"names run {old} as the run it re-executes: {linked}")
    if not linked:
        return CheckResult.failed(
            name, f"names run {old} as the run it re-executes, but the ledger holds no such run"
        )
    if linked[-1].seq >= first_seq:
        return CheckResult.failed(
            name,
            f"names run {old}, whose events reach seq {linked[-1].seq}, at or after this run's "
            f"first event {first_seq}: a rerun re-executes a run recorded before it",
        )
    try:
        parsed = parse_run(link.run_id, linked)
    except GrammarError as exc:
        return CheckResult.failed(name, f"run {old} is not a well-formed run: {exc}")
    if parsed.admitted is None or parsed.sealed is None:
        what = "was refused" if parsed.refused is not None else "has no sealed report"
        return CheckResult.failed(name, f"names run {old}, which {what}: nothing to re-execute")
    if not _same(parsed.admitted.plan_id, link.plan_id):
        return CheckResult.failed(
            name,
            f"plan_id {link.plan_id.hex()[:16]} is not run {old}'s plan id "
            f"{parsed.admitted.plan_id.hex()[:16]}",
        )
    seal = digest_bytes(Purpose.REPORT, parsed.sealed.body_bytes)
    if not (_same(parsed.sealed.seal, link.seal) and _same(seal, link.seal)):
        return CheckResult.failed(
            name,
            f"seal {link.seal.hex()[:16]} is not run {old}'s seal {seal.hex()[:16]} "
            "(re-computed from its report)",
        )
    return CheckResult.passed(
        name,
        f"re-executes run {old} (events {linked[0].seq}..{linked[-1].seq}): its plan id "
        f"{link.plan_id.hex()[:16]} and seal {link.seal.hex()[:16]} match",
    )
