"""Signing checkpoints of the ledger — never one inconsistent with the last it signed.

A checkpoint (``bvisor.ledger.checkpoint``) is kept in the ledger's ``checkpoints``
database under ``tree size (8 bytes, big-endian) || key id (4 bytes)``, its value the
signed note's bytes. Signing happens in a write transaction and is refused unless all of
this holds, each checked from the records, not from the stored tree alone:

* the last stored checkpoint is for this ledger, no larger than it, and signed by this
  key (its signature verifies) — a different key needs ``rotate``, so a swapped key file
  cannot quietly start a second history;
* the stored tree's root at that checkpoint's size is the root it signed (so nothing it
  covered was changed), and the record of its last event is included under that root;
* every event since then strictly decodes, is stored under its own seq, links to the one
  before it and matches its payload hash, and the meta head names the last one;
* the tree over those records, recomputed from their bytes, agrees with the stored nodes;
* the ledger still extends the checkpoint this key remembers signing last
  (:class:`SigningRequest.remembered`, kept beside the key by ``bvisor.ledger.keys``): an
  attacker who can write the ledger but not the key's directory can delete the stored
  checkpoints, but not the signer's memory of them.

So a signature only ever goes on records this code has checked and on a tree that extends
the previous checkpoint: C2SP's "a log MUST NOT sign a checkpoint inconsistent with one it
signed before". The cost is O(events since the last checkpoint + log n); the first
checkpoint of a ledger checks it all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bvisor.ledger.checkpoint import (
    Recorded,
    SignedCheckpoint,
    checkpoint_text,
    ledger_origin,
    parse_checkpoint,
    seq_ranges,
)
from bvisor.ledger.environment import (
    META_HEAD_HASH,
    META_HEAD_SEQ,
    Environment,
    seq_key,
    stray_records,
)
from bvisor.ledger.errors import LedgerCorruptError, LedgerUsageError
from bvisor.ledger.merkle import (
    CompactRange,
    ProofError,
    bulk_leaf_hash,
    inclusion_proof,
    leaf_hash,
)
from bvisor.ledger.merkle import verify_inclusion as _verify_inclusion
from bvisor.ledger.note import NoteError, Signer, sign_note, verify_note
from bvisor.ledger.record import RecordError, decode_record
from bvisor.ledger.tree import StoredTree

__all__ = ["SigningRequest", "largest_size", "row_key", "sign", "stored", "stored_row"]

_BULK = 1024  # records to hash before signing, from which OpenSSL's SHA-256 pays for itself


@dataclass(slots=True)
class SigningRequest:
    """Sign a checkpoint in an append's transaction (or alone): with which key, and what
    the key's holder remembers signing last. ``tolerate``: a refusal leaves the events
    appended and is kept in ``problem``; else it refuses the whole transaction.
    ``signed`` holds the checkpoint once the transaction commits."""

    signer: Signer
    rotate: bool = False
    remembered: SignedCheckpoint | None = None
    tolerate: bool = False
    signed: SignedCheckpoint | None = None
    problem: str | None = None
    covered_runs: tuple[bytes, ...] = ()  # runs it is the first to cover (see sign)
    recorded: dict[bytes, dict[int, bytes]] = field(default_factory=dict)
    """The events of the runs the requester itself recorded before this transaction, each
    seq with the hash its append's receipt gave; the append adds the events it writes,
    and the checkpoint names them (``bvisor-recorded``)."""


def row_key(size: int, key_id: bytes) -> bytes:
    """The ``checkpoints`` key of a checkpoint of ``size`` signed by ``key_id``."""
    return seq_key(size) + key_id


def stored_row(key: bytes, value: bytes, ledger_id: bytes) -> SignedCheckpoint | None:
    """The checkpoint a ``checkpoints`` row holds, or None unless the row is one this module
    stores: a well-formed note of this ledger's log, kept under its own size and the key id
    of one of its signatures (:func:`row_key`). Lookups by size trust the key to say what
    the note says, so a row kept elsewhere (an old note copied under a larger size, another
    ledger's checkpoint of the same key) is no candidate: ``verify`` still judges every
    row by its note alone."""
    try:
        signed = parse_checkpoint(value)
    except NoteError:
        return None
    checkpoint = signed.checkpoint
    if checkpoint.origin != ledger_origin(ledger_id):
        return None
    if not any(key == row_key(checkpoint.size, s.key_id) for s in signed.note.signatures):
        return None
    return signed


def largest_size(txn: Any, environment: Environment) -> int | None:
    """The largest tree size a stored checkpoint claims (None: no checkpoints)."""
    if environment.checkpoints is None:
        return None
    cursor = txn.cursor(db=environment.checkpoints)
    if not cursor.last():
        return None
    key = bytes(cursor.key())
    return int.from_bytes(key[:8], "big") if len(key) == 12 else None


def stored(txn: Any, environment: Environment) -> list[SignedCheckpoint]:
    """Every well-formed stored checkpoint, smallest first (``verify`` reports the rest)."""
    found: list[SignedCheckpoint] = []
    if environment.checkpoints is None:
        return found
    for _key, value in txn.cursor(db=environment.checkpoints):
        try:
            found.append(parse_checkpoint(bytes(value)))
        except NoteError:
            continue
    return found


def _last(txn: Any, environment: Environment) -> SignedCheckpoint | None:
    if environment.checkpoints is None:
        return None
    cursor = txn.cursor(db=environment.checkpoints)
    if not cursor.last():
        return None
    try:
        return parse_checkpoint(bytes(cursor.value()))
    except NoteError as exc:
        raise LedgerCorruptError(
            f"ledger {environment.path}: the last stored checkpoint is malformed ({exc}); "
            "refusing to sign (run verify)"
        ) from None


def _refuse(environment: Environment, why: str) -> LedgerCorruptError:
    return LedgerCorruptError(f"ledger {environment.path}: {why}; refusing to sign a checkpoint")


def sign(
    txn: Any,
    environment: Environment,
    signer: Signer,
    *,
    rotate: bool = False,
    remembered: SignedCheckpoint | None = None,
    covered_runs: list[bytes] | None = None,
    recorded: dict[bytes, dict[int, bytes]] | None = None,
) -> SignedCheckpoint:
    """Check (see module) and sign a checkpoint of the current head; store and return it.

    ``covered_runs`` receives the runs with an event the new checkpoint is the first to
    cover, in order: a signature says the ledger held them, not who wrote them (anyone
    who could write the ledger may have), so a signer can say which it vouches for.
    ``recorded``: the runs the signer recorded itself, with their events' seqs; the
    checkpoint states them (:mod:`bvisor.ledger.checkpoint`), each seq checked to be an
    event of that run."""
    events = _event_count(txn, environment)
    origin = ledger_origin(environment.ledger_id)
    tree = StoredTree(txn, environment)
    verifier = signer.verifier
    if remembered is not None:
        _check_remembered(environment, tree, remembered, origin, events)
    previous = _last(txn, environment)
    frontier = CompactRange()
    head = environment.genesis
    if previous is not None:
        old = previous.checkpoint
        if old.origin != origin:
            raise _refuse(environment, f"its last checkpoint is for another log ({old.origin})")
        if old.size > events:
            raise _refuse(
                environment,
                f"its last checkpoint covers {old.size} events but it holds {events}: "
                "events were removed",
            )
        mine = any(
            s.name == verifier.name and s.key_id == verifier.key_id
            for s in previous.note.signatures
        )
        if mine:
            try:
                verify_note(previous.note, [verifier])
            except NoteError as exc:
                raise _refuse(environment, f"its last checkpoint does not verify ({exc})") from None
        elif not rotate:
            signers = ", ".join(f"{s.name}+{s.key_id.hex()}" for s in previous.note.signatures)
            raise LedgerUsageError(
                f"ledger {environment.path}: its last checkpoint (size {old.size}) was signed "
                f"by {signers}, not by this key {verifier.name}+{verifier.key_id.hex()}; a "
                "new key starts a new history that verifiers holding the old public key "
                "will not accept — give --rotate if the key was replaced on purpose"
            )
        try:
            frontier = CompactRange.at(old.size, tree.perfect)
        except ProofError as exc:
            raise _refuse(environment, str(exc)) from None
        if frontier.root() != old.root:
            raise _refuse(
                environment,
                f"its tree at size {old.size} no longer has the root its last checkpoint "
                f"signed: events before {old.size} were changed after they were signed "
                "(run bvisor-ledger verify --checkpoint)",
            )
        if old.size > 0:
            head = _checked_last_signed(txn, environment, tree, old.size, old.root, old.head_hash)
        if old.size == events and mine:
            return previous  # nothing new to sign
    leaf = leaf_hash if events - frontier.size < _BULK else bulk_leaf_hash()
    seen: set[bytes] = set()  # the runs of covered_runs
    for seq in range(frontier.size, events):
        raw = txn.get(seq_key(seq), db=environment.events)
        if raw is None:
            raise _refuse(environment, f"event {seq} is missing")
        record = bytes(raw)
        try:
            decoded = decode_record(record)
        except RecordError as exc:
            raise _refuse(environment, f"event {seq}: {exc.detail}") from None
        event = decoded.event
        if event.seq != seq or event.prev_hash != head or not decoded.payload_ok:
            raise _refuse(environment, f"event {seq} does not chain to event {seq - 1}")
        head = event.hash
        if covered_runs is not None and event.run_id is not None and event.run_id not in seen:
            seen.add(event.run_id)
            covered_runs.append(event.run_id)
        for level, index, value in frontier.push(leaf(record)):
            try:
                stored_value = tree.perfect(level, index)
            except ProofError as exc:
                raise _refuse(environment, str(exc)) from None
            if stored_value != value:
                raise _refuse(
                    environment,
                    f"the stored tree node over events {index << level}.."
                    f"{((index + 1) << level) - 1} disagrees with their records",
                )
    head_seq = txn.get(META_HEAD_SEQ, db=environment.meta)
    head_hash = txn.get(META_HEAD_HASH, db=environment.meta)
    if events and (head_seq != seq_key(events - 1) or head_hash != head):
        raise _refuse(environment, "its meta head does not name its last event")
    stated = _stated(txn, environment, recorded or {}, events)
    text = checkpoint_text(origin, events, frontier.root(), head if events else None, stated)
    note = sign_note(text, signer)
    txn.put(row_key(events, verifier.key_id), note.encode("utf-8"), db=environment.checkpoints)
    return parse_checkpoint(note)


def _stated(
    txn: Any, environment: Environment, recorded: dict[bytes, dict[int, bytes]], events: int
) -> tuple[Recorded, ...]:
    """The ``recorded`` runs as the checkpoint states them, each seq proven to hold an
    event of that run with the hash the signer's own append gave it (refused otherwise:
    the signer would vouch for what it did not write). A run's first events commit before
    the workload runs and the rest after it, unsigned in between, so whoever could write
    the ledger meanwhile could rewrite them (re-chained, the head and tree made to agree),
    and the run id alone would name their event as the signer's. Runs in the order given."""
    stated: list[Recorded] = []
    for run_id, hashes in recorded.items():
        ordered = sorted(hashes)
        for seq in ordered:
            raw = txn.get(seq_key(seq), db=environment.events) if seq < events else None
            try:
                event = None if raw is None else decode_record(bytes(raw)).event
            except RecordError:
                event = None
            if event is None or event.run_id != run_id:
                raise _refuse(
                    environment,
                    f"event {seq} is not of run {run_id.hex()[:16]}, which it signs as its own",
                )
            if event.hash != hashes[seq]:
                raise _refuse(
                    environment,
                    f"event {seq} of run {run_id.hex()[:16]} is not the one this signer "
                    "appended (it was rewritten since)",
                )
        if ordered:
            stated.append((run_id, seq_ranges(ordered)))
    return tuple(stated)


