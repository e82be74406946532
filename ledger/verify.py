"""Re-derive a ledger from its bytes and say exactly where it disagrees with itself.

``verify`` trusts nothing it did not recompute. Over one consistent read-only snapshot it
checks, for every event in the range: the record decodes and is the one canonical encoding
(``malformed-record``, ``non-canonical-record``); it is stored under its own seq
(``sequence-mismatch``) and no seq is missing (``sequence-gap``); its payload matches
``payload_hash`` (``payload-hash-mismatch``); its ``prev_hash`` is the recomputed hash of the
event before it (``chain-break``) or, for event 0, the genesis hash of ``ledger_id``
(``genesis-mismatch``); and its ``runs`` index row exists and points back to it
(``index-mismatch``). Verifying to the end also checks the ``meta`` head against the last
event (``head-mismatch``) and, from event 0, that the index holds no extra rows.

A hash chain cannot see a removed or rewritten *tail* by itself: an attacker who deletes
the last events and fixes ``meta`` leaves a valid shorter chain. ``expect_head`` closes
that gap — a ``SEQ:HASH`` kept elsewhere must still name an event with that hash
(``expected-head-missing``, ``expected-head-mismatch``).

Locating damage. An event is proven intact only when the next event's ``prev_hash`` link
to it was checked (or it is the verified expected head). A chain-break reported at seq S
means event S's ``prev_hash`` differs from the hash of event S-1: either S-1's header or
S's link was altered, and nothing else in the ledger can tell which. Likewise a finding
that stops S's link from being checked at all — S is missing (``sequence-gap``, or the
events the meta head or the expected head name past the end), S cannot be decoded
(``malformed-record``), or S holds a record of another seq (``sequence-mismatch``) — leaves
nothing vouching for S-1. ``first_bad_seq`` is the first seq that is not proven intact, so
each of those counts as S-1 (never below 0). Everything before ``first_bad_seq`` is proven
to be exactly what was appended.

``expect_head`` is a claim about the whole prefix, so it is verified from event 0 on and
cannot be combined with ``start``/``stop``; so is ``checkpoint``.

Localising damage. ``first_bad_seq`` says where the ledger stops being exactly what was
appended. ``chain_bad_seq`` says where the *header chain* stops being proven: a payload
that does not match its ``payload_hash``, a record stored in a non-canonical encoding of
the same fields, or a runs index row gone astray leaves every header — and so every other
event's payload hash — proven, so the damage belongs to the one event (and its run) and
proves nothing about the events after it. Replay judges runs by ``chain_bad_seq``.

A walk from event 0 also checks the Merkle tree and the checkpoints stored in the ledger,
and the one given (``bvisor.ledger.tree_verify``): ``tree-mismatch``, ``tree-beyond-head``,
``checkpoint-mismatch``, ``checkpoint-beyond-head``, ``checkpoint-origin``,
``checkpoint-signature``, ``checkpoint-malformed``. ``rewritten`` lists the event ranges
a failed checkpoint locates the change in.

Speed without a second definition of any check. Each record is first offered to the
native record check (``bv_ledger_record`` in ``bvisor/canonical_native.c``: one strict
canonical validation with the items' spans, the header's types from their heads, both
BLAKE3 digests); a record it proves, whose seq, link, kind, payload hash and index row are
all what the walk expects, has nothing to report, so the walk takes its hash and moves on.
Anything else — a refusal, a mismatch, a payload at the deepest accepted nesting (the
native check counts depth from the record), no native module — goes through the strict
Python path exactly as before, which makes the same checks and names what is wrong.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from bvisor import canonical, canonical_native
from bvisor.digest import Purpose
from bvisor.ledger.environment import META_HEAD_HASH, META_HEAD_SEQ, seq_key
from bvisor.ledger.errors import LedgerUsageError
from bvisor.ledger.kinds import is_valid_kind
from bvisor.ledger.record import (
    HASH_SIZE,
    MAX_RECORD_BYTES,
    MAX_SEQ,
    DecodedRecord,
    ProvenRecord,
    RecordError,
    decode_record,
    decode_record_lenient,
)
from bvisor.ledger.store import Head, Ledger, Snapshot

_make_record = ProvenRecord._make

if TYPE_CHECKING:  # imported when first needed: most verifies never sign or parse a note
    from bvisor.ledger.checkpoint import SignedCheckpoint
    from bvisor.ledger.note import Verifier
    from bvisor.ledger.tree_verify import CheckpointCheck, TreeAudit

__all__ = [
    "CHAIN_SAFE_CODES",
    "CODES",
    "Finding",
    "VerifyResult",
    "parse_head",
    "proven_statement",
    "verify",
    "verify_runs",
    "verify_snapshot",
]

CODES: Final = (
    "malformed-record",
    "non-canonical-record",
    "sequence-mismatch",
    "sequence-gap",
    "payload-hash-mismatch",
    "chain-break",
    "genesis-mismatch",
    "index-mismatch",
    "head-mismatch",
    "expected-head-missing",
    "expected-head-mismatch",
    "tree-mismatch",
    "tree-beyond-head",
    "checkpoint-mismatch",
    "checkpoint-beyond-head",
    "checkpoint-origin",
    "checkpoint-signature",
    "checkpoint-malformed",
)
# Findings that leave the header chain proven: the damage is the one event's (or a cache's).
CHAIN_SAFE_CODES: Final = frozenset(
    {
        "payload-hash-mismatch",
        "non-canonical-record",
        "index-mismatch",
        "tree-mismatch",
        "checkpoint-origin",
        "checkpoint-signature",
        "checkpoint-malformed",
        "checkpoint-mismatch",
    }
)

# Findings that events something covered are gone (a cut tail).
_BEYOND_HEAD_CODES: Final = frozenset({"checkpoint-beyond-head", "tree-beyond-head"})

# Findings that the trusted head given (``--expect-head``) is not where this chain ends.
_HEAD_CODES: Final = frozenset({"expected-head-mismatch", "expected-head-missing"})

_PROGRESS_EVERY: Final = 4096
# Findings that say an event's own record differs from what was appended.
_RECORD_CODES: Final = frozenset(
    {"payload-hash-mismatch", "non-canonical-record", "malformed-record", "sequence-mismatch"}
)

Progress = Callable[[int, int], None]
RecordCheck = Callable[..., "tuple[Any, ...] | None"]


def _native_record_check() -> RecordCheck | None:
    """The native one-pass record check (validate, split, type the header, both digests),
    or None without the native module (every record then takes the strict Python path).

    It validates the whole record at ``canonical.MAX_DEPTH``, one level stricter for the
    payload than the strict path (which measures the payload from itself): a record whose
    payload sits at the deepest accepted nesting is refused here and judged there."""
    native = canonical_native.validator()
    if native is None:
        return None
    return native.record_checker(
        canonical.MAX_DEPTH, native.blake3_context_key(Purpose.LEDGER_EVENT.value)
    )


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing that is wrong, at the seq it concerns (None: not tied to one event)."""

    seq: int | None
    code: str
    detail: str


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """The verdict: ``ok`` only when there are no findings.

    ``chain_bad_seq``: the first seq whose header the chain does not prove (module doc);
    ``notes``: facts worth saying that are not findings (an old ledger without a tree);
    ``rewritten``: ``[a, b)`` ranges a failed checkpoint locates a change in;
    ``checkpoint``: coverage by signed checkpoints, when a checkpoint or key was given;
    ``tree_root``: the RFC 6962 root over every record, when computed.
    """

    ok: bool
    events: int
    head: Head | None
    first_bad_seq: int | None
    findings: tuple[Finding, ...]
    chain_bad_seq: int | None = None
    notes: tuple[str, ...] = ()
    rewritten: tuple[tuple[int, int], ...] = ()
    checkpoint: CheckpointCheck | None = None
    tree_root: bytes | None = None
    held: int = 0  # the largest size of a checkpoint that still holds (0: none)


