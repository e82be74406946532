"""``audit()``: re-verify recorded runs from the ledger alone, without running anything.

The pipeline per run is fixed: ``chain`` (from one ``bvisor.ledger.verify`` pass over the ledger,
shared by every run), ``grammar`` (decode and order the run's events), then the digests
of the plan (``h_p``, ``h_a``, ``h_l``, ``plan_id`` — admission and lowering re-run with
the pure planner on the recorded spec and profile), then what ran (``transcript``,
``streams``, ``report``, ``seal``). A check whose inputs an earlier check could not
produce is reported as skipped, never as passed.

Reading is all this needs: a read-only :class:`ledger.Ledger` handle is enough, and the
audit never writes. The whole chain, genesis to head, is always verified — also when
particular runs are named: an event is proven only by the next event's link to it, so a
run's own tail is vouched for by what comes after it. The verify result is part of the
report, and any ledger finding makes the audit fail. Runs are enumerated from the events
themselves (every ``run_id`` the chain carries, plus any the ``runs`` index names), never
from the index alone, so a run whose index rows were deleted is still audited.

Each event is read once: the chain pass hands every record it proved to the audit, its
payload undecoded (``bvisor.ledger.ProvenRecord``), and the audit checks a run's contents
as soon as its last event (``report.sealed`` or ``plan.refused``) has gone by and keeps
only the verdicts. The run is read by its payloads' bytes, decoding only what no earlier
run had byte for byte (:mod:`bvisor.replay.records`), and the checks of a plan it shares
with an earlier run are that run's (:mod:`bvisor.replay.plancache`); whatever that path
does not accept is decoded and parsed event by event, which names what is wrong. A run
that is not readable whole that way (a damaged event, an event after its end, very many
runs open at once) is read again and judged as before.

Damage is localised: a run fails the ``chain`` check only for a finding at one of its own
events, a change a checkpoint locates among them, or a break of the header chain before
its end — a damaged payload of another run leaves its header, and so this run's events,
proven (``bvisor.ledger.verify``, ``chain_bad_seq``), and the check says so.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from bvisor.contract.events import CLOSING_KINDS, is_note
from bvisor.contract.report_inputs import TEST_HOOK_FINDING, finding_subjects
from bvisor.contract.rerun import RerunLink
from bvisor.ledger import Event, Head, Ledger, LedgerError, ProvenRecord, RunSummary, verify_runs
from bvisor.ledger.checkpoint import SignedCheckpoint
from bvisor.ledger.note import Verifier
from bvisor.ledger.tree_verify import CheckpointCheck
from bvisor.replay.checks import (
    CHECK_NAMES,
    REFUSED_CHECK_NAMES,
    RERUN_CHECK,
    ChainEvidence,
    check_chain,
    check_grammar,
    check_report,
    check_rerun_of,
    check_seal,
    check_streams,
    check_transcript,
    grammar_verdict,
)
from bvisor.replay.derive import rederive_memo
from bvisor.replay.events import ParsedRun
from bvisor.replay.plancache import plan_checks
from bvisor.replay.records import parse_records
from bvisor.replay.results import AuditReport, CheckResult, Judged, RunAudit, verdict_of

__all__ = [
    "Linker",
    "Progress",
    "ReplayUsageError",
    "audit",
    "audit_run",
    "content_checks",
    "ledger_linker",
    "record_checks",
]

# progress(stage, done, total): stage is "chain" (events verified) or "runs" (runs audited).
Progress = Callable[[str, int, int], None]
# A rerun's link (and its first seq) -> its ``rerun_of`` check; it reads another run.
Linker = Callable[[RerunLink, bytes, int], CheckResult]
_DEFERRED = "deferred until the chain pass is over"


class ReplayUsageError(ValueError):
    """The caller named a run the ledger does not hold (or passed a malformed id)."""


# Events held for runs still open; past this the audit falls back to reading them again.
_HELD_LIMIT = 200_000


@dataclass(slots=True)
class _Open:
    """One run's events as the chain pass delivers them, until its contents are judged."""

    events: list[ProvenRecord] = field(default_factory=list)
    count: int = 0
    content: Judged | None = None
    first_time_ns: int = 0
    stale: bool = False  # judged too early (an event after its end), or dropped: read again


class _Collector:
    """Judges each run's contents as the chain pass goes by (see module)."""

    def __init__(self, wanted: set[bytes] | None) -> None:
        self.wanted = wanted
        self.runs: dict[bytes, _Open] = {}
        self.held = 0
        # Links met during the pass: the ledger is read for them once it is over.
        self.links: dict[bytes, tuple[RerunLink, int]] = {}

    def _defer(self, link: RerunLink, run_id: bytes, first_seq: int) -> CheckResult:
        self.links[run_id] = (link, first_seq)
        return CheckResult.skipped(RERUN_CHECK, _DEFERRED)

    def __call__(self, event: ProvenRecord) -> None:
        run_id = event.run_id
        if run_id is None:
            return
        state = self.runs.get(run_id)
        if state is None:
            if self.wanted is not None and run_id not in self.wanted:
                return
            state = self.runs[run_id] = _Open(first_time_ns=event.time_ns)
        state.count += 1
        if state.stale:
            return
        if state.content is not None:
            if not is_note(event.kind):
                state.stale = True  # the run goes on after its end: judge it whole later
            return
        state.events.append(event)
        self.held += 1
        if event.kind in CLOSING_KINDS:
            state.content = record_checks(run_id, state.events, self._defer)
            self.held -= len(state.events)
            state.events = []
        elif self.held > _HELD_LIMIT:
            for other in self.runs.values():
                if other.content is None and not other.stale:
                    other.stale = True
                    self.held -= len(other.events)
                    other.events = []