def _event_count(txn: Any, environment: Environment) -> int:
    """How many events the meta head names, refused unless the events database holds
    exactly those records (a record under a key that is no event's, or a gap, is damage
    for verify to name, never a reason to say an event is missing)."""
    head_seq = txn.get(META_HEAD_SEQ, db=environment.meta)
    named = 0 if head_seq is None or len(head_seq) != 8 else int.from_bytes(head_seq, "big") + 1
    problem = stray_records(txn, environment, named)
    if problem is not None:
        raise _refuse(environment, problem)
    return named


def _checked_last_signed(
    txn: Any,
    environment: Environment,
    tree: StoredTree,
    size: int,
    root: bytes,
    head_hash: bytes | None,
) -> bytes:
    """The hash of event size-1, after proving its record is the one the root covers."""
    raw = txn.get(seq_key(size - 1), db=environment.events)
    if raw is None:
        raise _refuse(environment, f"event {size - 1} is missing")
    record = bytes(raw)
    try:
        path = inclusion_proof(size - 1, size, tree.perfect)
        _verify_inclusion(leaf_hash(record), size - 1, size, path, root)
        decoded = decode_record(record)
    except (ProofError, RecordError) as exc:
        raise _refuse(environment, f"event {size - 1} is not the one last signed ({exc})") from None
    if head_hash is not None and decoded.event.hash != head_hash:
        raise _refuse(environment, f"event {size - 1}'s hash is not the one last signed")
    return decoded.event.hash


def _check_remembered(
    environment: Environment,
    tree: StoredTree,
    remembered: SignedCheckpoint,
    origin: str,
    events: int,
) -> None:
    """The ledger must extend the checkpoint this key last signed for it (O(log n))."""
    cp = remembered.checkpoint
    if cp.origin != origin:
        return  # the memory of another ledger: nothing to compare
    if cp.size > events:
        raise _refuse(
            environment,
            f"this key last signed a checkpoint of {cp.size} events and the ledger holds "
            f"{events}: events {events}..{cp.size - 1} were removed",
        )
    try:
        root = CompactRange.at(cp.size, tree.perfect).root()
    except ProofError as exc:
        raise _refuse(environment, str(exc)) from None
    if root != cp.root:
        raise _refuse(
            environment,
            f"its tree at size {cp.size} is not the one this key last signed: events before "
            f"{cp.size} were changed after they were signed (run bvisor-ledger verify "
            "--checkpoint)",
        )