def proven_statement(result: VerifyResult) -> str:
    """What a failed verify still proves, and what it does not, in one sentence: never
    more than every signal allows (a broken chain, a rewrite a checkpoint locates, and a
    removed tail each end what is proven, whichever comes first)."""
    if result.ok:
        return f"all {result.events} events are proven to be what was appended"
    bad = result.chain_bad_seq
    if bad == 0 and any(f.code in _HEAD_CODES for f in result.findings):
        return "nothing is proven: the ledger does not end in the head you expect"
    ends: list[tuple[int, str]] = []
    if bad is not None:
        ends.append((bad, "the header chain is broken there"))
    if result.rewritten:
        first = min(a for a, _ in result.rewritten)
        narrow = min(b for a, b in result.rewritten if a == first)
        ends.append(
            (
                first,
                f"a signed checkpoint no longer holds: the change lies in events "
                f"{first}..{narrow - 1}, and every later event chains to it",
            )
        )
    if any(f.code in _BEYOND_HEAD_CODES for f in result.findings):
        ends.append(
            (
                result.held,
                "events a checkpoint or the tree covered were removed, and a rewrite before "
                "the cut would not show: only what a checkpoint that still holds covers is",
            )
        )
    if ends:
        end, why = min(ends)
        if end == 0:
            return f"nothing is proven: {why}"
        return f"events 0..{end - 1} are proven except those named; from event {end} on {why}"
    named = sorted({f.seq for f in result.findings if f.seq is not None})
    if not named:
        if any(f.code == "malformed-record" for f in result.findings):
            return (
                "every event is proven to chain, but the ledger also holds a record under a "
                "key that is no event's (named above), which nothing places"
            )
        return (
            "the header chain is intact to the head and no event is named, so every "
            "event is proven to chain; what failed (above) is not in the records"
        )
    where = ", ".join(str(seq) for seq in named[:10])
    return (
        "the header chain is intact to the head, so every event's header and payload "
        f"hash is proven: the damage is confined to the events named (seq {where}); "
        "every other event, and every run without one of them, is proven"
    )


