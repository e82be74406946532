"""Inclusion and consistency proofs from a ledger, checked before they leave it.

Proofs come from the stored tree (O(log n) lookups each) when it covers every event, and
otherwise from a tree computed in memory from the records (a ledger written before the
tree existed: O(n) once, nothing written). Every proof is verified against the root it is
for before it is returned; when one built from the stored tree fails — a damaged cache —
it is rebuilt from the records, so a damaged tree can delay a proof but never falsify one,
and a proof that still fails means the records are not the ones the root covers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from bvisor.ledger.errors import LedgerError
from bvisor.ledger.merkle import (
    MemoryTree,
    PerfectHash,
    ProofError,
    bulk_leaf_hash,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    range_hash,
    verify_consistency,
    verify_inclusion,
)
from bvisor.ledger.store import Ledger, Snapshot

__all__ = ["ProofSource", "ProofUnavailable", "RecordProof", "proof_source"]


class ProofUnavailable(LedgerError):
    """No valid proof exists: the records are not the ones the given root covers."""


@dataclass(frozen=True, slots=True)
class RecordProof:
    """One event's record and its inclusion proof in a tree of ``size`` leaves."""

    seq: int
    record: bytes
    path: tuple[bytes, ...]


class ProofSource:
    """Roots and proofs over one snapshot of a ledger (see module)."""

    def __init__(self, snap: Snapshot) -> None:
        self._snap = snap
        self.events = snap.event_count()
        stored = snap.tree()
        self._stored: PerfectHash | None = None if stored is None else stored.perfect
        self._memory: MemoryTree | None = None
        self.from_records = False

    def _perfect(self) -> PerfectHash:
        if self._stored is not None and not self.from_records:
            return self._stored
        return self._computed().perfect

    def _computed(self) -> MemoryTree:
        if self._memory is None:
            tree = MemoryTree()
            leaf = bulk_leaf_hash()  # every record of the ledger is hashed
            for expected, (key, raw) in enumerate(self._snap.event_items(0, None)):
                if int.from_bytes(key, "big") != expected:
                    raise ProofUnavailable(f"event {expected} is missing: no tree can be built")
                tree.append(leaf(raw))
            self._memory = tree
        return self._memory

    def _try(
        self, build: Callable[[PerfectHash], object], check: Callable[[object], None]
    ) -> object:
        """Build with the stored tree, check; on failure rebuild from the records, check."""
        try:
            result = build(self._perfect())
            check(result)
            return result
        except ProofError:
            if self.from_records or self._stored is None:
                raise
        self.from_records = True
        result = build(self._perfect())
        check(result)
        return result

    def root(self, size: int) -> bytes:
        """The root of the tree over events 0..size-1 (from the records if the stored tree
        cannot answer); to compare with a signed root, use :meth:`root_matches`."""
        self._check_size(size)
        try:
            return range_hash(0, size, self._perfect())
        except ProofError:
            return range_hash(0, size, self._computed().perfect)

    def root_matches(self, size: int, root: bytes) -> bool:
        """Whether the records' tree at ``size`` has ``root`` (stored tree first, records
        second, so a damaged cache cannot make a true claim look false)."""
        self._check_size(size)
        try:
            if range_hash(0, size, self._perfect()) == root:
                return True
        except ProofError:
            pass
        return range_hash(0, size, self._computed().perfect) == root

    def inclusion(self, seq: int, size: int, root: bytes) -> RecordProof:
        """Event ``seq``'s record and its proof under ``root`` (a tree of ``size``)."""
        self._check_size(size)
        if not 0 <= seq < size:
            raise ProofUnavailable(f"event {seq} is not covered by a tree of {size} events")
        raw = self._snap.event_raw(seq)
        if raw is None:
            raise ProofUnavailable(f"event {seq} is missing")
        leaf = leaf_hash(raw)

        def build(perfect: PerfectHash) -> object:
            return inclusion_proof(seq, size, perfect)

        def check(path: object) -> None:
            verify_inclusion(leaf, seq, size, path, root)  # type: ignore[arg-type]

        try:
            path = self._try(build, check)
        except ProofError as exc:
            raise ProofUnavailable(
                f"event {seq}'s record is not the one the tree of size {size} covers "
                f"({exc}): it was changed after that root was made"
            ) from None
        return RecordProof(seq, raw, tuple(path))  # type: ignore[arg-type]

    def consistency(self, old: int, new: int, old_root: bytes, new_root: bytes) -> list[bytes]:
        """The RFC 9162 proof that the tree of ``new`` extends the tree of ``old``."""
        self._check_size(new)

        def build(perfect: PerfectHash) -> object:
            return consistency_proof(old, new, perfect)

        def check(proof: object) -> None:
            verify_consistency(old, new, old_root, new_root, proof)  # type: ignore[arg-type]

        try:
            return self._try(build, check)  # type: ignore[return-value]
        except ProofError as exc:
            raise ProofUnavailable(
                f"the ledger's tree does not extend size {old} to size {new} with these "
                f"roots ({exc})"
            ) from None

    def _check_size(self, size: int) -> None:
        if not 0 <= size <= self.events:
            raise ProofUnavailable(
                f"a tree of {size} events is larger than the ledger ({self.events} events): "
                "events it covered are gone"
            )


@contextmanager
def proof_source(ledger: Ledger) -> Iterator[ProofSource]:
    """A :class:`ProofSource` over one read snapshot of ``ledger``."""
    with ledger.snapshot() as snap:
        yield ProofSource(snap)
