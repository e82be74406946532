"""Helpers for ledger tests: build small ledgers, and tamper with them through raw LMDB.

Tampering deliberately bypasses ``ledger``: the tests open the LMDB files directly, as an
attacker with write access to the directory would, so what ``verify`` reports is measured
against changes the product itself never made. LMDB allows one environment per process
per directory, so every helper here requires that no ``Ledger`` handle is open on it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lmdb

from bvisor.ledger import Ledger, Receipt
from bvisor.ledger.record import build_record, decode_record, encode_payload

REPO = Path(__file__).resolve().parents[2]
RUN_A = bytes.fromhex("aa" * 16)
RUN_B = bytes.fromhex("bb" * 16)


def build(path: Path, count: int = 10) -> list[Receipt]:
    """A ledger of ``count`` events: even seqs belong to RUN_A, every third to RUN_B."""
    items: list[tuple[str, object, bytes | None]] = []
    for seq in range(count):
        run = RUN_A if seq % 2 == 0 else (RUN_B if seq % 3 == 0 else None)
        items.append((f"note.e{seq}", {"n": seq, "blob": b"abcdefgh"}, run))
    with Ledger.open(path, create=True) as ledger:
        return ledger.append_many(items)


@contextmanager
def raw(path: Path) -> Iterator[tuple[Any, dict[str, Any]]]:
    """A write transaction on the ledger's LMDB files, and its three named databases."""
    env = lmdb.open(str(path), max_dbs=4, subdir=True, create=False)
    try:
        dbs = {
            name: env.open_db(name.encode(), create=False) for name in ("events", "runs", "meta")
        }
        with env.begin(write=True) as txn:
            yield txn, dbs
    finally:
        env.close()


def key(seq: int) -> bytes:
    return seq.to_bytes(8, "big")


def get_record(path: Path, seq: int) -> bytes:
    with raw(path) as (txn, dbs):
        value = txn.get(key(seq), db=dbs["events"])
        assert value is not None
        return bytes(value)


def put_record(path: Path, seq: int, record: bytes) -> None:
    with raw(path) as (txn, dbs):
        txn.put(key(seq), record, db=dbs["events"])


def rewrite(path: Path, seq: int, payload: object) -> bytes:
    """Replace event ``seq``'s payload and recompute its payload hash (a careful forger)."""
    event = decode_record(get_record(path, seq)).event
    built = build_record(
        seq, event.prev_hash, event.time_ns, event.kind, event.run_id, encode_payload(payload)
    )
    put_record(path, seq, built.raw)
    return built.hash


def run_appender(path: Path, *args: str) -> subprocess.Popen[bytes]:
    """Start ``ledger_appender.py`` in a fresh interpreter (never a fork of this one)."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("ledger_appender.py")), str(path), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
        cwd=REPO,
    )
