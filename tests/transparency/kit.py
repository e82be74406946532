"""Helpers for the transparency tests: keys, CLI calls, and an attacker without the key.

The attacker (``rewrite_from``, ``drop_tail``) has write access to the ledger directory
and edits it through raw LMDB, as carefully as one can without the signing key: it
re-encodes the records it changes, recomputes every later event's hash and ``prev_hash``,
the meta head, the runs index, and every node of the stored Merkle tree — so ``verify``
alone finds the chain and the tree consistent. Only a checkpoint signed by the key (kept
elsewhere) can tell.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lmdb
import pytest

from bvisor.ledger.keys import write_keypair
from bvisor.ledger.merkle import MemoryTree, leaf_hash
from bvisor.ledger.note import Signer
from bvisor.ledger.record import Event, build_record, decode_record, encode_payload

REPO = Path(__file__).resolve().parents[2]
PRE_TREE = REPO / "tests" / "vectors" / "ledger" / "pre-tree" / "data.mdb"
DBS = ("events", "runs", "meta", "tree", "runids", "runstart", "checkpoints")


def keypair(directory: Path, name: str = "test.example/ledger") -> tuple[Signer, Path, Path]:
    """A fresh signing key in ``directory`` (``checkpoint.key`` / ``checkpoint.pub``)."""
    signer, pub = write_keypair(directory / "checkpoint.key", name)
    return signer, directory / "checkpoint.key", pub


def old_ledger(target: Path) -> Path:
    """A copy of the frozen ledger written before the tree existed."""
    target.mkdir(parents=True)
    shutil.copy(PRE_TREE, target / "data.mdb")
    return target


def call(
    capsys: pytest.CaptureFixture[str], main: Callable[[list[str]], int], *args: str
) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def call_json(
    capsys: pytest.CaptureFixture[str], main: Callable[[list[str]], int], *args: str
) -> tuple[int, Any]:
    code, out, _err = call(capsys, main, *args, "--json")
    return code, json.loads(out)


@contextmanager
def raw(path: Path) -> Iterator[tuple[Any, dict[str, Any]]]:
    """A write transaction on the ledger's LMDB files and every database it holds."""
    env = lmdb.open(str(path), max_dbs=8, subdir=True, create=False)
    try:
        with env.begin(write=True) as txn:
            present = {bytes(k) for k in txn.cursor().iternext(values=False)}
        dbs = {n: env.open_db(n.encode(), create=False) for n in DBS if n.encode() in present}
        with env.begin(write=True) as txn:
            yield txn, dbs
    finally:
        env.close()


def events_of(txn: Any, dbs: dict[str, Any]) -> list[Event]:
    return [decode_record(bytes(v)).event for _k, v in txn.cursor(db=dbs["events"])]


def _store_tree(txn: Any, dbs: dict[str, Any], records: Sequence[bytes]) -> None:
    """Replace the stored tree with the one over ``records`` (every perfect subtree)."""
    if "tree" not in dbs:
        return
    txn.drop(dbs["tree"], delete=False)
    tree = MemoryTree([leaf_hash(r) for r in records])
    for level in range(1, len(tree.levels)):
        for index, value in enumerate(tree.levels[level]):
            txn.put(bytes((level,)) + index.to_bytes(8, "big"), value, db=dbs["tree"])
    txn.put(b"tree_size", len(records).to_bytes(8, "big"), db=dbs["meta"])


def rewrite_from(path: Path, edit: Callable[[Event], object | None]) -> list[int]:
    """Give every event for which ``edit`` returns a payload that payload, re-chain the
    ledger from the first one changed, and rebuild the head and the tree; the changed seqs."""
    changed: list[int] = []
    with raw(path) as (txn, dbs):
        events = events_of(txn, dbs)
        records = [e.raw for e in events]
        prev: bytes | None = None
        for event in events:
            payload = edit(event)
            if payload is None and prev is None:
                continue
            if payload is not None:
                changed.append(event.seq)
            built = build_record(
                event.seq,
                event.prev_hash if prev is None else prev,
                event.time_ns,
                event.kind,
                event.run_id,
                encode_payload(event.payload if payload is None else payload),
            )
            txn.put(event.seq.to_bytes(8, "big"), built.raw, db=dbs["events"])
            records[event.seq] = built.raw
            prev = built.hash
        if prev is not None:
            txn.put(b"head_hash", prev, db=dbs["meta"])
        _store_tree(txn, dbs, records)
    return changed


def drop_tail(path: Path, keep: int) -> None:
    """Delete events ``keep``.. and everything that names them (rows, lookups, checkpoints)."""
    with raw(path) as (txn, dbs):
        events = events_of(txn, dbs)
        for event in events[keep:]:
            txn.delete(event.seq.to_bytes(8, "big"), db=dbs["events"])
        for key, value in list(txn.cursor(db=dbs["runs"])):
            if int.from_bytes(value, "big") >= keep:
                txn.delete(bytes(key), db=dbs["runs"])
        for name in ("runids",):
            if name in dbs:
                for key, value in list(txn.cursor(db=dbs[name])):
                    if int.from_bytes(value, "big") >= keep:
                        txn.delete(bytes(key), db=dbs[name])
        if "runstart" in dbs:
            for key, _value in list(txn.cursor(db=dbs["runstart"])):
                if int.from_bytes(key, "big") >= keep:
                    txn.delete(bytes(key), db=dbs["runstart"])
        if "checkpoints" in dbs:
            for key, _value in list(txn.cursor(db=dbs["checkpoints"])):
                if int.from_bytes(bytes(key)[:8], "big") > keep:
                    txn.delete(bytes(key), db=dbs["checkpoints"])
        txn.put(b"head_seq", (keep - 1).to_bytes(8, "big"), db=dbs["meta"])
        txn.put(b"head_hash", events[keep - 1].hash, db=dbs["meta"])
        _store_tree(txn, dbs, [e.raw for e in events[:keep]])
