"""What ``verify`` checks of the Merkle tree and the checkpoints, from the records alone.

Fed every record of a whole-ledger walk in seq order, :class:`TreeAudit` recomputes the
RFC 6962 tree over the records' bytes (one SHA-256 per record, plus one per completed
subtree) — when there is something to check it against: a checkpoint stored in the ledger
or given, trusted keys, or ``nodes=True`` (``verify --tree``); a ledger with no checkpoint
costs nothing more to verify than before. It then:

* compares the stored tree with the records' tree: its perfect subtrees that make up the
  root at the stored size (O(log n) reads), or with ``nodes`` every stored node
  (``tree-mismatch``); a mismatch at or after the first event the chain cannot vouch for is
  left out, as it only repeats that finding — the stored tree is a cache the records
  determine, so it is reported as a cache, never as evidence (proofs built from a damaged
  node fail to verify, and signing re-derives what it signs from the records);
* takes the root at the size of every checkpoint — those stored in the ledger and the one
  given (``verify --checkpoint``) — and compares it, and the chain head its extension line
  names, with what the checkpoint signed (``checkpoint-mismatch``); a checkpoint larger than
  the ledger means its tail was removed (``checkpoint-beyond-head``); one for another
  ledger, or — given trusted keys — not signed by one of them, is ``checkpoint-origin`` /
  ``checkpoint-signature``;
* locates a rewrite: when the root at size S differs but the root at the largest smaller
  checkpoint size G agrees, events G..S-1 hold the change; without such a G, 0..S-1;
* says how far signed checkpoints cover the ledger (given trusted keys, or the checkpoint
  given, which the caller vouches for), so the events after — runs appended since, forged
  or not — are named "not yet covered by a signed checkpoint";
* and, of the runs they cover, which a signer says it recorded itself (every event of
  the run named in a ``bvisor-recorded`` line of a trusted checkpoint that holds) and
  which none does: a run appended by whoever could write the ledger, an event added to a
  signer's run, or a run recorded without a key and covered later. The second kind is
  named, not a finding: a run recorded unsigned and covered by ``bvisor-ledger
  checkpoint`` is one too, and only its owner knows whether it made it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from bvisor.ledger.checkpoint import SignedCheckpoint, ledger_origin, parse_checkpoint, within
from bvisor.ledger.merkle import EMPTY_ROOT, CompactRange, bulk_leaf_hash
from bvisor.ledger.note import NoteError, Verifier

__all__ = ["CheckpointCheck", "TreeAudit", "TreeVerdict"]

_SHOWN_RUNS: Final = 20


@dataclass(frozen=True, slots=True)
class CheckpointCheck:
    """How far the ledger is proven by signed checkpoints (``verify --checkpoint/--pub``).

    ``covered``: events 0..covered-1 are in a checkpoint that holds; ``uncovered_runs``:
    runs with events from ``covered`` on (shown up to a limit; ``uncovered_run_count`` is
    the total); ``signature``: how the given checkpoint's signature was judged;
    ``signatures_checked``: whether any was (no trusted key given: the coverage is by
    checkpoints whose signatures nobody checked, and is said so). ``recorded_runs``: how
    many covered runs a signer says it recorded, every event (``recorded_run_ids``: which);
    ``unrecorded_runs``: covered runs no signer says that of (shown up to a limit;
    ``unrecorded_run_count`` is the total). Judged only with trusted keys: the word of a
    checkpoint nobody checked is nobody's.
    """

    size: int | None
    signature: str
    covered: int
    events: int
    uncovered_runs: tuple[bytes, ...]
    uncovered_run_count: int
    signatures_checked: bool = True
    recorded_runs: int = 0
    unrecorded_runs: tuple[bytes, ...] = ()
    unrecorded_run_count: int = 0
    recorded_run_ids: frozenset[bytes] = frozenset()

    @property
    def uncovered(self) -> tuple[int, int] | None:
        return None if self.covered >= self.events else (self.covered, self.events - 1)


@dataclass(frozen=True, slots=True)
class TreeVerdict:
    """Findings ``(seq, code, detail)``, notes, rewritten ranges ``[a, b)``, coverage, and
    the largest size of a checkpoint that still holds (0: none)."""

    findings: tuple[tuple[int | None, str, str], ...]
    notes: tuple[str, ...]
    rewritten: tuple[tuple[int, int], ...]
    check: CheckpointCheck | None
    root: bytes | None
    held: int = 0


@dataclass(slots=True)
class _Claim:
    checkpoint: SignedCheckpoint | None
    where: str
    size: int
    trusted: bool  # counts towards coverage when it holds
    problem: tuple[int | None, str, str] | None = None
    holds: bool = False


class TreeAudit:
    """One pass's tree and checkpoint checks (see module); ``feed`` then ``finish``."""

    def __init__(
        self,
        ledger_id: bytes,
        stored_size: int | None,
        stored_node: Callable[[int, int], bytes | None],
        checkpoint_rows: Sequence[tuple[bytes, bytes]],
        given: SignedCheckpoint | None,
        verifiers: Sequence[Verifier],
        nodes: bool = False,
    ) -> None:
        self._origin = ledger_origin(ledger_id)
        self._stored_size = stored_size
        self._stored_node = stored_node
        self._verifiers = list(verifiers)
        self._given = given
        self.claims: list[_Claim] = []
        for key, value in checkpoint_rows:
            self.claims.append(self._stored_claim(key, value))
        if given is not None:
            self.claims.append(self._claim(given, "the given checkpoint", given_one=True))
        self.sizes = {c.size for c in self.claims if c.problem is None}
        if stored_size is not None:
            self.sizes.add(stored_size)
        self.nodes = nodes and stored_size is not None
        self.active = bool(self.claims) or bool(self._verifiers) or nodes
        self.compact = CompactRange()
        self._leaf_hash = bulk_leaf_hash()  # every record of the ledger is hashed
        self.frontier_checked = False
        self.roots: dict[int, bytes] = {0: EMPTY_ROOT}
        self.hashes: dict[int, bytes | None] = {}
        self.mismatches: list[tuple[int, int]] = []
        self.broken_at: int | None = None
        self.run_of: dict[int, bytes] = {}
        self._damaged: list[int] = []
        self._confined: set[tuple[int, str]] = (
            set()
        )  # mismatches explained by damaged records alone

    # -- claims ------------------------------------------------------------------------

    def _stored_claim(self, key: bytes, value: bytes) -> _Claim:
        size = int.from_bytes(key[:8], "big") if len(key) == 12 else None
        where = "stored checkpoint" + ("" if size is None else f" of size {size}")
        try:
            parsed = parse_checkpoint(value)
        except NoteError as exc:
            seq = None if size is None or size == 0 else size - 1
            return _Claim(None, where, size or 0, False, (seq, "checkpoint-malformed", str(exc)))
        return self._claim(parsed, where, given_one=False)

    def _claim(self, parsed: SignedCheckpoint, where: str, *, given_one: bool) -> _Claim:
        checkpoint = parsed.checkpoint
        size = checkpoint.size
        at = None if size == 0 else size - 1
        if checkpoint.origin != self._origin:
            return _Claim(
                parsed,
                where,
                size,
                False,
                (
                    None,
                    "checkpoint-origin",
                    f"{where} is for log {checkpoint.origin!r}, not this ledger ({self._origin})",
                ),
            )
        trusted = given_one and not self._verifiers
        if self._verifiers:
            try:
                parsed.verified_by(self._verifiers)
                trusted = True
            except NoteError as exc:
                return _Claim(
                    parsed, where, size, False, (at, "checkpoint-signature", f"{where}: {exc}")
                )
        return _Claim(parsed, where, size, trusted)

    # -- the walk ----------------------------------------------------------------------

    def feed(self, seq: int, raw: bytes, event_hash: bytes | None, run_id: bytes | None) -> None:
        """One record of the walk, in seq order (``event_hash`` None if undecodable)."""
        if run_id is not None:
            self.run_of[seq] = run_id
        if not self.active or self.broken_at is not None:
            return
        compact = self.compact
        if seq != compact.size:
            self.broken_at = compact.size
            return
        if self.nodes:
            stored_size = self._stored_size
            assert stored_size is not None
            for level, index, value in compact.push(self._leaf_hash(raw)):
                end = (index + 1) << level
                if end <= stored_size and self._stored_node(level, index) != value:
                    self.mismatches.append((index << level, end - 1))
        else:
            compact.add(self._leaf_hash(raw))
        size = compact.size
        if size in self.sizes:
            self.roots[size] = compact.root()
            self.hashes[size] = event_hash
            if size == self._stored_size and not self.nodes:
                self._check_frontier(size)

    def _check_frontier(self, size: int) -> None:
        """The stored perfect subtrees that make up the root at the stored size."""
        offset = 0
        computed = self.compact.frontier()
        position = 0
        for level in range(size.bit_length() - 1, -1, -1):
            if size >> level & 1:
                if level > 0 and self._stored_node(level, offset >> level) != computed[position]:
                    self.mismatches.append((offset, offset + (1 << level) - 1))
                offset += 1 << level
                position += 1

    # -- the verdict -------------------------------------------------------------------

    def finish(
        self,
        events: int,
        first_bad: int | None,
        damaged: frozenset[int] = frozenset(),
    ) -> TreeVerdict:
        """The verdict; ``damaged``: seqs whose own record has a finding (see ``_judge``)."""
        self._damaged = sorted(damaged)
        findings: list[tuple[int | None, str, str]] = []
        notes: list[str] = []
        for lo, hi in self.mismatches:
            if first_bad is None or hi < first_bad:
                findings.append(
                    (
                        lo,
                        "tree-mismatch",
                        f"the stored Merkle node over events {lo}..{hi} is not "
                        "the hash of their records (the stored tree is damaged; proofs from it "
                        "will fail to verify)",
                    )
                )
        findings.extend(self._size_verdict(events, notes))
        complete = self.compact.size if self.broken_at is None else self.broken_at
        for claim in self.claims:
            if claim.problem is not None:
                findings.append(claim.problem)
                continue
            findings.extend(self._judge(claim, events, complete))
        rewritten = self._locate(findings)
        check = self._coverage(events) if (self._given is not None or self._verifiers) else None
        root = self.compact.root() if self.active and self.broken_at is None else None
        held = max((c.size for c in self.claims if c.holds), default=0)
        return TreeVerdict(tuple(findings), tuple(notes), tuple(rewritten), check, root, held)

    def _size_verdict(self, events: int, notes: list[str]) -> list[tuple[int | None, str, str]]:
        """Notes on how far the stored tree reaches; a finding when it reaches past the
        last event. No writer leaves that (the tree and its events commit together), and
        every writer refuses to extend such a ledger, so it is a removed tail or damage."""
        findings: list[tuple[int | None, str, str]] = []
        stored = self._stored_size
        if stored is None:
            notes.append(
                "no Merkle tree is stored (a ledger written before it existed); readers "
                "compute it, and the next append by this bvisor adds it once the ledger verifies"
            )
        elif stored < events:
            notes.append(
                f"the stored Merkle tree covers events 0..{stored - 1} only; later events were "
                "appended by a writer that does not keep it (the next append adds them)"
            )
        elif stored > events:
            detail = (
                f"the stored Merkle tree covers {stored} events but the ledger holds {events}: "
                f"events {events}..{stored - 1} were recorded and are gone, or the tree is "
                "damaged (a checkpoint kept elsewhere can tell which)"
            )
            findings.append((events, "tree-beyond-head", detail))
        if self.broken_at is not None:
            notes.append(
                f"event {self.broken_at} is missing, so the tree and checkpoints are checked "
                "only before it"
            )
        return findings

    def _judge(
        self, claim: _Claim, events: int, complete: int
    ) -> list[tuple[int | None, str, str]]:
        assert claim.checkpoint is not None
        checkpoint = claim.checkpoint.checkpoint
        size = checkpoint.size
        if size > events:
            return [
                (
                    events,
                    "checkpoint-beyond-head",
                    f"{claim.where} covers events 0..{size - 1} "
                    f"but the ledger ends at event {events - 1}: events {events}..{size - 1} were "
                    "removed",
                )
            ]
        if size > complete:
            return []  # not computable past a missing event (said in a note)
        root = self.roots.get(size)
        head = self.hashes.get(size)
        if root != checkpoint.root:
            confined = [seq for seq in self._damaged if seq < size]
            if checkpoint.head_hash is not None and head == checkpoint.head_hash and confined:
                # Event size-1 still hashes to the signed chain head, so every header it
                # covers is the signed one, and every record without a finding of its own is
                # byte for byte what was signed: the difference is those records'.
                shown = ", ".join(str(seq) for seq in confined[:10])
                detail = (
                    f"{claim.where}: the records of events {shown} are not the ones it signed "
                    "(their damage is reported); its chain head still matches, so every other "
                    "event it covers is as signed"
                )
                self._confined.add((confined[0], detail))
                return [(confined[0], "checkpoint-mismatch", detail)]
            detail = (
                f"{claim.where}: the tree over events 0..{size - 1} has another root than the "
                "one signed: events it covered were changed after they were signed"
            )
            return [(max(size - 1, 0), "checkpoint-mismatch", detail)]
        if checkpoint.head_hash is not None and head is not None and head != checkpoint.head_hash:
            detail = f"{claim.where}: event {size - 1}'s hash is not the chain head it signed"
            return [(size - 1, "checkpoint-mismatch", detail)]
        claim.holds = True
        return []

    def _locate(self, findings: list[tuple[int | None, str, str]]) -> list[tuple[int, int]]:
        """For each failed checkpoint of size S: [G, S) with G the largest holding size < S."""
        holding = sorted({0} | {c.size for c in self.claims if c.holds})
        ranges: list[tuple[int, int]] = []
        for index, (seq, code, detail) in enumerate(findings):
            if code != "checkpoint-mismatch" or seq is None or (seq, detail) in self._confined:
                continue
            size = seq + 1
            good = max((s for s in holding if s < size), default=0)
            runs = self._runs_in(good, size)
            shown = ", ".join(r.hex()[:16] for r in runs[:_SHOWN_RUNS]) or "no run"
            findings[index] = (
                good,
                code,
                f"{detail}; the change lies in events {good}..{size - 1} (runs: {shown})",
            )
            ranges.append((good, size))
        return ranges

    def _runs_in(self, start: int, stop: int) -> list[bytes]:
        """The runs with an event in ``[start, stop)``, in order of their first. The seqs
        come from the events seen, never from the range: a stray key near 2**64 makes
        the range one no loop finishes."""
        seqs = sorted(seq for seq in self.run_of if start <= seq < stop)
        seen: dict[bytes, None] = {}
        for seq in seqs:
            seen.setdefault(self.run_of[seq])
        return list(seen)

    def _coverage(self, events: int) -> CheckpointCheck:
        covered = max((c.size for c in self.claims if c.holds and c.trusted), default=0)
        runs = self._runs_in(covered, events)
        given = self._given
        if given is None:
            signature = "no checkpoint given"
        elif not self._verifiers:
            signature = "not checked (no trusted public key given)"
        else:
            claim = next(c for c in self.claims if c.checkpoint is given)
            signature = _signature_judged(claim.problem)
        recorded, unrecorded = self._authorship(covered)
        return CheckpointCheck(
            size=None if given is None else given.checkpoint.size,
            signature=signature,
            covered=covered,
            events=events,
            uncovered_runs=tuple(runs[:_SHOWN_RUNS]),
            uncovered_run_count=len(runs),
            signatures_checked=bool(self._verifiers),
            recorded_runs=len(recorded),
            recorded_run_ids=frozenset(recorded),
            unrecorded_runs=tuple(unrecorded[:_SHOWN_RUNS]),
            unrecorded_run_count=len(unrecorded),
        )

    def _authorship(self, covered: int) -> tuple[list[bytes], list[bytes]]:
        """The runs with an event below ``covered`` a trusted checkpoint that holds names
        as its signer's own, every event of them; and the others; each in order."""
        if not self._verifiers:
            return [], []
        stated: dict[bytes, list[tuple[int, int]]] = {}
        for claim in self.claims:
            if claim.holds and claim.trusted and claim.checkpoint is not None:
                for run_id, ranges in claim.checkpoint.checkpoint.recorded:
                    stated.setdefault(run_id, []).extend(ranges)
        starts = {run: sorted(ranges) for run, ranges in stated.items()}
        seqs_of: dict[bytes, list[int]] = {}
        for seq in sorted(self.run_of):
            seqs_of.setdefault(self.run_of[seq], []).append(seq)
        recorded: list[bytes] = []
        unrecorded: list[bytes] = []
        for run_id, seqs in seqs_of.items():
            if seqs[0] >= covered:
                continue  # not covered: named as such already
            theirs = starts.get(run_id, [])
            if all(within(theirs, seq) for seq in seqs):
                recorded.append(run_id)
            else:
                unrecorded.append(run_id)
        return recorded, unrecorded


def _signature_judged(problem: tuple[int | None, str, str] | None) -> str:
    """How the given checkpoint's signature was judged: a checkpoint of another log is
    refused before its signature is read, so it did not fail, it was never checked."""
    if problem is None:
        return "verified"
    if problem[1] == "checkpoint-origin":
        return "not checked (the checkpoint is for another log)"
    return "FAILED"