def parse_head(text: str) -> Head:
    """Parse ``SEQ:HASHHEX`` (as printed by ``bvisor-ledger head``)."""
    seq_text, sep, hash_text = text.strip().partition(":")
    # isascii(): str.isdigit() also accepts digits such as '²' that int() rejects.
    if not sep or not (seq_text.isascii() and seq_text.isdigit()):
        raise LedgerUsageError(f"expected head {text!r}: expected SEQ:HASH, e.g. 41:ab12...")
    if len(seq_text) > 20 or int(seq_text) > MAX_SEQ:
        raise LedgerUsageError(f"expected head {text!r}: SEQ must be at most {MAX_SEQ}")
    if len(hash_text) != 2 * HASH_SIZE:
        raise LedgerUsageError(
            f"expected head {text!r}: HASH must be {2 * HASH_SIZE} hex digits "
            f"({HASH_SIZE} bytes), got {len(hash_text)}"
        )
    try:
        digest = bytes.fromhex(hash_text)
    except ValueError:
        digest = b""
    if len(digest) != HASH_SIZE:  # fromhex also skips spaces: "ab cd..." is refused too
        raise LedgerUsageError(f"expected head {text!r}: HASH is not hexadecimal")
    return Head(int(seq_text), digest)


def verify(
    ledger: Ledger | str | os.PathLike[str],
    start: int | None = None,
    stop: int | None = None,
    expect_head: Head | str | None = None,
    progress: Progress | None = None,
    *,
    checkpoint: SignedCheckpoint | None = None,
    verifiers: Sequence[Verifier] = (),
    tree_nodes: bool = False,
) -> VerifyResult:
    """Verify events ``start <= seq < stop`` (default: all) of ``ledger``; never writes.

    ``ledger`` may be an open handle or a directory (opened read-only and closed again).
    ``progress(done, total)`` is called every few thousand events and at the end.
    ``checkpoint`` (kept elsewhere) must still hold for the ledger; ``verifiers`` are the
    trusted public keys checkpoints must be signed by (none: signatures are not checked).
    ``tree_nodes`` compares every stored Merkle tree node with the records (``--tree``).
    """
    begin = 0 if start is None else start
    if type(begin) is not int or not 0 <= begin <= MAX_SEQ:
        raise LedgerUsageError(f"start: expected an integer from 0 to {MAX_SEQ}, got {start!r}")
    if stop is not None and (type(stop) is not int or not begin <= stop <= MAX_SEQ + 1):
        raise LedgerUsageError(
            f"stop: expected an integer from start to {MAX_SEQ + 1}, got {stop!r}"
        )
    expected = parse_head(expect_head) if isinstance(expect_head, str) else expect_head
    if expected is not None and (begin != 0 or stop is not None):
        raise LedgerUsageError(
            "expect_head proves the whole prefix from event 0 to the expected head: "
            "it cannot be combined with start/stop"
        )
    if (checkpoint is not None or verifiers or tree_nodes) and (begin != 0 or stop is not None):
        raise LedgerUsageError(
            "a checkpoint proves the whole prefix from event 0: it cannot be combined with "
            "start/stop"
        )

    def run(handle: Ledger) -> VerifyResult:
        with handle.snapshot() as snap:
            return verify_snapshot(
                snap,
                begin,
                stop,
                expected,
                progress,
                checkpoint=checkpoint,
                verifiers=verifiers,
                tree_nodes=tree_nodes,
            )

    if isinstance(ledger, Ledger):
        return run(ledger)
    with Ledger.open(ledger, readonly=True) as handle:
        return run(handle)


