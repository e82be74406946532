"""``audit()``: re-verify recorded runs from the ledger alone, without running anything.

The pipeline per run is fixed: ``chain`` (from one ``ledger.verify`` pass over the ledger,
shared by every run), ``grammar`` (decode and order the run's events), then the digests
of the plan (``h_p``, ``h_a``, ``h_l``, ``plan_id`` — admission and lowering re-run with
the pure planner on the recorded spec and profile), then what ran (``transcript``,
``streams``, ``report``, ``seal``). A check whose inputs an earlier check could not
produce is reported as skipped, never as passed.

Reading is all this needs: a read-only :class:`ledger.Ledger` handle is enough, and the
audit never writes. When particular runs are named, the chain is verified only up to the
last of their events (a chain is proven from genesis forward, so that is sufficient).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from ledger import Event, Ledger, LedgerError, RunSummary, verify
from replay.checks import (
    CHECK_NAMES,
    REFUSED_CHECK_NAMES,
    ChainEvidence,
    check_chain,
    check_grammar,
    check_h_a,
    check_h_l,
    check_h_p,
    check_plan_id,
    check_report,
    check_seal,
    check_streams,
    check_transcript,
)
from replay.derive import rederive_memo
from replay.results import AuditReport, CheckResult, RunAudit, verdict_of

__all__ = ["Progress", "ReplayUsageError", "audit", "audit_run"]

# progress(stage, done, total): stage is "chain" (events verified) or "runs" (runs audited).
Progress = Callable[[str, int, int], None]


class ReplayUsageError(ValueError):
    """The caller named a run the ledger does not hold (or passed a malformed id)."""


def audit(
    ledger: Ledger,
    run_ids: Iterable[bytes] | None = None,
    progress: Progress | None = None,
) -> AuditReport:
    """Audit ``run_ids`` (default: every run, in ledger order) of an open ledger."""
    try:
        summaries = ledger.runs()
    except LedgerError as exc:
        return AuditReport([], error=f"the ledger's run index cannot be read: {exc}")
    targets = _select(summaries, run_ids)
    stop = None if run_ids is None else max((s.last_seq for s in targets), default=-1) + 1
    try:
        result = verify(
            ledger,
            stop=stop,
            progress=None if progress is None else (lambda d, t: progress("chain", d, t)),
        )
    except LedgerError as exc:
        return AuditReport([], error=f"the ledger cannot be verified: {exc}")
    chain = ChainEvidence.of(result.first_bad_seq, result.findings, result.events)
    audits: list[RunAudit] = []
    for done, summary in enumerate(targets, start=1):
        try:
            events: list[Event] | None = ledger.run_events(summary.run_id)
            read_error = None
        except LedgerError as exc:
            events, read_error = None, str(exc)
        audits.append(audit_run(summary, events, chain, read_error))
        if progress is not None:
            progress("runs", done, len(targets))
    return AuditReport(audits)


def _select(summaries: list[RunSummary], run_ids: Iterable[bytes] | None) -> list[RunSummary]:
    if run_ids is None:
        return summaries
    by_id = {summary.run_id: summary for summary in summaries}
    chosen: list[RunSummary] = []
    for run_id in run_ids:
        if not isinstance(run_id, bytes):
            raise ReplayUsageError(f"run id {run_id!r}: expected bytes")
        if run_id not in by_id:
            raise ReplayUsageError(f"run {run_id.hex()}: no such run in the ledger")
        if by_id[run_id] not in chosen:
            chosen.append(by_id[run_id])
    return chosen


def audit_run(
    summary: RunSummary,
    events: Sequence[Event] | None,
    chain: ChainEvidence,
    read_error: str | None = None,
) -> RunAudit:
    """Run every check on one run's events (``None`` when they could not be read)."""
    seqs = [] if events is None else [event.seq for event in events]
    checks = [check_chain(seqs, chain, read_error)]
    outcome: str | None = None
    if events is None:
        checks += _skip(CHECK_NAMES[1:], "the run's events cannot be read")
        return _finish(summary, checks, outcome)
    grammar, parsed = check_grammar(summary.run_id, events)
    checks.append(grammar)
    if parsed is None:
        checks += _skip(CHECK_NAMES[2:], "the events are not a well-formed run (grammar)")
        return _finish(summary, checks, outcome)
    source = parsed.admitted or parsed.refused
    assert source is not None
    derived = rederive_memo(source.spec, source.profile, source.spec_bytes, source.profile_bytes)
    checks += [check_h_p(parsed), check_h_a(parsed, derived)]
    if parsed.refused is not None:
        assert [c.name for c in checks] == list(REFUSED_CHECK_NAMES)
        return _finish(summary, checks, "refused")
    checks += [
        check_h_l(parsed, derived),
        check_plan_id(parsed, derived),
        check_transcript(parsed),
        check_streams(parsed),
        check_report(parsed, derived),
        check_seal(parsed),
    ]
    if parsed.terminal is not None:
        outcome = parsed.terminal.outcome.value
    return _finish(summary, checks, outcome)


def _skip(names: Sequence[str], why: str) -> list[CheckResult]:
    return [CheckResult.skipped(name, why) for name in names]


def _finish(summary: RunSummary, checks: list[CheckResult], outcome: str | None) -> RunAudit:
    return RunAudit(
        run_id=summary.run_id,
        verdict=verdict_of(checks),
        checks=checks,
        outcome=outcome,
        time_ns=summary.first_time_ns,
    )
