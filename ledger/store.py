"""The ledger store: append hash-chained events durably, read them back.

Every append is one LMDB write transaction that reads the head, builds the record(s),
writes each record, its ``runs`` index row and the new head, and commits with LMDB's
default synchronous flush — so an append is durable before it returns, a killed appender
leaves each event wholly there or absent, and because LMDB serialises writers across
processes, any number of processes appending at once still form one chain.

A handle refuses to extend a ledger whose ``meta`` head disagrees with its last event key
(fail closed: run ``verify``). Reads decode strictly and check each payload against its
``payload_hash``; the chain itself is checked by :func:`bvisor.ledger.verify.verify`.

Run ids are byte strings (the runner's attempt_id); events of a run are listed in the
``runs`` database under ``run_id + index`` (index 0, 1, ... in append order).

The same transaction also extends the Merkle tree (``bvisor.ledger.tree``) and the run
lookup tables ``runids`` (run id -> seq of its first event) and ``runstart`` (that seq ->
run id), and — when asked — signs a checkpoint of the new head (``bvisor.ledger.notary``).
A ledger written before the tree existed gets it from its first append by this code, after
the whole ledger verified (``bvisor.ledger.upgrade``); one that does not verify is never
written to. The lookup tables only narrow a search: every answer read from them is checked
against the events before it is used.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Final

from bvisor.ledger import environment as envmod
from bvisor.ledger.environment import (
    META_HEAD_HASH,
    META_HEAD_SEQ,
    Environment,
    seq_key,
)
from bvisor.ledger.errors import (
    EventNotFoundError,
    LedgerCorruptError,
    LedgerError,
    LedgerUsageError,
)
from bvisor.ledger.kinds import check_kind
from bvisor.ledger.record import (
    HASH_SIZE,
    MAX_SEQ,
    Event,
    RecordError,
    build_record,
    check_run_id,
    decode_record,
    encode_payload,
)
from bvisor.ledger.tree import StoredTree, stored_tree_size

if TYPE_CHECKING:
    from bvisor.ledger.checkpoint import SignedCheckpoint
    from bvisor.ledger.notary import SigningRequest
    from bvisor.ledger.note import Signer

__all__ = ["AppendItem", "Head", "Ledger", "Receipt", "RunSummary", "Snapshot"]

_CHUNK: Final = 256
_LARGEST_KEY_SEQ: Final = (1 << 64) - 1  # an event key is 8 bytes, big-endian
_INDEX_LIMIT: Final = 1 << 32
_RECORD_OVERHEAD: Final = 256

AppendItem = tuple[str, object, bytes | None] | tuple[str, object]


@dataclass(frozen=True, slots=True)
class Receipt:
    """Proof an append committed: its sequence number and event hash."""

    seq: int
    hash: bytes


@dataclass(frozen=True, slots=True)
class Head:
    """The last event of a ledger; ``SEQ:HASHHEX`` is its portable form."""

    seq: int
    hash: bytes

    def __str__(self) -> str:
        return f"{self.seq}:{self.hash.hex()}"


@dataclass(frozen=True, slots=True)
class RunSummary:
    """One run as the ledger saw it: where its events are, how many, when, the last kind.

    Events, not outcomes: what a run's events *mean* (how it ended) is for the readers of
    the run grammar (:mod:`bvisor.contract.events`, replay), never for the store.
    """

    run_id: bytes
    first_seq: int
    last_seq: int
    count: int
    first_time_ns: int
    last_time_ns: int
    last_kind: str


@dataclass(frozen=True, slots=True)
class _Prepared:
    kind: str
    payload: bytes
    run_id: bytes | None


def _check_seq(name: str, value: object, limit: int = MAX_SEQ) -> int:
    if type(value) is not int or not 0 <= value <= limit:
        raise LedgerUsageError(f"{name}: expected an integer from 0 to {limit}, got {value!r}")
    return value


class Snapshot:
    """A consistent read-only view of the raw databases (one read transaction).

    ``verify`` works only through this view, so it can never write.
    """

    def __init__(self, environment: Environment, txn: Any) -> None:
        self._env = environment
        self._txn = txn
        self.path = environment.path
        self.ledger_id = environment.ledger_id
        self.genesis = environment.genesis

    def meta(self, key: bytes) -> bytes | None:
        value = self._txn.get(key, db=self._env.meta)
        return None if value is None else bytes(value)

    def event_raw(self, seq: int) -> bytes | None:
        value = self._txn.get(seq_key(seq), db=self._env.events)
        return None if value is None else bytes(value)

    def last_event_seq(self) -> int | None:
        """The largest seq stored under an event key (None: none is). Keys of another
        length (a stray record, for verify to name) are stepped over, in both places they
        sort: a 7-byte key of ``ff`` bytes sorts after every seq."""
        cursor = self._txn.cursor(db=self._env.events)
        found = cursor.last()
        while found and len(cursor.key()) != 8:
            found = cursor.prev()
        return int.from_bytes(cursor.key(), "big") if found else None

    def keys_before_seq_0(self) -> Iterator[bytes]:
        """Event keys that sort before seq 0's (shorter keys of zero bytes): no writer
        makes them, and a walk from seq 0 would never meet them."""
        cursor = self._txn.cursor(db=self._env.events)
        first = seq_key(0)
        found = cursor.first()
        while found and bytes(cursor.key()) < first:
            yield bytes(cursor.key())
            found = cursor.next()

    def event_items(self, start: int, stop: int | None) -> Iterator[tuple[bytes, bytes]]:
        """Raw ``(key, record)`` pairs from key ``start`` (inclusive) in key order."""
        cursor = self._txn.cursor(db=self._env.events)
        if not cursor.set_range(seq_key(start)):
            return
        limit = None if stop is None else seq_key(stop)
        for key, value in cursor:
            if limit is not None and len(key) == 8 and key >= limit:
                return
            yield bytes(key), bytes(value)

    def event_pairs(self, start: int) -> Iterator[tuple[bytes, bytes]]:
        """:meth:`event_items` from ``start`` to the end, straight from the cursor (the
        transaction returns ``bytes``, not buffers): the verify walk's per-event loop."""
        cursor = self._txn.cursor(db=self._env.events)
        if not cursor.set_range(seq_key(start)):
            return iter(())
        return cursor.iternext(keys=True, values=True)  # type: ignore[no-any-return]

    def event_count(self) -> int:
        return int(self._txn.stat(self._env.events)["entries"])

    def run_row(self, key: bytes) -> bytes | None:
        value = self._txn.get(key, db=self._env.runs)
        return None if value is None else bytes(value)

    def run_row_reader(self) -> Callable[[bytes], bytes | None]:
        """:meth:`run_row` without the wrapper, for a walk that reads one row per event
        (the transaction returns ``bytes``: it was not opened with ``buffers``)."""
        return partial(self._txn.get, db=self._env.runs)

    def run_rows(self, prefix: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        """Raw ``(run_id + index, seq)`` rows whose key starts with ``prefix``."""
        cursor = self._txn.cursor(db=self._env.runs)
        found = cursor.set_range(prefix) if prefix else cursor.first()
        if not found:
            return
        for key, value in cursor:
            if not key.startswith(prefix):
                return
            yield bytes(key), bytes(value)

    def run_row_count(self) -> int:
        return int(self._txn.stat(self._env.runs)["entries"])

    @property
    def txn(self) -> Any:
        return self._txn

    @property
    def environment(self) -> Environment:
        return self._env

    def tree_size(self) -> int | None:
        """Leaves the stored tree covers; None when the ledger has no stored tree."""
        return stored_tree_size(self._txn, self._env)

    def tree(self) -> StoredTree | None:
        """The stored tree, when it covers exactly the events (else None: compute it)."""
        size = self.tree_size()
        if size is None or size != self.event_count():
            return None
        return StoredTree(self._txn, self._env)

    def tree_node(self, level: int, index: int) -> bytes | None:
        if self._env.tree is None:
            return None
        from bvisor.ledger.tree import node_key

        value = self._txn.get(node_key(level, index), db=self._env.tree)
        return None if value is None else bytes(value)

    def run_seqs(self, run_id: bytes) -> list[int]:
        """The seqs the ``runs`` index lists for ``run_id``, in order."""
        return _run_seqs(self._txn, self._env, run_id)

    def latest_run_start(self) -> tuple[int, bytes] | None:
        """``(seq, run id)`` of the newest run start ``runstart`` names (unchecked); None
        when the ledger does not keep the table."""
        return _latest_run_start(self._txn, self._env)

    def run_starts(self) -> Iterator[tuple[int, bytes]]:
        """``(first seq, run id)`` of every run, from the ``runs`` index (O(runs))."""
        for key, value in self._txn.cursor(db=self._env.runs):
            if len(key) >= 5 and key[-4:] == b"\x00\x00\x00\x00" and len(value) == 8:
                yield int.from_bytes(value, "big"), bytes(key[:-4])

    def checkpoint_rows(self) -> Iterator[tuple[bytes, bytes]]:
        """Raw ``(size || key id, note)`` rows of stored checkpoints, smallest size first."""
        if self._env.checkpoints is None:
            return
        for key, value in self._txn.cursor(db=self._env.checkpoints):
            yield bytes(key), bytes(value)

    def checkpoint_rows_between(
        self, first: int, stop: int | None = None, *, newest_first: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        """Raw rows of stored checkpoints of tree size ``first <= size < stop`` (no stop:
        every larger one), smallest first or, with ``newest_first``, largest first: a
        seek and a step per row, so finding one costs O(log n) however many are stored
        (a ledger signed at every run holds one per run)."""
        if stop is not None and stop >= 1 << 64:
            stop = None  # past every size a key can hold
        if self._env.checkpoints is None or (stop is not None and stop <= first):
            return
        cursor = self._txn.cursor(db=self._env.checkpoints)
        low = seq_key(first)
        if newest_first:
            found = cursor.set_range(seq_key(stop)) if stop is not None else cursor.last()
            if stop is not None:
                found = cursor.prev() if found else cursor.last()
            while found and bytes(cursor.key()) >= low:
                yield bytes(cursor.key()), bytes(cursor.value())
                found = cursor.prev()
            return
        found = cursor.set_range(low)
        high = None if stop is None else seq_key(stop)
        while found and (high is None or bytes(cursor.key()) < high):
            yield bytes(cursor.key()), bytes(cursor.value())
            found = cursor.next()

    def checkpoints_between(
        self, first: int, stop: int | None = None, *, newest_first: bool = False
    ) -> Iterator[SignedCheckpoint]:
        """The checkpoints of :meth:`checkpoint_rows_between` that are this ledger's, each
        kept under its own size and key id (``notary.stored_row``: a row kept elsewhere, or
        one of another log a writer copied in, is passed over; ``verify`` names it).
        Signatures unchecked."""
        from bvisor.ledger import notary

        for key, value in self.checkpoint_rows_between(first, stop, newest_first=newest_first):
            found = notary.stored_row(key, value, self.ledger_id)
            if found is not None:
                yield found


class Ledger:
    """A handle on one ledger directory. Cheap; share the process's LMDB environment.

    Use :meth:`open`; close with :meth:`close` or a ``with`` block. A handle must not be
    used in a process forked after it was opened.
    """

    def __init__(self, environment: Environment, readonly: bool, clock: Callable[[], int]):
        self._env: Environment | None = environment
        self._readonly = readonly
        self._clock = clock

    # -- lifecycle -----------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        create: bool = False,
        readonly: bool = False,
        *,
        ledger_id: bytes | None = None,
        clock: Callable[[], int] | None = None,
        map_size: int | None = None,
    ) -> Ledger:
        """Open the ledger in directory ``path``.

        ``create`` makes the directory (0700) and an empty ledger if there is none;
        ``readonly`` opens the LMDB environment read-only (used by ``verify``).
        ``ledger_id`` (16 bytes) fixes the id of a ledger being created, ``clock`` replaces
        ``time.time_ns`` and ``map_size`` sets the initial map — all three exist so golden
        vectors and tests are reproducible; normal callers leave them alone.
        """
        environment = envmod.acquire(
            path, create=create, readonly=readonly, ledger_id=ledger_id, map_size=map_size
        )
        return cls(environment, readonly, clock or time.time_ns)

    def close(self) -> None:
        """Release this handle; the process's last handle closes the environment."""
        if self._env is not None:
            environment, self._env = self._env, None
            envmod.release(environment)

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @property
    def _live(self) -> Environment:
        if self._env is None:
            raise LedgerUsageError("ledger handle is closed")
        self._env.check_process()
        return self._env

    @property
    def path(self) -> str:
        return self._live.path

    @property
    def ledger_id(self) -> bytes:
        return self._live.ledger_id

    @property
    def genesis(self) -> bytes:
        return self._live.genesis

    @property
    def readonly(self) -> bool:
        return self._readonly

    # -- writing -------------------------------------------------------------------------

    def append(self, kind: str, payload: object, run_id: bytes | None = None) -> Receipt:
        """Append one event; durable on return."""
        return self.append_many([(kind, payload, run_id)])[0]

    def append_many(
        self,
        items: Iterable[AppendItem],
        *,
        sign: SigningRequest | None = None,
    ) -> list[Receipt]:
        """Append events ``(kind, payload[, run_id])`` in one transaction (one flush).

        Every item is validated before anything is written: a bad kind, run id or payload
        raises and the ledger is unchanged. With ``sign``, the same transaction signs and
        stores a checkpoint of the new head (``bvisor.ledger.notary``): the events and their
        checkpoint are durable together. When the checkpoint is refused, the append is
        refused too — unless ``sign.tolerate``: then ``sign.problem`` says why and the
        events are appended unsigned (a run's record matters more than its checkpoint).
        """
        environment = self._live
        if self._readonly:
            raise LedgerUsageError(f"ledger {environment.path} is open read-only")
        prepared = [self._prepare(position, item) for position, item in enumerate(items)]
        if not prepared:
            return []
        size_hint = sum(len(item.payload) + _RECORD_OVERHEAD for item in prepared)
        return environment.write(lambda txn: self._commit(txn, prepared, sign), size_hint)

    def checkpoint(
        self,
        signer: Signer,
        *,
        rotate: bool = False,
        remembered: SignedCheckpoint | None = None,
        covered_runs: list[bytes] | None = None,
    ) -> SignedCheckpoint:
        """Sign and store a checkpoint of the current head (see ``bvisor.ledger.notary``);
        ``remembered`` is the checkpoint the key's holder last signed for this ledger;
        ``covered_runs`` receives the runs the checkpoint is the first to cover."""
        from bvisor.ledger import notary

        environment = self._live
        if self._readonly:
            raise LedgerUsageError(f"ledger {environment.path} is open read-only")

        def action(txn: Any) -> SignedCheckpoint:
            seq, _prev = self._head_for_append(txn, environment)
            self._bring_tree_up_to_date(txn, environment, seq)
            if covered_runs is not None:
                covered_runs.clear()  # a write retried from the start starts the list again
            return notary.sign(
                txn,
                environment,
                signer,
                rotate=rotate,
                remembered=remembered,
                covered_runs=covered_runs,
            )

        return environment.write(action, 4096)

    @staticmethod
    def _prepare(position: int, item: AppendItem) -> _Prepared:
        if not isinstance(item, (tuple, list)) or len(item) not in (2, 3):
            raise LedgerUsageError(f"item {position}: expected (kind, payload[, run_id])")
        kind = check_kind(item[0])
        run_id = check_run_id(item[2] if len(item) == 3 else None)
        return _Prepared(kind, encode_payload(item[1]), run_id)

    def _commit(
        self,
        txn: Any,
        prepared: Sequence[_Prepared],
        sign: SigningRequest | None = None,
    ) -> list[Receipt]:
        environment = self._live
        seq, prev = self._head_for_append(txn, environment)
        self._bring_tree_up_to_date(txn, environment, seq)
        first = seq
        next_index: dict[bytes, int] = {}
        receipts: list[Receipt] = []
        raws: list[bytes] = []
        for item in prepared:
            built = build_record(seq, prev, self._clock(), item.kind, item.run_id, item.payload)
            key = seq_key(seq)
            if not txn.put(key, built.raw, db=environment.events, append=True):
                raise LedgerCorruptError(f"event {seq} already exists; run verify")
            if item.run_id is not None:
                index = next_index.get(item.run_id)
                if index is None:
                    index = _next_run_index(txn, environment, item.run_id)
                if index >= _INDEX_LIMIT:
                    raise LedgerError(f"run {item.run_id.hex()}: more than 2^32 events")
                txn.put(item.run_id + index.to_bytes(4, "big"), key, db=environment.runs)
                if index == 0:  # a new run: the lookup tables learn where it starts
                    txn.put(item.run_id, key, db=environment.runids)
                    txn.put(key, item.run_id, db=environment.runstart)
                next_index[item.run_id] = index + 1
            receipts.append(Receipt(seq, built.hash))
            raws.append(built.raw)
            prev = built.hash
            seq += 1
        StoredTree(txn, environment).extend(first, raws)
        txn.put(META_HEAD_SEQ, seq_key(seq - 1), db=environment.meta)
        txn.put(META_HEAD_HASH, prev, db=environment.meta)
        if sign is not None:
            from bvisor.ledger import notary

            sign.signed, sign.problem, sign.covered_runs = None, None, ()
            covered: list[bytes] = []
            recorded = {run: dict(hashes) for run, hashes in sign.recorded.items()}
            for item, receipt in zip(prepared, receipts, strict=True):  # the signer's own
                if item.run_id is not None:
                    recorded.setdefault(item.run_id, {})[receipt.seq] = receipt.hash
            try:
                sign.signed = notary.sign(
                    txn,
                    environment,
                    sign.signer,
                    rotate=sign.rotate,
                    remembered=sign.remembered,
                    covered_runs=covered,
                    recorded=recorded,
                )
                sign.covered_runs = tuple(covered)
            except LedgerError as exc:  # refused: nothing of the checkpoint was written
                if not sign.tolerate:
                    raise
                sign.problem = str(exc)
        return receipts

    @staticmethod
    def _bring_tree_up_to_date(txn: Any, environment: Environment, events: int) -> None:
        """Make the stored tree cover every event before writing more (see module doc)."""
        if stored_tree_size(txn, environment) == events:
            return
        from bvisor.ledger import upgrade

        upgrade.add_tree(txn, environment, events)

    @staticmethod
    def _head_for_append(txn: Any, environment: Environment) -> tuple[int, bytes]:
        """The next seq and prev_hash, refusing a head that contradicts the events."""
        head_seq = txn.get(META_HEAD_SEQ, db=environment.meta)
        head_hash = txn.get(META_HEAD_HASH, db=environment.meta)
        cursor = txn.cursor(db=environment.events)
        found = cursor.last()
        while found and len(cursor.key()) != 8:  # a stray key sorting last is no event's
            found = cursor.prev()
        last_key = bytes(cursor.key()) if found else None
        if head_seq is None and head_hash is None and last_key is None:
            _refuse_stray_records(txn, environment, 0)
            return 0, environment.genesis
        if (
            head_seq is None
            or head_hash is None
            or len(head_seq) != 8
            or len(head_hash) != HASH_SIZE
            or bytes(head_seq) != last_key
        ):
            raise LedgerCorruptError(
                f"ledger {environment.path}: meta head does not match the last event; "
                "refusing to append to a damaged ledger (run verify)"
            )
        following = int.from_bytes(head_seq, "big") + 1
        _refuse_stray_records(txn, environment, following)
        return following, bytes(head_hash)

    # -- reading -------------------------------------------------------------------------

    def head(self) -> Head | None:
        """The last event's seq and hash as recorded in ``meta``; None when empty."""
        environment = self._live
        with environment.read() as txn:
            head_seq = txn.get(META_HEAD_SEQ, db=environment.meta)
            head_hash = txn.get(META_HEAD_HASH, db=environment.meta)
        if head_seq is None or head_hash is None:
            return None
        if len(head_seq) != 8 or len(head_hash) != HASH_SIZE:
            raise LedgerCorruptError(f"ledger {environment.path}: meta head is malformed")
        return Head(int.from_bytes(head_seq, "big"), bytes(head_hash))

    def get(self, seq: int) -> Event:
        """The event at ``seq``, strictly decoded with its payload hash checked."""
        _check_seq("seq", seq)
        environment = self._live
        with environment.read() as txn:
            raw = txn.get(seq_key(seq), db=environment.events)
        if raw is None:
            raise EventNotFoundError(f"no event with seq {seq}")
        return _decode(seq, bytes(raw))

    def events(
        self, start: int = 0, stop: int | None = None, *, reverse: bool = False
    ) -> Iterator[Event]:
        """Events with ``start <= seq < stop`` in seq order (newest first if ``reverse``).

        Reads in short transactions of a few hundred events, so iterating never blocks a
        map resize and sees events appended while it runs (forward order).
        """
        _check_seq("start", start)
        if stop is not None:
            _check_seq("stop", stop, MAX_SEQ + 1)
        environment = self._live
        if reverse:
            return self._backward(environment, start, stop)
        return self._forward(environment, start, stop)

    def _forward(self, environment: Environment, start: int, stop: int | None) -> Iterator[Event]:
        position = start
        while stop is None or position < stop:
            chunk: list[tuple[int, bytes]] = []
            with environment.read() as txn:
                cursor = txn.cursor(db=environment.events)
                found = cursor.set_range(seq_key(position))
                while found and len(chunk) < _CHUNK:
                    seq = _key_seq(environment, cursor.key())
                    if stop is not None and seq >= stop:
                        break
                    chunk.append((seq, bytes(cursor.value())))
                    found = cursor.next()
            if not chunk:
                return
            for seq, raw in chunk:
                yield _decode(seq, raw)
            position = chunk[-1][0] + 1

    def _backward(self, environment: Environment, start: int, stop: int | None) -> Iterator[Event]:
        upper = stop
        while upper is None or upper > start:
            chunk: list[tuple[int, bytes]] = []
            with environment.read() as txn:
                cursor = txn.cursor(db=environment.events)
                if upper is None:
                    found = cursor.last()
                else:
                    found = cursor.prev() if cursor.set_range(seq_key(upper)) else cursor.last()
                while found and len(chunk) < _CHUNK:
                    seq = _key_seq(environment, cursor.key())
                    if seq < start:
                        break
                    chunk.append((seq, bytes(cursor.value())))
                    found = cursor.prev()
            if not chunk:
                return
            for seq, raw in chunk:
                yield _decode(seq, raw)
            upper = chunk[-1][0]

    def run_events(self, run_id: bytes) -> list[Event]:
        """Every event of ``run_id`` in append order (empty if the run is unknown)."""
        checked = check_run_id(run_id)
        if checked is None:
            raise LedgerUsageError("run_id: a run id is required")
        environment = self._live
        with environment.read() as txn:
            seqs = _run_seqs(txn, environment, checked)
            raws = [(seq, txn.get(seq_key(seq), db=environment.events)) for seq in seqs]
        events: list[Event] = []
        for seq, raw in raws:
            if raw is None:
                raise LedgerCorruptError(f"run {checked.hex()} lists missing event {seq}")
            events.append(_decode(seq, bytes(raw)))
        return events

    def last_of_kind(self, run_id: bytes, kind: str) -> Event | None:
        """The last event of ``run_id`` whose kind is ``kind`` (None if it has none).

        Walks back from the run's end, so a kind written near the end costs a few reads
        however long the run's record is.
        """
        checked = check_run_id(run_id)
        if checked is None:
            raise LedgerUsageError("run_id: a run id is required")
        wanted = check_kind(kind)
        environment = self._live
        with environment.read() as txn:
            return _last_of(txn, environment, _run_seqs(txn, environment, checked), wanted)

    def runs(self) -> list[RunSummary]:
        """One summary per run, ordered by the run's first event."""
        return [summary for summary, _ in self._runs(None)]

    def runs_with_last(self, kind: str) -> list[tuple[RunSummary, Event | None]]:
        """:meth:`runs`, each with the run's last event of ``kind`` (None if it has none).

        One read transaction for the whole listing, so a caller that shows something of
        each run's last ``kind`` event pays one backward walk per run and nothing more.
        """
        return self._runs(check_kind(kind))

    def _runs(self, kind: str | None) -> list[tuple[RunSummary, Event | None]]:
        environment = self._live
        grouped: dict[bytes, list[int]] = {}
        with environment.read() as txn:
            for key, value in txn.cursor(db=environment.runs):
                if len(key) < 5 or len(value) != 8:
                    raise LedgerCorruptError(f"malformed runs index row {bytes(key).hex()}")
                grouped.setdefault(bytes(key[:-4]), []).append(int.from_bytes(value, "big"))
            rows = [
                _summarise(txn, environment, run_id, seqs, kind) for run_id, seqs in grouped.items()
            ]
        rows.sort(key=lambda row: row[0].first_seq)
        return rows

    @contextmanager
    def snapshot(self) -> Iterator[Snapshot]:
        """A consistent raw view for ``verify`` (holds one read transaction)."""
        environment = self._live
        with environment.read() as txn:
            yield Snapshot(environment, txn)

    @property
    def unlocked(self) -> str | None:
        """Why this handle reads without LMDB's lock (a read-only directory, no lock file),
        or None: a writer working at the same moment could change what it reads."""
        return self._live.unlocked

    def run_ids_with_prefix(self, prefix: bytes, odd_nibble: int | None = None) -> list[bytes]:
        """Recorded run ids starting with ``prefix`` (then, if given, one more hex digit).

        O(log n + matches) through ``runids`` when the ledger keeps it completely, else a
        scan of the ``runs`` index. A listed id is one some index names; callers read its
        events (which are checked) before trusting it exists.
        """
        environment = self._live
        with environment.read() as txn:
            if environment.runids is not None and _indexed(txn, environment):
                cursor = txn.cursor(db=environment.runids)
                found = cursor.set_range(prefix) if prefix else cursor.first()
                matches: list[bytes] = []
                while found:
                    key = bytes(cursor.key())
                    if not key.startswith(prefix):
                        break
                    if _nibble_ok(key, len(prefix), odd_nibble):
                        matches.append(key)
                    found = cursor.next()
                return matches
            ids = {bytes(k[:-4]) for k, _ in txn.cursor(db=environment.runs) if len(k) >= 5}
        return sorted(
            run_id
            for run_id in ids
            if run_id.startswith(prefix) and _nibble_ok(run_id, len(prefix), odd_nibble)
        )

    def latest_run_start(self) -> tuple[int, bytes] | None:
        """``(seq, run id)`` of the run whose first event is the newest, by ``runstart``;
        None when the ledger does not keep it (ask :meth:`runs`). Unchecked: a caller
        confirms it against the events (``bvisor.replay.anchored`` does)."""
        environment = self._live
        with environment.read() as txn:
            return _latest_run_start(txn, environment)

    def run_seqs(self, run_id: bytes) -> list[int]:
        """The seqs the ``runs`` index lists for ``run_id``, in order."""
        environment = self._live
        with environment.read() as txn:
            return _run_seqs(txn, environment, run_id)

    def raw(self, seq: int) -> bytes | None:
        """The stored bytes of event ``seq`` (undecoded; None when missing)."""
        _check_seq("seq", seq)
        environment = self._live
        with environment.read() as txn:
            value = txn.get(seq_key(seq), db=environment.events)
        return None if value is None else bytes(value)

    def raw_events(self, start: int = 0, stop: int | None = None) -> Iterator[tuple[int, bytes]]:
        """``(seq, stored bytes)`` in seq order, undecoded: for export and proofs, which
        must go on past (and show) a record that does not decode."""
        environment = self._live
        position = start
        while stop is None or position < stop:
            chunk: list[tuple[int, bytes]] = []
            with environment.read() as txn:
                cursor = txn.cursor(db=environment.events)
                found = cursor.set_range(seq_key(position))
                while found and len(chunk) < _CHUNK:
                    seq = _key_seq(environment, cursor.key())
                    if stop is not None and seq >= stop:
                        break
                    chunk.append((seq, bytes(cursor.value())))
                    found = cursor.next()
            if not chunk:
                return
            yield from chunk
            if chunk[-1][0] >= _LARGEST_KEY_SEQ:  # a stray key at the end: nothing follows
                return
            position = chunk[-1][0] + 1

    def checkpoints(self) -> list[SignedCheckpoint]:
        """Every checkpoint stored in the ledger, smallest tree first (signatures unchecked)."""
        from bvisor.ledger import notary

        with self.snapshot() as snap:
            return notary.stored(snap.txn, snap.environment)


def _refuse_stray_records(txn: Any, environment: Environment, events: int) -> None:
    problem = envmod.stray_records(txn, environment, events)
    if problem is not None:
        raise LedgerCorruptError(
            f"ledger {environment.path}: {problem}; refusing to append to a damaged ledger"
        )


def _indexed(txn: Any, environment: Environment) -> bool:
    """Whether the lookup tables cover the whole ledger (a tree kept from event 0 on, and
    no event since appended by a writer that did not keep them)."""
    size = stored_tree_size(txn, environment)
    return size is not None and size == int(txn.stat(environment.events)["entries"])


def _latest_run_start(txn: Any, environment: Environment) -> tuple[int, bytes] | None:
    if environment.runstart is None or not _indexed(txn, environment):
        return None
    cursor = txn.cursor(db=environment.runstart)
    if not cursor.last():
        return None
    key, value = bytes(cursor.key()), bytes(cursor.value())
    if len(key) != 8:
        return None
    return int.from_bytes(key, "big"), value


def _nibble_ok(value: bytes, at: int, nibble: int | None) -> bool:
    return nibble is None or (len(value) > at and value[at] >> 4 == nibble)


def _key_seq(environment: Environment, key: bytes) -> int:
    if len(key) != 8:
        raise LedgerCorruptError(f"ledger {environment.path}: malformed event key {key.hex()}")
    return int.from_bytes(key, "big")


def _decode(seq: int, raw: bytes) -> Event:
    """Strictly decode the record stored under ``seq``; corruption names the event."""
    try:
        decoded = decode_record(raw)
    except RecordError as exc:
        raise LedgerCorruptError(f"event {seq}: {exc.detail} (run verify)") from None
    if decoded.event.seq != seq:
        raise LedgerCorruptError(f"event {seq}: record says seq {decoded.event.seq} (run verify)")
    if not decoded.payload_ok:
        raise LedgerCorruptError(f"event {seq}: payload does not match its hash (run verify)")
    return decoded.event


def _next_run_index(txn: Any, environment: Environment, run_id: bytes) -> int:
    """One past the highest index row of ``run_id`` (0 for a new run)."""
    cursor = txn.cursor(db=environment.runs)
    ceiling = run_id + b"\xff\xff\xff\xff"
    if cursor.set_range(ceiling):
        if bytes(cursor.key()) == ceiling:
            return _INDEX_LIMIT
        found = cursor.prev()
    else:
        found = cursor.last()
    width = len(run_id) + 4
    while found:
        key = bytes(cursor.key())
        if not key.startswith(run_id):
            break
        if len(key) == width:  # longer keys belong to runs whose id extends this one
            return int.from_bytes(key[-4:], "big") + 1
        found = cursor.prev()
    return 0


def _run_seqs(txn: Any, environment: Environment, run_id: bytes) -> list[int]:
    cursor = txn.cursor(db=environment.runs)
    seqs: list[int] = []
    if not cursor.set_range(run_id):
        return seqs
    width = len(run_id) + 4
    for key, value in cursor:
        if not key.startswith(run_id):
            break
        if len(key) == width:
            seqs.append(int.from_bytes(value, "big"))
    return seqs


def _fetch(txn: Any, environment: Environment, seq: int) -> Event:
    raw = txn.get(seq_key(seq), db=environment.events)
    if raw is None:
        raise LedgerCorruptError(f"runs index lists missing event {seq} (run verify)")
    return _decode(seq, bytes(raw))


def _last_of(
    txn: Any, environment: Environment, seqs: list[int], kind: str, last: Event | None = None
) -> Event | None:
    """The last event of kind ``kind`` among ``seqs`` (one run's, in order), walking back;
    ``last``: the event of ``seqs[-1]`` when the caller has it already."""
    for seq in reversed(seqs):
        event = last if last is not None and seq == last.seq else _fetch(txn, environment, seq)
        if event.kind == kind:
            return event
    return None


def _summarise(
    txn: Any, environment: Environment, run_id: bytes, seqs: list[int], kind: str | None
) -> tuple[RunSummary, Event | None]:
    """Summarise a run from its first and last events; with ``kind``, also its last event
    of that kind (a walk back from the last event, which is read once)."""
    first = _fetch(txn, environment, seqs[0])
    last = first if len(seqs) == 1 else _fetch(txn, environment, seqs[-1])
    found = None if kind is None else _last_of(txn, environment, seqs, kind, last)
    summary = RunSummary(
        run_id=run_id,
        first_seq=first.seq,
        last_seq=last.seq,
        count=len(seqs),
        first_time_ns=first.time_ns,
        last_time_ns=last.time_ns,
        last_kind=last.kind,
    )
    return summary, found