def verify_snapshot(
    snap: Snapshot,
    start: int = 0,
    stop: int | None = None,
    expect: Head | None = None,
    progress: Progress | None = None,
    *,
    checkpoint: SignedCheckpoint | None = None,
    verifiers: Sequence[Verifier] = (),
    tree_nodes: bool = False,
) -> VerifyResult:
    """:func:`verify` over an open snapshot (a writer's own transaction, for one)."""
    verifier = _Verifier(snap, start, stop, progress, checkpoint, verifiers, tree_nodes)
    return verifier.run(expect)


def verify_runs(
    handle: Ledger,
    progress: Progress | None = None,
    on_record: Callable[[ProvenRecord], None] | None = None,
    *,
    expect_head: Head | None = None,
    checkpoint: SignedCheckpoint | None = None,
    verifiers: Sequence[Verifier] = (),
) -> tuple[VerifyResult, dict[bytes, list[int]]]:
    """Verify the whole ledger, and say which events each run holds *by the chain itself*.

    The second value maps every ``run_id`` seen in a decodable event to its seqs in order,
    ordered by each run's first event — independent of the ``runs`` index, so a run whose
    index rows were deleted is still listed. Index rows naming a run no event carries are
    added with no seqs. ``on_record`` receives every record that decoded strictly with its
    payload hash matching, in seq order, its payload undecoded (a caller decodes what it
    needs, once, or compares the payload's bytes).
    """
    with handle.snapshot() as snap:
        verifier = _Verifier(snap, 0, None, progress, checkpoint, verifiers)
        verifier.run_seqs = {}
        verifier.on_record = on_record
        result = verifier.run(expect_head)
        runs = verifier.run_seqs
        if not verifier.rows_all_walked():  # else every row's run is in runs already
            for row_key, _value in snap.run_rows():
                if len(row_key) >= 5:
                    runs.setdefault(row_key[:-4], [])
    return result, runs


def _first_bad(
    findings: list[Finding], unlinked: set[int], skip: frozenset[str] = frozenset()
) -> int | None:
    """The first seq not proven: S-1 for a finding at S that leaves S-1's link unchecked,
    and 0 for a trusted head the ledger does not end in (the anchor every event up to it
    is proven by: a rewrite re-chained from event 0 on is consistent in itself)."""
    candidates: list[int] = []
    for finding in findings:
        if finding.seq is None or finding.code in skip:
            continue
        if finding.code in _HEAD_CODES:
            candidates.append(0)
        elif finding.code == "chain-break" or finding.seq in unlinked:
            candidates.append(max(finding.seq - 1, 0))
        else:
            candidates.append(finding.seq)
    return min(candidates) if candidates else None


def _short(digest: bytes | None) -> str:
    return "none" if digest is None else digest.hex()[:16]


