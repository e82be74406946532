"""What listing and committing a run's outputs costs, as ratios in one process.

The workload (default boundary, not recorded) writes ``--files`` files of ``--size`` bytes
into its temp root, then exits. Measured side by side, medians of ``--runs``:

* ``plain``: the same run without any outputs control (the reference);
* ``list``: with ``ListOutputs`` (the walk: fstatat, openat2, SHA-256 and BLAKE3 of every
  file, one note each);
* ``commit``: with ``ListOutputs`` and ``CommitArtifact(best_effort)`` (the copy into the
  staging directory, the host's rename);
* ``synced``: the same with ``CommitArtifact(synced)`` (every file and directory fsync'd);
* ``hash-only``: in this process, SHA-256 and BLAKE3 of the same bytes from memory — the
  floor any listing pays.

Prints the medians and each ratio to ``plain``. Never asserts anything: numbers for notes.

Usage: python benchmarks/outputs.py [--runs N] [--files N] [--size BYTES] [--json]
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import blake3

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bvisor.contract import CommitArtifact, Durability, ListOutputs, Outcome
from bvisor.front.api import run_confined
from bvisor.front.defaults import default_spec


def _run(work: Path, artifacts: Path, script: str, controls: tuple[object, ...]) -> float:
    spec = default_spec(["/bin/sh", "-c", script], cwd=str(work))
    spec = dataclasses.replace(spec, controls=(*spec.controls, *controls))  # type: ignore[arg-type]
    started = time.perf_counter()
    report = run_confined(spec, ledger=False, artifacts=artifacts)
    elapsed = time.perf_counter() - started
    if report.body.outcome is not Outcome.COMPLETED:
        raise SystemExit(f"run failed: {report.body.outcome.value} {report.body.observed}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--files", type=int, default=500)
    parser.add_argument("--size", type=int, default=16 * 1024)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bvisor-bench-outputs-") as base:
        work, artifacts = Path(base) / "work", Path(base) / "artifacts"
        work.mkdir()
        blob = os.urandom(args.size)
        (work / "blob").write_bytes(blob)
        script = (
            f"i=0; while [ $i -lt {args.files} ]; do cp blob /tmp/f$i; i=$((i+1)); done"
            if args.files
            else "true"
        )
        variants: dict[str, tuple[object, ...]] = {
            "plain": (),
            "list": (ListOutputs(),),
            "commit": (ListOutputs(), CommitArtifact(Durability.BEST_EFFORT)),
            "synced": (ListOutputs(), CommitArtifact(Durability.SYNCED)),
        }
        times: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(args.runs):
            for name, controls in variants.items():  # interleaved: drift hits all alike
                times[name].append(_run(work, artifacts, script, controls))
        hashing = []
        for _ in range(args.runs):
            started = time.perf_counter()
            for _ in range(args.files):
                hashlib.sha256(blob).digest()
                blake3.blake3(blob).digest()
            hashing.append(time.perf_counter() - started)
    medians = {name: statistics.median(values) for name, values in times.items()}
    medians["hash-only"] = statistics.median(hashing)
    result = {
        "files": args.files,
        "size": args.size,
        "runs": args.runs,
        "median_s": medians,
        "ratio_to_plain": {name: value / medians["plain"] for name, value in medians.items()},
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{args.files} files x {args.size} bytes, {args.runs} runs each (median)")
    for name, value in medians.items():
        print(f"  {name:10s} {value * 1000:9.1f} ms   x{value / medians['plain']:.2f} of plain")


if __name__ == "__main__":
    main()
