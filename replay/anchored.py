"""Auditing one run against a trusted anchor, in O(that run + log n) — not the whole chain.

``audit`` proves a run by verifying the chain from genesis to the head; that is the only
proof a bare hash chain offers, and it costs the whole ledger. Given an anchor kept
elsewhere, one run needs far less:

* a **signed checkpoint** (``--checkpoint FILE`` or the ledger's latest, with ``--pub``):
  each of the run's records is proven by its RFC 9162 inclusion proof under the signed root
  — O(log n) each. Events after the checkpoint are "not yet covered by a signed
  checkpoint" and fail the ``chain`` check, naming them.
* an **expected head** (``--expect-head SEQ:HASH``): the chain is walked from the run's
  first event to the head and must end in that hash — O(events from the run to the head),
  which for ``--last`` is the run itself plus whatever was appended after it.

The run's events are the events in its span (its first to its last listed seq) that carry
its id, read from the records; the ``runs`` index and the ``runstart`` table only say
where to look, and ``--last`` is confirmed by scanning from the candidate to the end for a
newer ``plan.*`` event. Every later check is the same as ``audit``'s.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from itertools import pairwise

from bvisor.contract.events import OPENING_KINDS
from bvisor.contract.rerun import RerunLink
from bvisor.ledger import Event, Head, Ledger, LedgerError, RunSummary
from bvisor.ledger.checkpoint import SignedCheckpoint, ledger_origin, within
from bvisor.ledger.note import NoteError, Verifier
from bvisor.ledger.proofs import ProofSource, ProofUnavailable
from bvisor.ledger.record import RecordError, decode_record
from bvisor.ledger.store import Snapshot
from bvisor.replay.audit import Linker, audit_run
from bvisor.replay.checks import check_rerun_of
from bvisor.replay.results import AuditReport, CheckResult, RunAudit

__all__ = ["CheckpointAnchor", "HeadAnchor", "audit_anchored", "trusted_stored"]


@dataclass(frozen=True, slots=True)
class HeadAnchor:
    """``SEQ:HASH`` of an event, kept elsewhere."""

    head: Head

    def describe(self) -> str:
        return f"expected head {self.head.seq}:{self.head.hash.hex()[:16]}"


@dataclass(frozen=True, slots=True)
class CheckpointAnchor:
    """A checkpoint whose signature the caller has checked (``signed_by`` says by whom).

    ``verifiers``: the trusted keys its signature was checked with (none: it was not).
    With them, the ledger's other stored checkpoints signed by one are consulted, each
    found by its size (O(log n), however many the ledger holds): a run the given
    checkpoint cannot prove — because events it covers were changed after the run — may
    still be proven by an earlier one that still holds, and is said to be; and the one
    signed with the run says whether its signer recorded it (``bvisor-recorded``).
    """

    signed: SignedCheckpoint
    signed_by: str
    verifiers: tuple[Verifier, ...] = ()

    def describe(self) -> str:
        cp = self.signed.checkpoint
        return f"checkpoint of {cp.size} events (root {cp.root.hex()[:16]}), {self.signed_by}"


Anchor = HeadAnchor | CheckpointAnchor


class _Unreadable(Exception):
    pass


def _decode(snap: Snapshot, seq: int) -> Event | None:
    raw = snap.event_raw(seq)
    if raw is None:
        return None
    try:
        decoded = decode_record(raw)
    except RecordError as exc:
        raise _Unreadable(f"event {seq}: {exc.detail}") from None
    if decoded.event.seq != seq or not decoded.payload_ok:
        raise _Unreadable(f"event {seq}: the record is damaged (run verify)")
    return decoded.event


def audit_anchored(
    ledger: Ledger,
    run_ids: Sequence[bytes] | None,
    anchor: Anchor,
    *,
    proven: dict[bytes, list[Event]] | None = None,
) -> AuditReport:
    """Audit ``run_ids`` (None: the run that started last) against ``anchor``.

    ``proven`` receives each run's events as they were audited, read in the audit's own
    snapshot: what is said of a run afterwards (``attest``) must be said of these, not of
    the events a second read finds (the runs index, which whoever could write the ledger
    may have changed in between, decides which events a read returns)."""
    try:
        with ledger.snapshot() as snap:
            events = snap.event_count()
            problem = _anchor_problem(snap, anchor, events)
            if problem is not None:
                return AuditReport([], error=problem, anchor=anchor.describe())
            targets = list(run_ids) if run_ids is not None else _last_run(snap)
            if not targets:
                return AuditReport([], error="no runs are recorded yet", anchor=anchor.describe())
            source = ProofSource(snap) if isinstance(anchor, CheckpointAnchor) else None
            audits = [_audit_one(snap, run_id, anchor, source, proven) for run_id in targets]
    except LedgerError as exc:
        return AuditReport([], error=f"the ledger cannot be read: {exc}", anchor=anchor.describe())
    return AuditReport(audits, anchor=anchor.describe())


def _anchor_problem(snap: Snapshot, anchor: Anchor, events: int) -> str | None:
    if isinstance(anchor, HeadAnchor):
        if anchor.head.seq >= events:
            return (
                f"the expected head names event {anchor.head.seq} but the ledger holds "
                f"{events} events: events were removed (or this is another ledger)"
            )
        return None
    checkpoint = anchor.signed.checkpoint
    origin = ledger_origin(snap.ledger_id)
    if checkpoint.origin != origin:
        return f"the checkpoint is for log {checkpoint.origin!r}, not this ledger ({origin})"
    if checkpoint.size > events:
        return (
            f"the checkpoint covers {checkpoint.size} events but the ledger holds {events}: "
            f"events {events}..{checkpoint.size - 1} were removed"
        )
    return None


def _last_run(snap: Snapshot) -> list[bytes]:
    """The run whose first event is the newest, confirmed from the records (module doc)."""
    candidate = snap.latest_run_start()
    start = 0
    if candidate is not None:
        try:
            first = _decode(snap, candidate[0])
        except _Unreadable:
            first = None
        if first is not None and first.run_id == candidate[1] and first.kind in OPENING_KINDS:
            start = candidate[0]
        else:
            candidate = None
    if candidate is None:  # no table, or one that does not hold: the index, O(runs)
        starts = list(snap.run_starts())
        if not starts:
            return []
        start = max(starts)[0]
    newest: bytes | None = None
    for key, raw in snap.event_items(start, None):
        try:
            event = decode_record(raw).event
        except RecordError:
            continue
        plan = event.kind in OPENING_KINDS and event.run_id is not None
        if plan and event.seq == int.from_bytes(key, "big"):
            newest = event.run_id
    return [] if newest is None else [newest]


def _audit_one(
    snap: Snapshot,
    run_id: bytes,
    anchor: Anchor,
    source: ProofSource | None,
    proven: dict[bytes, list[Event]] | None = None,
) -> RunAudit:
    listed = snap.run_seqs(run_id)
    summary = RunSummary(run_id, -1, -1, 0, 0, 0, "")
    if not listed:
        return audit_run(
            summary, None, CheckResult.failed("chain", "the ledger lists no events for this run")
        )
    try:
        if isinstance(anchor, HeadAnchor):
            events, chain = _by_head(snap, run_id, listed, anchor)
        else:
            assert source is not None
            events, chain = _by_checkpoint(snap, run_id, listed, anchor, source)
    except _Unreadable as exc:
        chain = CheckResult.failed("chain", f"the run's events cannot be read: {exc}")
        return audit_run(summary, None, chain)
    summary = RunSummary(
        run_id,
        events[0].seq,
        events[-1].seq,
        len(events),
        events[0].time_ns,
        events[-1].time_ns,
        events[-1].kind,
    )
    if proven is not None:
        proven[run_id] = events
    audited = audit_run(summary, events, chain, linker=_anchored_linker(snap, anchor, source))
    if isinstance(anchor, CheckpointAnchor) and anchor.verifiers and chain.ok:
        assert source is not None
        seqs = [event.seq for event in events]
        recorded = _recorded_by_signer(snap, source, run_id, seqs, anchor)
        audited = replace(audited, recorded_by_signer=recorded)
    return audited


def trusted_stored(
    snap: Snapshot,
    verifiers: Sequence[Verifier],
    first: int,
    stop: int | None = None,
    *,
    newest_first: bool = False,
) -> Iterator[SignedCheckpoint]:
    """The stored checkpoints of this ledger of size ``first <= size < stop`` a trusted
    key signed, read and checked one at a time as they are asked for (a malformed one, one
    of another log, or one not kept under its own size, is passed over: ``verify`` names
    the rest)."""
    for candidate in snap.checkpoints_between(first, stop, newest_first=newest_first):
        try:
            candidate.verified_by(list(verifiers))
        except NoteError:
            continue
        yield candidate


def _recorded_by_signer(
    snap: Snapshot,
    source: ProofSource,
    run_id: bytes,
    seqs: list[int],
    anchor: CheckpointAnchor,
) -> bool:
    """Whether the checkpoint signed with the run's last record (its tree ends there: the
    signer signs in that transaction) names every one of these events as its signer's
    own (``bvisor-recorded``), signed by a trusted key, and still proves them. A signature
    alone says the ledger held a run, not who appended it (:mod:`bvisor.ledger.checkpoint`);
    an event added to the run later moves its end past that checkpoint, so it is not."""
    size = seqs[-1] + 1
    given = [anchor.signed] if anchor.signed.checkpoint.size == size else []
    for candidate in (*given, *trusted_stored(snap, anchor.verifiers, size, size + 1)):
        stated = next((r for run, r in candidate.checkpoint.recorded if run == run_id), None)
        if stated is not None and all(within(stated, seq) for seq in seqs):
            return _prove_all(source, seqs, candidate) is None
    return False


def _anchored_linker(snap: Snapshot, anchor: Anchor, source: ProofSource | None) -> Linker:
    """A rerun's link, checked against the named run's events proven by the same anchor."""

    def link(rerun: RerunLink, run_id: bytes, first_seq: int) -> CheckResult:
        listed = snap.run_seqs(rerun.run_id)
        if not listed:
            return check_rerun_of(rerun, run_id, first_seq, [])
        try:
            if isinstance(anchor, HeadAnchor):
                events, chain = _by_head(snap, rerun.run_id, listed, anchor)
            else:
                assert source is not None
                events, chain = _by_checkpoint(snap, rerun.run_id, listed, anchor, source)
        except _Unreadable as exc:
            return check_rerun_of(rerun, run_id, first_seq, f"its events cannot be read: {exc}")
        if not chain.ok:
            why = f"its events are not proven by the anchor ({chain.detail})"
            return check_rerun_of(rerun, run_id, first_seq, why)
        return check_rerun_of(rerun, run_id, first_seq, events)

    return link


def _check_listed(snap: Snapshot, listed: list[int]) -> None:
    """Refuse a runs index no writer leaves (whoever could write the ledger may have):
    seqs out of order make the span empty or cut it short, and one near 2**64 makes a
    span no walk of it finishes. Every writer appends a run's rows in seq order, each
    naming an event it wrote, so ascending seqs below the event count are all it holds."""
    events = snap.event_count()
    for before, after in pairwise(listed):
        if after <= before:
            raise _Unreadable(
                f"the runs index lists event {after} after event {before}: the index is "
                "damaged (run verify)"
            )
    if listed and listed[-1] >= events:
        raise _Unreadable(
            f"the runs index lists event {listed[-1]}, past the last of the ledger's {events} "
            "events: the index is damaged (run verify)"
        )


def _span_events(snap: Snapshot, run_id: bytes, listed: list[int]) -> list[Event]:
    """The events in the run's span that carry its id (the records decide, not the index),
    each of them listed: an index that leaves one of the run's events out is damage, not
    a shorter run (``attest`` and ``prove`` read the run's events from the index)."""
    _check_listed(snap, listed)
    found: list[Event] = []
    named = set(listed)
    for seq in range(listed[0], listed[-1] + 1):
        event = _decode(snap, seq)
        if event is None:
            if seq in named:
                raise _Unreadable(f"event {seq} is listed for the run but missing")
            continue
        if event.run_id == run_id:
            if seq not in named:
                raise _Unreadable(f"event {seq} of the run is not in the runs index (run verify)")
            found.append(event)
        elif seq in named:
            raise _Unreadable(f"the runs index lists event {seq}, which is another run's")
    return found


def _by_checkpoint(
    snap: Snapshot,
    run_id: bytes,
    listed: list[int],
    anchor: CheckpointAnchor,
    source: ProofSource,
) -> tuple[list[Event], CheckResult]:
    checkpoint = anchor.signed.checkpoint
    events = _span_events(snap, run_id, listed)
    seqs = [event.seq for event in events]
    uncovered = [seq for seq in seqs if seq >= checkpoint.size]
    if uncovered:
        return events, CheckResult.failed(
            "chain",
            f"events {uncovered[0]}..{uncovered[-1]} of this run are not yet covered by a "
            f"signed checkpoint (the {anchor.describe()} ends at event {checkpoint.size - 1})",
        )
    problem = _prove_all(source, seqs, anchor.signed)
    if problem is None:
        return events, CheckResult.passed(
            "chain",
            f"{len(seqs)} events (seq {seqs[0]}..{seqs[-1]}) proven included in the "
            f"{anchor.describe()}",
        )
    for earlier in trusted_stored(snap, anchor.verifiers, seqs[-1] + 1, checkpoint.size):
        cp = earlier.checkpoint
        if _prove_all(source, seqs, earlier) is None:
            return events, CheckResult.passed(
                "chain",
                f"{len(seqs)} events (seq {seqs[0]}..{seqs[-1]}) proven included in the stored "
                f"checkpoint of {cp.size} events, signed by a trusted key; the "
                f"{anchor.describe()} no longer holds for this ledger (events after "
                f"{cp.size - 1} were changed), which does not touch this run",
            )
    return events, CheckResult.failed("chain", problem)


def _prove_all(source: ProofSource, seqs: list[int], signed: SignedCheckpoint) -> str | None:
    """None when every event is included under ``signed``'s root, else why not."""
    checkpoint = signed.checkpoint
    if not source.root_matches(checkpoint.size, checkpoint.root):
        return (
            f"the ledger's tree at size {checkpoint.size} no longer has the signed root: events "
            "it covered were changed after it was signed, and no checkpoint that still holds "
            f"covers this run (seq {seqs[0]}..{seqs[-1]})"
        )
    for seq in seqs:
        try:
            source.inclusion(seq, checkpoint.size, checkpoint.root)
        except ProofUnavailable as exc:
            return f"event {seq}: {exc}"
    return None


def _by_head(
    snap: Snapshot, run_id: bytes, listed: list[int], anchor: HeadAnchor
) -> tuple[list[Event], CheckResult]:
    _check_listed(snap, listed)
    head = anchor.head
    stop = max(head.seq, listed[-1])
    events: list[Event] = []
    previous: Event | None = None
    broken: str | None = None
    for seq in range(listed[0], stop + 1):
        event = _decode(snap, seq)
        if event is None:
            if seq <= head.seq:
                raise _Unreadable(f"event {seq} is missing between the run and the head")
            continue
        linked = previous is None or event.prev_hash == previous.hash
        if not linked and broken is None and seq <= head.seq:
            broken = f"event {seq} does not link to event {seq - 1}"
        if seq == head.seq and broken is None and event.hash != head.hash:
            broken = f"event {seq} hashes to {event.hash.hex()[:16]}, not the expected head's"
        if event.run_id == run_id:
            events.append(event)
        previous = event
    if not events:
        raise _Unreadable("no event in the run's span carries its id")
    seqs = [event.seq for event in events]
    if broken is not None:
        return events, CheckResult.failed("chain", f"{broken}: the run is not proven by the head")
    beyond = [seq for seq in seqs if seq > head.seq]
    if beyond:
        return events, CheckResult.failed(
            "chain",
            f"events {beyond[0]}..{beyond[-1]} of this run come after the {anchor.describe()}, "
            "so it does not cover them",
        )
    return events, CheckResult.passed(
        "chain",
        f"{len(seqs)} events (seq {seqs[0]}..{seqs[-1]}) chained to the {anchor.describe()}",
    )
