"""Ledger throughput, side by side with raw LMDB puts of the same bytes (the ceiling).

Every row runs the ledger and the reference in the same process on the same disk, and
prints the ratio ledger/raw, so the numbers mean something on any machine:

* durable single appends/s  — ``Ledger.append`` vs one synchronous LMDB txn per put;
* ``append_many`` at 100 and 1000 events per call vs one txn of 100/1000 raw puts;
* building a ledger of ``--events`` events (batches of 10 000) vs raw puts of its records;
* ``verify`` events/s over that ledger vs a raw cursor read of the same records;
* ``verify`` of that ledger once it holds a signed checkpoint (the Merkle tree is then
  recomputed from the records and checked against it) vs the same plain ``verify``;
* an inclusion proof (plus its check) at 1 000 events vs at ``--events`` events: O(log n),
  so the ratio stays near 1.

The raw side stores exactly the record bytes the ledger produced, so the ratio is the
price of what the ledger adds: canonical encoding, two BLAKE3 digests per event, the runs
index and head rows, and (for verify) strict decoding and re-derivation of everything.

    python3 benchmarks/ledger.py                 # 1 000 000 events (a few minutes)
    python3 benchmarks/ledger.py --events 50000  # quick
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import lmdb

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bvisor.contract.events import LAUNCHER_PHASE
from bvisor.ledger import Ledger, verify

RUN = bytes.fromhex("5a" * 16)
BUILD_BATCH = 10_000


def payload(index: int) -> dict[str, object]:
    """A launcher.phase-like payload of about 100 bytes."""
    return {"state": "ChildCreated", "index": index, "detail": "pid=4242 cgroup=run-5a5a5a"}


def items(count: int, offset: int = 0) -> list[tuple[str, object, bytes | None]]:
    return [(LAUNCHER_PHASE, payload(offset + i), RUN) for i in range(count)]


def raw_env(path: Path) -> lmdb.Environment:
    return lmdb.open(str(path), map_size=1 << 36, max_dbs=4, sync=True, metasync=True)


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def records(ledger: Ledger, start: int, stop: int) -> list[tuple[bytes, bytes]]:
    return [(event.seq.to_bytes(8, "big"), event.raw) for event in ledger.events(start, stop)]


class Table:
    def __init__(self) -> None:
        self.rows: list[tuple[str, float, float]] = []

    def add(self, name: str, ledger_rate: float, raw_rate: float) -> None:
        self.rows.append((name, ledger_rate, raw_rate))
        print(f"  {name}: ledger {ledger_rate:,.0f}/s, raw {raw_rate:,.0f}/s", file=sys.stderr)

    def print(self) -> None:
        print(f"{'measure':<40}{'ledger/s':>14}{'reference/s':>14}{'ratio':>10}")
        for name, ledger_rate, raw_rate in self.rows:
            print(
                f"{name:<40}{ledger_rate:>14,.0f}{raw_rate:>14,.0f}{ledger_rate / raw_rate:>10.3f}"
            )
        print("reference: raw LMDB, except 'with a checkpoint' (plain verify of the same ledger)")
        print("and 'inclusion proof' (the same proof in a ledger of 1,000 events)")


def bench_single(work: Path, table: Table, count: int) -> None:
    with Ledger.open(work / "single", create=True) as ledger:
        elapsed = timed(lambda: [ledger.append(k, p, r) for k, p, r in items(count)])
        stored = records(ledger, 0, count)
    env = raw_env(work / "single-raw")
    db = env.open_db(b"events")

    def raw() -> None:
        for key, value in stored:
            with env.begin(write=True) as txn:
                txn.put(key, value, db=db)

    raw_elapsed = timed(raw)
    env.close()
    table.add("durable single append", count / elapsed, count / raw_elapsed)


def bench_many(work: Path, table: Table, size: int, calls: int) -> None:
    name = f"many-{size}"
    with Ledger.open(work / name, create=True) as ledger:
        batches = [items(size, offset=c * size) for c in range(calls)]
        elapsed = timed(lambda: [ledger.append_many(batch) for batch in batches])
        stored = records(ledger, 0, size * calls)
    env = raw_env(work / f"{name}-raw")
    db = env.open_db(b"events")

    def raw() -> None:
        for c in range(calls):
            with env.begin(write=True) as txn:
                for key, value in stored[c * size : (c + 1) * size]:
                    txn.put(key, value, db=db, append=True)

    raw_elapsed = timed(raw)
    env.close()
    table.add(f"append_many({size}) events", size * calls / elapsed, size * calls / raw_elapsed)


def bench_big(work: Path, table: Table, total: int) -> None:
    path = work / "big"
    with Ledger.open(path, create=True) as ledger:
        start = time.perf_counter()
        done = 0
        while done < total:
            size = min(BUILD_BATCH, total - done)
            ledger.append_many(items(size, offset=done))
            done += size
            print(f"\r  building: {done:,}/{total:,}", end="", file=sys.stderr)
        build_elapsed = time.perf_counter() - start
        print(file=sys.stderr)
    env = lmdb.open(str(path), readonly=True, max_dbs=4)
    events_db = env.open_db(b"events", create=False)
    with env.begin() as txn:
        stored = list(txn.cursor(db=events_db))
    env.close()
    raw = raw_env(work / "big-raw")
    raw_db = raw.open_db(b"events")

    def raw_build() -> None:
        for offset in range(0, len(stored), BUILD_BATCH):
            with raw.begin(write=True) as txn:
                for key, value in stored[offset : offset + BUILD_BATCH]:
                    txn.put(key, value, db=raw_db, append=True)

    raw_build_elapsed = timed(raw_build)
    stored.clear()
    table.add(
        f"build {total:,} (batches of {BUILD_BATCH:,})",
        total / build_elapsed,
        total / raw_build_elapsed,
    )

    result_box: list[object] = []
    verify_elapsed = timed(lambda: result_box.append(verify(path)))
    result = result_box[0]
    assert getattr(result, "ok", False) and getattr(result, "events", 0) == total, result

    def raw_read() -> None:
        count = 0
        with raw.begin() as txn:
            for _key, value in txn.cursor(db=raw_db):
                count += len(value) > 0
        assert count == total

    raw_read_elapsed = timed(raw_read)
    raw.close()
    table.add(f"verify {total:,} events", total / verify_elapsed, total / raw_read_elapsed)
    bench_checkpointed(work, table, path, total, verify_elapsed)


def _proof_time(path: Path) -> float:
    """Best time of one inclusion proof of the middle event, checked against the root."""
    from bvisor.ledger.proofs import ProofSource

    with Ledger.open(path, readonly=True) as ledger, ledger.snapshot() as snap:
        source = ProofSource(snap)
        size = source.events
        root = source.root(size)
        best = min(timed(lambda: source.inclusion(size // 2, size, root)) for _ in range(200))
    return best


def bench_checkpointed(
    work: Path, table: Table, path: Path, total: int, plain_elapsed: float
) -> None:
    from bvisor.ledger.keys import write_keypair

    signer, _pub = write_keypair(work / "keys" / "checkpoint.key", "bench.example/ledger")
    with Ledger.open(path) as ledger:
        sign_elapsed = timed(lambda: ledger.checkpoint(signer))
    print(
        f"  first checkpoint of {total:,} events (checks each): {sign_elapsed:.2f} s",
        file=sys.stderr,
    )
    result_box: list[object] = []
    elapsed = timed(lambda: result_box.append(verify(path)))
    assert getattr(result_box[0], "ok", False), result_box[0]
    table.add(f"verify {total:,} with a checkpoint", total / elapsed, total / plain_elapsed)
    small = work / "small"
    with Ledger.open(small, create=True) as ledger:
        ledger.append_many(items(1000))
    table.add(
        f"inclusion proof at {total:,} (vs 1,000)", 1 / _proof_time(path), 1 / _proof_time(small)
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="events in the big ledger")
    parser.add_argument("--single", type=int, default=300, help="durable single appends")
    parser.add_argument("--dir", help="work directory (default: a fresh temporary one)")
    args = parser.parse_args()
    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="bvisor-ledger-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    table = Table()
    try:
        bench_single(work, table, args.single)
        bench_many(work, table, 100, 50)
        bench_many(work, table, 1000, 10)
        bench_big(work, table, args.events)
    finally:
        if not args.dir:
            shutil.rmtree(work, ignore_errors=True)
    print(f"ledger benchmark ({os.uname().sysname} {os.uname().release}, {args.events:,} events)")
    table.print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