def audit(
    ledger: Ledger,
    run_ids: Iterable[bytes] | None = None,
    progress: Progress | None = None,
    *,
    expect_head: Head | None = None,
    checkpoint: SignedCheckpoint | None = None,
    verifiers: Sequence[Verifier] = (),
) -> AuditReport:
    """Audit ``run_ids`` (default: every run, in ledger order) of an open ledger.

    ``expect_head``, ``checkpoint`` and ``verifiers`` are anchors kept elsewhere (as for
    ``bvisor.ledger.verify``); with one, a run with events it does not cover fails its
    ``chain`` check, named "not yet covered".
    """
    wanted = None if run_ids is None else {r for r in run_ids if isinstance(r, bytes)}
    collector = _Collector(wanted)
    try:
        result, runs = verify_runs(
            ledger,
            progress=None if progress is None else (lambda d, t: progress("chain", d, t)),
            on_record=collector,
            expect_head=expect_head,
            checkpoint=checkpoint,
            verifiers=verifiers,
        )
    except LedgerError as exc:
        return AuditReport([], error=f"the ledger cannot be verified: {exc}")
    targets = _select(list(runs), run_ids)
    covered, covered_by = None, ""
    if result.checkpoint is not None:
        covered, covered_by = result.checkpoint.covered, "a signed checkpoint"
    elif expect_head is not None:
        covered, covered_by = expect_head.seq + 1, f"the expected head {expect_head}"
    chain = ChainEvidence.of(
        result.chain_bad_seq,
        result.findings,
        result.events,
        result.rewritten,
        covered,
        covered_by,
    )
    audits: list[RunAudit] = []
    linker = ledger_linker(ledger, runs)
    for done, run_id in enumerate(targets, start=1):
        seqs = runs[run_id]
        state = collector.runs.get(run_id)
        if state is not None and not state.stale and state.count == len(seqs) and seqs:
            checks, outcome, hooks = state.content or record_checks(run_id, state.events, linker)
            if run_id in collector.links:
                link, first = collector.links[run_id]
                checks = [
                    linker(link, run_id, first) if c.name == RERUN_CHECK else c for c in checks
                ]
            audited = _finish(
                run_id,
                Judged([check_chain(seqs, chain, None), *checks], outcome, hooks),
                state.first_time_ns,
            )
        else:
            events, read_error = _read(ledger, run_id, seqs)
            audited = audit_run(
                _summary(run_id, seqs, events), events, chain, read_error, linker=linker
            )
            if events is None:  # no event to take a time from
                audited = dataclasses.replace(audited, time_ns=None)
        audits.append(_authored(audited, seqs, result.checkpoint))
        if progress is not None:
            progress("runs", done, len(targets))
    return AuditReport(audits, ledger=result)


def _authored(audited: RunAudit, seqs: list[int], check: CheckpointCheck | None) -> RunAudit:
    """With trusted keys, whether a checkpoint names every event of a covered run as its
    signer's own (``bvisor-recorded``); a run not wholly covered is left unsaid."""
    if check is None or not check.signatures_checked or not seqs or seqs[-1] >= check.covered:
        return audited
    return dataclasses.replace(audited, recorded_by_signer=audited.run_id in check.recorded_run_ids)


def ledger_linker(ledger: Ledger, runs: dict[bytes, list[int]]) -> Linker:
    """A rerun's ``rerun_of`` check against ``ledger`` (``runs``: each run's seqs)."""

    def link(rerun: RerunLink, run_id: bytes, first_seq: int) -> CheckResult:
        seqs = runs.get(rerun.run_id, [])
        if not seqs:
            return check_rerun_of(rerun, run_id, first_seq, [])
        events, error = _read(ledger, rerun.run_id, seqs)
        return check_rerun_of(
            rerun, run_id, first_seq, events if events is not None else error or ""
        )

    return link


def _read(ledger: Ledger, run_id: bytes, seqs: list[int]) -> tuple[list[Event] | None, str | None]:
    """The run's events as the chain holds them (strictly decoded), or why they cannot be."""
    if not seqs:
        return None, f"the runs index names run {run_id.hex()} but no event carries it"
    try:
        return [ledger.get(seq) for seq in seqs], None
    except LedgerError as exc:
        return None, str(exc)


