"""Throughput of bvisor's canonical codec relative to plain cbor2 on the same values.

    python3 benchmarks/canonical.py [--json] [--repeat N] [--records N]

The canonical encoder walks the value once to check it before cbor2 encodes it; the strict
decoder first proves the bytes canonical (natively, or with the pure-Python reference
parser, which also re-encodes what it read) and then lets cbor2 build the value. That
safety costs time; this script says how much, as ratios against ``cbor2.dumps`` /
``cbor2.loads`` measured in the same run on the same machine (absolute numbers from
different machines are not comparable, ratios roughly are).

Per value: encode; strict decode with the native validator, with the pure-Python
reference, and plain ``cbor2.loads``; validate only (native, no value built).

Ledger-shaped: ``--records`` synthetic records built by the ledger's own ``build_record``
(the 8-item array header + payload, payloads of about 100..1000 bytes). The reference loop
computes two BLAKE3 digests per record over its raw bytes at a fixed split (the same bytes
and calls, no parsing); the strict loop proves the record canonical, slices the header and
payload by the item spans and computes the event and payload digests over those slices —
what ``verify`` needs per event, with the strict canonical check kept. A third loop also
builds the header's values (cbor2 over the proven header slice). It asserts nothing: it is
a measurement, not a test.
"""

from __future__ import annotations

import argparse
import json
import random
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

from bvisor.contract.events import LAUNCHER_PHASE
from bvisor.digest import Purpose, digest_bytes
from bvisor.ledger.record import build_record, encode_payload


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
        python_decode = _best_rate(partial(canonical.reference_decode, data), repeat)
        ref_decode = _best_rate(partial(cbor2.loads, data), repeat)
        validate = _best_rate(partial(canonical.validate, data), repeat)
        results[name] = {
            "bytes": float(len(data)),
            "encode_ops_per_s": ours_encode,
            "cbor2_encode_ops_per_s": ref_encode,
            "encode_slowdown": ref_encode / ours_encode,
            "decode_ops_per_s": ours_decode,
            "python_decode_ops_per_s": python_decode,
            "cbor2_decode_ops_per_s": ref_decode,
            "decode_slowdown": ref_decode / ours_decode,
            "python_decode_slowdown": ref_decode / python_decode,
            "validate_ops_per_s": validate,
            "validate_slowdown": ref_decode / validate,
        }
    return results


# --- ledger-shaped records ---------------------------------------------------------------

_PAYLOAD_PREFIX = b"\x82" + canonical.encode("payload")  # as ledger/record.py defines it
_RAW_SPLIT = 128  # the reference's fixed split: about where a record's header ends


def _synthetic_payload(rng: random.Random, index: int) -> dict[str, object]:
    """A payload of roughly 100..1000 encoded bytes: text, ints, bytes, a nested list."""
    words = rng.randint(4, 140)
    return {
        "detail": " ".join(
            rng.choice(("pid", "cgroup", "run", "ok", "fd", "mount")) for _ in range(words)
        ),
        "digest": rng.randbytes(32),
        "index": index,
        "limits": [rng.randint(0, 2**40) for _ in range(rng.randint(1, 12))],
        "ok": rng.random() < 0.5,
        "state": rng.choice(("ChildCreated", "Exec", "Exited")),
    }


def ledger_records(count: int) -> list[bytes]:
    """``count`` records exactly as the ledger writes them, chained, with a run id."""
    rng = random.Random(4242)
    prev, run = bytes(32), bytes(range(16))
    out: list[bytes] = []
    for seq in range(count):
        encoded = encode_payload(_synthetic_payload(rng, seq))
        built = build_record(
            seq, prev, 1_732_000_000_000_000_000 + seq, LAUNCHER_PHASE, run, encoded
        )
        out.append(built.raw)
        prev = built.hash
    return out


def _raw_digests(records: list[bytes]) -> None:
    event = Purpose.LEDGER_EVENT
    for raw in records:
        digest_bytes(event, raw[:_RAW_SPLIT])
        digest_bytes(event, raw[_RAW_SPLIT:])


def _strict_digests(records: list[bytes]) -> None:
    event = Purpose.LEDGER_EVENT
    for raw in records:
        spans = canonical.array_spans(raw, max_items=8)
        assert spans is not None and len(spans) == 8
        payload_at = spans[7][0]
        digest_bytes(event, b"\x87" + raw[1:payload_at])  # the 7-item header: the event hash
        digest_bytes(event, _PAYLOAD_PREFIX + raw[payload_at:])  # the payload hash