class _Verifier:
    """One pass over a snapshot; collects findings instead of stopping at the first."""

    def __init__(
        self,
        snap: Snapshot,
        start: int,
        stop: int | None,
        progress: Progress | None,
        checkpoint: SignedCheckpoint | None = None,
        verifiers: Sequence[Verifier] = (),
        tree_nodes: bool = False,
    ):
        self.snap = snap
        self.start = start
        self.stop = stop
        self.progress = progress
        self.on_record: Callable[[ProvenRecord], None] | None = None
        self.tree: TreeAudit | None = None
        if start == 0 and stop is None:
            from bvisor.ledger.tree_verify import TreeAudit

            self.tree = TreeAudit(
                snap.ledger_id,
                snap.tree_size(),
                snap.tree_node,
                list(snap.checkpoint_rows()),
                checkpoint,
                verifiers,
                tree_nodes,
            )
        self.run_id: bytes | None = None
        self.findings: list[Finding] = []
        self.next_index: dict[bytes, int] = {}
        self.indexed = 0
        self.checked = 0
        self.last_seen: tuple[int, bytes | None] | None = None
        # Seqs whose prev_hash link could not be checked (missing, undecodable, another
        # seq's record): the event before each is vouched for by nothing.
        self.unlinked: set[int] = set()
        self.run_seqs: dict[bytes, list[int]] | None = None
        self.record_check = _native_record_check()
        self.run_row = snap.run_row_reader()
        self.kinds: dict[bytes, str] = {}  # kinds already found in the grammar, by encoding

    def _breaks(self) -> list[int]:
        return [f.seq for f in self.findings if f.code == "chain-break" and f.seq is not None]

    def add(self, seq: int | None, code: str, detail: str, *, unlinked: bool = False) -> None:
        self.findings.append(Finding(seq, code, detail))
        if unlinked and seq is not None:
            self.unlinked.add(seq)

    def run(self, expect: Head | None) -> VerifyResult:
        last_seq = self.snap.last_event_seq()
        end = self.stop if self.stop is not None else (0 if last_seq is None else last_seq + 1)
        if last_seq is not None:
            end = min(end, last_seq + 1)
        total = max(0, end - self.start)
        self._walk(total)
        head: Head | None = None
        if self.stop is None or (last_seq is not None and self.stop > last_seq):
            head = self._check_head(last_seq)
        if self.start == 0 and (self.stop is None or last_seq is None or self.stop > last_seq):
            self._check_index_rows()
        if expect is not None:
            self._check_expected(expect, last_seq)
        if head is None:
            head = self._meta_head()
        verdict = None
        if self.tree is not None:
            events = 0 if last_seq is None else last_seq + 1
            damaged = frozenset(
                f.seq for f in self.findings if f.seq is not None and f.code in _RECORD_CODES
            )
            verdict = self.tree.finish(
                events,
                _first_bad(self.findings, self.unlinked),
                damaged | frozenset(s - 1 for s in self._breaks()),
            )
            for seq, code, detail in verdict.findings:
                self.add(seq, code, detail, unlinked=code == "checkpoint-beyond-head")
        if self.progress is not None:
            self.progress(self.checked, total)
        findings = tuple(
            sorted(self.findings, key=lambda f: (f.seq is None, 0 if f.seq is None else f.seq))
        )
        return VerifyResult(
            ok=not findings,
            events=self.checked,
            head=head,
            first_bad_seq=_first_bad(self.findings, self.unlinked),
            findings=findings,
            chain_bad_seq=_first_bad(self.findings, self.unlinked, CHAIN_SAFE_CODES),
            notes=() if verdict is None else verdict.notes,
            rewritten=() if verdict is None else verdict.rewritten,
            checkpoint=None if verdict is None else verdict.check,
            tree_root=None if verdict is None else verdict.root,
            held=0 if verdict is None else verdict.held,
        )

    # -- the event walk ------------------------------------------------------------------

    def _walk(self, total: int) -> None:
        feed = self.tree.feed if self.tree is not None and self.tree.active else None
        prev = self._prev_for_start()
        expected = self.start
        prev_seq = self.start - 1
        fast = self._check_event_fast
        checked = self.checked
        progress = self.progress
        limit = None if self.stop is None else seq_key(self.stop)
        if self.start == 0:
            for key in self.snap.keys_before_seq_0():
                self.add(None, "malformed-record", f"events key {key.hex()} is not 8 bytes")
        for key, raw in self.snap.event_pairs(self.start):
            if limit is not None and len(key) == 8 and key >= limit:
                break  # exactly where event_items stops
            if len(key) != 8:
                self.add(None, "malformed-record", f"events key {key.hex()} is not 8 bytes")
                continue
            seq = int.from_bytes(key, "big")
            if seq != expected:
                missing = (
                    f"event {expected}" if seq == expected + 1 else f"events {expected}..{seq - 1}"
                )
                self.add(
                    expected,
                    "sequence-gap",
                    f"{missing} missing before event {seq}",
                    unlinked=True,
                )
            self.run_id = None
            hashed = None if prev is None else fast(seq, key, raw, prev)
            prev = self._check_event(seq, raw, prev, prev_seq) if hashed is None else hashed
            if feed is not None:
                feed(seq, raw, prev, self.run_id)
            prev_seq = seq
            expected = seq + 1
            checked += 1
            if progress is not None and checked % _PROGRESS_EVERY == 0:
                self.checked = checked
                progress(checked, total)
        self.checked = checked
        if prev_seq >= self.start:
            self.last_seen = (prev_seq, prev)

    def _prev_for_start(self) -> bytes | None:
        """The hash the first event in range must link to (genesis for event 0)."""
        if self.start == 0:
            return self.snap.genesis
        raw = self.snap.event_raw(self.start - 1)
        if raw is None:
            self.add(
                self.start - 1, "sequence-gap", f"event {self.start - 1} is missing", unlinked=True
            )
            return None
        decoded = self._decode(self.start - 1, raw, report=False)
        return None if decoded is None else decoded.event.hash

    def _decode(self, seq: int, raw: bytes, *, report: bool) -> DecodedRecord | None:
        try:
            return decode_record(raw)
        except RecordError as exc:
            if exc.code != "non-canonical-record":
                if report:
                    self.add(seq, exc.code, exc.detail, unlinked=True)
                return None
            strict_detail = exc.detail
        try:
            decoded = decode_record_lenient(raw)
        except RecordError as exc:
            if report:
                self.add(seq, "malformed-record", exc.detail, unlinked=True)
            return None
        if report:
            self.add(seq, "non-canonical-record", strict_detail)
        return decoded

    def _check_event_fast(self, seq: int, key: bytes, raw: bytes, prev: bytes) -> bytes | None:
        """The event's hash when the record passes every check of :meth:`_check_event`
        with nothing to report, proven by the native record check; None otherwise, having
        changed nothing, so the strict path judges the record and names what is wrong.

        Passing means: within the record size bound, strictly canonical, a well-typed
        header, a kind in the grammar, stored under its own seq, linked to ``prev``, its
        payload hashing to its ``payload_hash``, and its runs index row where the walk
        expects it. The size bound is the record module's and is checked here: the native
        check knows no bound, and without it a record too large for the strict path to
        read was proven by the walk."""
        if len(raw) > MAX_RECORD_BYTES:
            return None
        check = self.record_check
        # Refused unless it is event ``seq`` and links to ``prev`` (checked in the C).
        view = None if check is None else check(raw, seq=seq, prev=prev)
        if view is None:
            return None
        _, time_ns, end, _, at_kind, kind_len, at_run, run_len, at_hash, ok, hashed, _ = view
        if not ok:
            return None
        kind_bytes = raw[at_kind : at_kind + kind_len]
        kind = self.kinds.get(kind_bytes)
        if kind is None:
            kind = kind_bytes.decode("utf-8")  # proven UTF-8 by the check
            if not is_valid_kind(kind):
                return None
            self.kinds[kind_bytes] = kind
        run_id = None
        if run_len:
            run_id = raw[at_run : at_run + run_len]
            index = self.next_index.get(run_id)
            if index is None:
                if self.start != 0:
                    return None  # a partial walk locates it: the strict path does
                index = 0
            if index >= 1 << 32 or self.run_row(run_id + index.to_bytes(4, "big")) != key:
                return None
            self.indexed += 1
            self.next_index[run_id] = index + 1
            self.run_id = run_id
            if self.run_seqs is not None:
                self.run_seqs.setdefault(run_id, []).append(seq)
        on_record = self.on_record
        if on_record is not None:
            # _make: the tuple built in C, without the named tuple's Python __new__.
            on_record(
                _make_record(
                    (
                        seq,
                        prev,
                        time_ns,
                        kind,
                        run_id,
                        raw[at_hash : at_hash + 32],
                        hashed,
                        raw,
                        end,
                    )
                )
            )
        return hashed  # type: ignore[no-any-return]

    def _check_event(self, seq: int, raw: bytes, prev: bytes | None, prev_seq: int) -> bytes | None:
        """Check one stored record; return its hash (None when it cannot be computed)."""
        decoded = self._decode(seq, raw, report=True)
        if decoded is None:
            return None
        event = decoded.event
        if event.seq != seq:
            self.add(
                seq,
                "sequence-mismatch",
                f"stored as event {seq} but the record says {event.seq}",
                unlinked=True,
            )
        if prev is not None and event.prev_hash != prev:
            if seq == 0:
                self.add(
                    0,
                    "genesis-mismatch",
                    f"prev_hash {_short(event.prev_hash)} is not the genesis hash "
                    f"{_short(prev)} of ledger_id {self.snap.ledger_id.hex()}",
                )
            else:
                after_gap = "" if prev_seq == seq - 1 else ", the nearest event before the gap"
                self.add(
                    seq,
                    "chain-break",
                    f"prev_hash {_short(event.prev_hash)} is not the hash {_short(prev)} "
                    f"of event {prev_seq}{after_gap}",
                )
        if not decoded.payload_ok:
            self.add(
                seq,
                "payload-hash-mismatch",
                f"payload hashes to {_short(decoded.computed_payload_hash)}, "
                f"record says {_short(event.payload_hash)}",
            )
        if event.run_id is not None:
            self.run_id = event.run_id
            self._check_index(seq, event.run_id)
            if self.run_seqs is not None:
                self.run_seqs.setdefault(event.run_id, []).append(seq)
        on_record = self.on_record
        if on_record is not None and decoded.strict and decoded.payload_ok and event.seq == seq:
            on_record(ProvenRecord.of(decoded))
        return event.hash

    # -- the runs index ------------------------------------------------------------------

    def _check_index(self, seq: int, run_id: bytes) -> None:
        self.indexed += 1
        index = self.next_index.get(run_id)
        if index is None:
            index = 0 if self.start == 0 else self._locate(run_id, seq)
        if index is None:
            self.add(seq, "index-mismatch", f"no runs index row of run {run_id.hex()} points here")
            return
        row = self._row(run_id, index)
        while row is not None and len(row) == 8 and int.from_bytes(row, "big") < seq:
            # The row names an earlier event the walk did not see as this run's (deleted,
            # or rewritten to another run): report it there, then look at the next row.
            earlier = int.from_bytes(row, "big")
            self.add(
                earlier,
                "index-mismatch",
                f"runs row {index} of run {run_id.hex()} points to event {earlier}, "
                "which is missing or not this run's",
            )
            index += 1
            row = self._row(run_id, index)
        if row == seq_key(seq):
            self.next_index[run_id] = index + 1
            return
        found = "is missing" if row is None else f"points to {_row_target(row)}"
        self.add(seq, "index-mismatch", f"runs row {index} of run {run_id.hex()} {found}")
        # A row naming a later event belongs to a later event: leave it for that one.
        later = row is not None and len(row) == 8 and int.from_bytes(row, "big") > seq
        self.next_index[run_id] = index if later else index + 1

    def _row(self, run_id: bytes, index: int) -> bytes | None:
        if index >= 1 << 32:
            return None
        return self.snap.run_row(run_id + index.to_bytes(4, "big"))

    def _locate(self, run_id: bytes, seq: int) -> int | None:
        """The index of ``seq`` within its run, found from the index (partial verify)."""
        width = len(run_id) + 4
        for key, value in self.snap.run_rows(run_id):
            if len(key) == width and value == seq_key(seq):
                return int.from_bytes(key[-4:], "big")
        return None

    def rows_all_walked(self) -> bool:
        """Whether every runs index row is one the walk matched to an event of its run (as
        many rows as matches, none refused): then no row names a run no event carries."""
        index_findings = any(f.code == "index-mismatch" for f in self.findings)
        return self.snap.run_row_count() == self.indexed and not index_findings

    def _check_index_rows(self) -> None:
        """Every index row must be one the walk expected: no extra or malformed rows."""
        if self.rows_all_walked():
            return
        for key, value in self.snap.run_rows():
            if len(key) < 5 or len(value) != 8:
                self.add(None, "index-mismatch", f"malformed runs row {key.hex()}")
                continue
            run_id, index = key[:-4], int.from_bytes(key[-4:], "big")
            if index >= self.next_index.get(run_id, 0):
                target = int.from_bytes(value, "big")
                self.add(
                    target,
                    "index-mismatch",
                    f"extra runs row {index} of run {run_id.hex()} points to event {target}",
                )

    # -- head and expected head ----------------------------------------------------------

    def _meta_head(self) -> Head | None:
        seq_raw, digest = self.snap.meta(META_HEAD_SEQ), self.snap.meta(META_HEAD_HASH)
        if seq_raw is None or digest is None or len(seq_raw) != 8:
            return None
        return Head(int.from_bytes(seq_raw, "big"), digest)

    def _hash_of(self, seq: int) -> bytes | None:
        if self.last_seen is not None and self.last_seen[0] == seq:
            return self.last_seen[1]
        raw = self.snap.event_raw(seq)
        decoded = None if raw is None else self._decode(seq, raw, report=False)
        return None if decoded is None else decoded.event.hash

    def _check_head(self, last_seq: int | None) -> Head | None:
        seq_raw, digest = self.snap.meta(META_HEAD_SEQ), self.snap.meta(META_HEAD_HASH)
        last_hash = None if last_seq is None else self._hash_of(last_seq)
        computed = None if last_seq is None or last_hash is None else Head(last_seq, last_hash)
        if seq_raw is None and digest is None:
            if last_seq is not None:
                self.add(last_seq, "head-mismatch", f"meta has no head but event {last_seq} exists")
            return computed
        if seq_raw is None or digest is None or len(seq_raw) != 8 or len(digest) != HASH_SIZE:
            self.add(last_seq, "head-mismatch", "meta head is incomplete or malformed")
            return computed
        head_seq = int.from_bytes(seq_raw, "big")
        if last_seq is None:
            self.add(
                head_seq, "head-mismatch", f"meta head names event {head_seq}, no events exist"
            )
        elif head_seq < last_seq:
            self.add(
                head_seq + 1,
                "head-mismatch",
                f"meta head is event {head_seq} but events up to {last_seq} exist",
            )
        elif head_seq > last_seq:
            self.add(
                last_seq + 1,
                "head-mismatch",
                f"meta head is event {head_seq} but the last event is {last_seq}",
                unlinked=True,
            )
        elif last_hash is not None and digest != last_hash:
            self.add(
                last_seq,
                "head-mismatch",
                f"meta head hash {_short(digest)} is not the hash {_short(last_hash)} "
                f"of event {last_seq}",
            )
        return computed

    def _check_expected(self, expect: Head, last_seq: int | None) -> None:
        if last_seq is None or expect.seq > last_seq:
            ends = "is empty" if last_seq is None else f"ends at event {last_seq}"
            self.add(
                0 if last_seq is None else last_seq + 1,
                "expected-head-missing",
                f"expected event {expect.seq} ({_short(expect.hash)}) but the ledger {ends}",
                unlinked=True,
            )
            return
        if self.snap.event_raw(expect.seq) is None:
            self.add(
                expect.seq,
                "expected-head-missing",
                f"event {expect.seq} is missing",
                unlinked=True,
            )
            return
        actual = self._hash_of(expect.seq)
        if actual != expect.hash:
            self.add(
                expect.seq,
                "expected-head-mismatch",
                f"event {expect.seq} hashes to {_short(actual)}, expected {_short(expect.hash)}",
            )


def _row_target(row: bytes) -> str:
    if len(row) != 8:
        return f"a malformed value {row.hex()}"
    return f"event {int.from_bytes(row, 'big')}"