def _summary(run_id: bytes, seqs: list[int], events: list[Event] | None) -> RunSummary:
    first = events[0] if events else None
    last = events[-1] if events else None
    return RunSummary(
        run_id=run_id,
        first_seq=seqs[0] if seqs else -1,
        last_seq=seqs[-1] if seqs else -1,
        count=len(seqs),
        first_time_ns=0 if first is None else first.time_ns,
        last_time_ns=0 if last is None else last.time_ns,
        last_kind="" if last is None else last.kind,
    )


def _select(recorded: list[bytes], run_ids: Iterable[bytes] | None) -> list[bytes]:
    if run_ids is None:
        return recorded
    known = set(recorded)
    chosen: list[bytes] = []
    for run_id in run_ids:
        if not isinstance(run_id, bytes):
            raise ReplayUsageError(f"run id {run_id!r}: expected bytes")
        if run_id not in known:
            raise ReplayUsageError(f"run {run_id.hex()}: no such run in the ledger")
        if run_id not in chosen:
            chosen.append(run_id)
    return chosen


def audit_run(
    summary: RunSummary,
    events: Sequence[Event] | None,
    chain: ChainEvidence | CheckResult,
    read_error: str | None = None,
    *,
    linker: Linker | None = None,
) -> RunAudit:
    """Run every check on one run's events (``None`` when they could not be read).

    ``chain`` is the ledger's verify evidence, or a ``chain`` check already decided by
    another proof (a checkpoint, an expected head, a proof bundle). ``linker`` checks a
    rerun's link to the run it names; without one (a bundle holds one run) that check is
    skipped, and so the rerun is not verified.
    """
    seqs = [] if events is None else [event.seq for event in events]
    first = chain if isinstance(chain, CheckResult) else check_chain(seqs, chain, read_error)
    if events is None:
        checks = [first, *_skip(CHECK_NAMES[1:], "the run's events cannot be read")]
        return _finish(summary.run_id, Judged(checks, None), summary.first_time_ns)
    content, outcome, hooks = content_checks(summary.run_id, events, linker)
    return _finish(summary.run_id, Judged([first, *content], outcome, hooks), summary.first_time_ns)


def content_checks(run_id: bytes, events: Sequence[Event], linker: Linker | None = None) -> Judged:
    """Every check after ``chain`` (grammar, digests, what ran), and the recorded outcome.

    A rerun (``plan.admitted`` names the run it re-executes) has one more check,
    ``rerun_of``, by ``linker`` — skipped when there is none to read the other run.
    """
    grammar, parsed = check_grammar(run_id, events)
    return _judge(run_id, grammar, parsed, events[0].seq if events else -1, linker)


def record_checks(
    run_id: bytes, records: Sequence[ProvenRecord], linker: Linker | None = None
) -> Judged:
    """:func:`content_checks` of the events of these proven records: read by their bytes
    (bvisor.replay.records) when that path accepts them, else decoded and parsed."""
    parsed = parse_records(run_id, records)
    if parsed is None:
        return content_checks(run_id, [record.event() for record in records], linker)
    return _judge(run_id, grammar_verdict(parsed), parsed, records[0].seq, linker)


def _judge(
    run_id: bytes,
    grammar: CheckResult,
    parsed: ParsedRun | None,
    first_seq: int,
    linker: Linker | None,
) -> Judged:
    checks = [grammar]
    if parsed is None:
        checks += _skip(CHECK_NAMES[2:], "the events are not a well-formed run (grammar)")
        return Judged(checks, None)
    source = parsed.admitted or parsed.refused
    assert source is not None
    version = (
        parsed.admitted.admission.rules_version
        if parsed.admitted is not None
        else parsed.refused.rules_version  # type: ignore[union-attr]
    )
    derived = rederive_memo(
        source.spec, source.profile, version, source.spec_bytes, source.profile_bytes
    )
    checks += plan_checks(parsed, derived)
    if parsed.refused is not None:
        assert ["chain", *(c.name for c in checks)] == list(REFUSED_CHECK_NAMES)
        return Judged(checks, "refused")
    checks += [
        check_transcript(parsed),
        check_streams(parsed),
        check_report(parsed, derived),
        check_seal(parsed),
    ]
    link = parsed.admitted.rerun_of if parsed.admitted is not None else None
    if link is not None:
        if linker is None:
            why = "the run it re-executes is not at hand here (only the ledger holds it)"
            checks.append(CheckResult.skipped(RERUN_CHECK, why))
        else:
            checks.append(linker(link, run_id, first_seq))
    outcome = None if parsed.terminal is None else parsed.terminal.outcome.value
    hooks = (
        ()
        if parsed.sealed is None
        else tuple(finding_subjects(parsed.sealed.body.findings, TEST_HOOK_FINDING))
    )
    return Judged(checks, outcome, hooks)


def _skip(names: Sequence[str], why: str) -> list[CheckResult]:
    return [CheckResult.skipped(name, why) for name in names]


def _finish(run_id: bytes, judged: Judged, time_ns: int | None) -> RunAudit:
    return RunAudit(
        run_id=run_id,
        verdict=verdict_of(judged.checks),
        checks=judged.checks,
        outcome=judged.outcome,
        time_ns=time_ns,
        test_hooks=judged.test_hooks,
    )
