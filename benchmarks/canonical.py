"""Throughput of bvisor's canonical codec relative to plain cbor2 on the same values.

    python3 benchmarks/canonical.py [--json] [--repeat N]

The canonical encoder walks the value once to check it before cbor2 encodes it, and the
strict decoder is pure Python and re-encodes what it read to prove there was only one
encoding. That safety costs time; this script says how much, as ratios against
``cbor2.dumps``/``cbor2.loads`` measured in the same run on the same machine (absolute
numbers from different machines are not comparable, ratios roughly are). It asserts
nothing: it is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import cbor2

try:
    from bvisor import canonical
except ModuleNotFoundError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bvisor import canonical


def _ledger_event() -> dict[str, object]:
    return {
        "kind": "launch.started",
        "seq": 4242,
        "prev": bytes(range(32)),
        "attempt_id": bytes(16),
        "at_micros": 1_732_000_000_000_000,
        "body": {"pid": 31337, "cgroup": "/sys/fs/cgroup/bvisor/run-1", "ok": True},
    }


def _plan_like() -> dict[str, object]:
    lowering = [
        {
            "id": f"linux.primitive.{index}",
            "version": 1,
            "phase_code": index % 8,
            "param_digest": bytes([index]) * 32,
            "decl_digest": bytes([255 - index]) * 32,
        }
        for index in range(24)
    ]
    return {
        "schema": 1,
        "backend": "linux",
        "admitted": True,
        "budgets": {"wall_micros": 10_000_000, "process_count": 16, "resident_bytes": 2**28},
        "lowering": lowering,
        "requirements": [[f"req.{i}", {"enforcement": "Enforced", "n": -i}] for i in range(17)],
    }


CASES: dict[str, object] = {
    "ledger_event": _ledger_event(),
    "plan_like": _plan_like(),
    "int_list_1k": list(range(-500, 500)),
    "blob_64k": bytes(65536),
    "text_4k": "bvisor \u6c34 " * 400,
}


def _best_rate(action: Callable[[], object], repeat: int) -> float:
    """Operations per second: calibrate a batch of >= 20 ms, keep the best of ``repeat``."""
    batch = 1
    while True:
        started = time.perf_counter()
        for _ in range(batch):
            action()
        elapsed = time.perf_counter() - started
        if elapsed >= 0.02:
            break
        batch *= 2
    best = elapsed
    for _ in range(repeat - 1):
        started = time.perf_counter()
        for _ in range(batch):
            action()
        best = min(best, time.perf_counter() - started)
    return batch / best


def measure(repeat: int) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    for name, value in CASES.items():
        data = canonical.encode(value)
        assert data == cbor2.dumps(value, canonical=True)  # same bytes, so a fair comparison
        ours_encode = _best_rate(partial(canonical.encode, value), repeat)
        ref_encode = _best_rate(partial(cbor2.dumps, value, canonical=True), repeat)
        ours_decode = _best_rate(partial(canonical.decode, data), repeat)
        ref_decode = _best_rate(partial(cbor2.loads, data), repeat)
        results[name] = {
            "bytes": float(len(data)),
            "encode_ops_per_s": ours_encode,
            "cbor2_encode_ops_per_s": ref_encode,
            "encode_slowdown": ref_encode / ours_encode,
            "decode_ops_per_s": ours_decode,
            "cbor2_decode_ops_per_s": ref_decode,
            "decode_slowdown": ref_decode / ours_decode,
        }
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    parser.add_argument("--repeat", type=int, default=5, help="timed batches per case (best kept)")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat: must be at least 1")
    results = measure(args.repeat)
    if args.json:
        print(json.dumps(results, indent=2, sort_keys=True))
        return 0
    print("slowdown = cbor2 rate / bvisor.canonical rate (1.0 = as fast as plain cbor2)")
    print(
        f"{'case':<14}{'bytes':>8}{'encode ops/s':>15}{'slowdown':>10}"
        f"{'decode ops/s':>15}{'slowdown':>10}"
    )
    for name, row in results.items():
        print(
            f"{name:<14}{int(row['bytes']):>8}{row['encode_ops_per_s']:>15,.0f}"
            f"{row['encode_slowdown']:>9.1f}x{row['decode_ops_per_s']:>15,.0f}"
            f"{row['decode_slowdown']:>9.1f}x"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