def _strict_digests_fields(records: list[bytes]) -> None:
    event = Purpose.LEDGER_EVENT
    for raw in records:
        spans = canonical.array_spans(raw, max_items=8)
        assert spans is not None and len(spans) == 8
        payload_at = spans[7][0]
        header = b"\x87" + raw[1:payload_at]
        cbor2.loads(header)  # proven canonical above (a prefix of a canonical array's items)
        digest_bytes(event, header)
        digest_bytes(event, _PAYLOAD_PREFIX + raw[payload_at:])


def measure_ledger(count: int, repeat: int) -> dict[str, float]:
    records = ledger_records(count)
    sizes = sorted(len(raw) for raw in records)
    loops = {"raw": _raw_digests, "strict": _strict_digests, "fields": _strict_digests_fields}
    # Interleaved rounds, best of each: a machine whose load changes during the run slows
    # every loop alike instead of whichever happened to run at the bad moment.
    best = dict.fromkeys(loops, float("inf"))
    for _ in range(max(repeat, 5)):
        for name, loop in loops.items():
            best[name] = min(best[name], _timed(partial(loop, records)))
    raw, strict, fields = (count / best[name] for name in loops)
    return {
        "records": float(count),
        "record_bytes_min": float(sizes[0]),
        "record_bytes_median": float(sizes[len(sizes) // 2]),
        "record_bytes_max": float(sizes[-1]),
        "raw_two_digests_per_s": raw,
        "strict_two_digests_per_s": strict,
        "strict_over_raw": strict / raw,
        "strict_fields_two_digests_per_s": fields,
        "strict_fields_over_raw": fields / raw,
    }


def _timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    parser.add_argument("--repeat", type=int, default=5, help="timed batches per case (best kept)")
    parser.add_argument("--records", type=int, default=20_000, help="ledger-shaped records")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat: must be at least 1")
    if args.records < 1:
        parser.error("--records: must be at least 1")
    results = measure(args.repeat)
    ledger = measure_ledger(args.records, args.repeat)
    if args.json:
        payload = {"backend": canonical.backend(), "values": results, "ledger_shaped": ledger}
        print(json.dumps(payload, indent=2, sort_keys=True))
        return 0
    print(f"strict decoding backend: {canonical.backend()}")
    print("slowdown = cbor2 rate / bvisor.canonical rate (1.0 = as fast as plain cbor2)")
    print(
        f"{'case':<14}{'bytes':>7}{'encode/s':>11}{'slow':>6}"
        f"{'cbor2 load/s':>14}{'native/s':>11}{'slow':>6}{'python/s':>10}{'slow':>7}"
        f"{'validate/s':>12}{'slow':>6}"
    )
    for name, row in results.items():
        print(
            f"{name:<14}{int(row['bytes']):>7}{row['encode_ops_per_s']:>11,.0f}"
            f"{row['encode_slowdown']:>5.1f}x{row['cbor2_decode_ops_per_s']:>14,.0f}"
            f"{row['decode_ops_per_s']:>11,.0f}{row['decode_slowdown']:>5.1f}x"
            f"{row['python_decode_ops_per_s']:>10,.0f}{row['python_decode_slowdown']:>6.1f}x"
            f"{row['validate_ops_per_s']:>12,.0f}{row['validate_slowdown']:>5.1f}x"
        )
    print(
        f"ledger-shaped: {int(ledger['records']):,} records of "
        f"{int(ledger['record_bytes_min'])}..{int(ledger['record_bytes_max'])} bytes "
        f"(median {int(ledger['record_bytes_median'])})"
    )
    print(f"  raw: two BLAKE3 digests           {ledger['raw_two_digests_per_s']:>12,.0f}/s")
    print(
        f"  validate + slice + two digests    {ledger['strict_two_digests_per_s']:>12,.0f}/s"
        f"   ratio {ledger['strict_over_raw']:.2f}x of raw"
    )
    print(
        f"  ... + header values built         {ledger['strict_fields_two_digests_per_s']:>12,.0f}/s"
        f"   ratio {ledger['strict_fields_over_raw']:.2f}x of raw"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
