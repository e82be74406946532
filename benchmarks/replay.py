"""Replay throughput: runs audited per second over a large ledger, next to ``verify``.

Builds a ledger of ``--runs`` (default 10 000) recorded runs quickly: a few real runs are
recorded through ``bvisor.front.api.run_confined`` (a success, a failure, a refusal), then their
event groups are cloned under fresh attempt ids — with ``plan.admitted``'s attempt id and
the report body's attempt id rewritten and the report re-sealed, so every clone is a run
that verifies — and appended with ``append_many``. Then, on the same ledger and in the same
process, it times:

* ``bvisor.ledger.verify`` (what ``bvisor-ledger verify`` runs): events/s and runs/s — the
  reference, since it is the cheapest complete pass over the ledger;
* ``bvisor.replay.audit`` over every run: runs/s and events/s;

and prints each rate and the ratio replay/verify (the target: replay <= 3x verify's
time). Both also run once as commands (``bvisor-ledger verify``, ``bvisor-replay --json``)
for wall time including start-up.

``--one-run 1000,100000`` then builds ledgers of those many runs, signs a checkpoint, and
times what must cost O(that run + log n) given a trusted anchor — one run proven by the
checkpoint (``bvisor-replay RUN --pub``), ``--last`` proven by ``--expect-head``,
``bvisor-ledger log --run PREFIX`` — in process (best of a few) and as commands, printing
the ratio of the largest ledger's time to the smallest's (target: <= 1.5x).

Usage: ``python benchmarks/replay.py [--runs N] [--keep DIR] [--one-run SIZES]``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bvisor.contract import (  # noqa: E402
    BoundarySpec,
    BudgetRequirements,
    CaptureStreams,
    ChildSpawn,
    Environment,
    EnvPolicy,
    EvidenceRequirements,
    LaunchWorkload,
    MinGuarantee,
    ProcessWorkload,
    SpawnPolicy,
    StdStreams,
)
from bvisor.contract.events import OPENING_KINDS, REPORT_SEALED  # noqa: E402
from bvisor.contract.report import BoundaryReportBody  # noqa: E402
from bvisor.ledger import Ledger, verify  # noqa: E402

BATCH_RUNS = 200


def _spec(policy: SpawnPolicy, args: list[str]) -> BoundarySpec:
    return BoundarySpec(
        workload=ProcessWorkload(exe="/bin/sh", args=tuple(args)),
        capabilities=(ChildSpawn(policy=policy), Environment(policy=EnvPolicy.exact(()))),
        controls=(LaunchWorkload(), CaptureStreams(streams=StdStreams.capture_out_err())),
        budgets=BudgetRequirements.uniform(8, MinGuarantee.MEDIATED),
        evidence=EvidenceRequirements(),
    )


def _launcher() -> str:
    """The installed launcher, else a stub running this checkout's launcher."""
    beside = Path(sys.executable).parent / "bvisor-linux-launcher"
    if beside.is_file():
        return str(beside)
    found = shutil.which("bvisor-linux-launcher")
    if found:
        return found
    stub = Path(tempfile.mkdtemp(prefix="bvisor-bench-")) / "bvisor-linux-launcher"
    stub.write_text(
        f"#!{sys.executable} -I\nimport sys\nsys.path.insert(0, {str(REPO)!r})\n"
        "from launcher.process import main\nsys.exit(main())\n"
    )
    stub.chmod(0o755)
    return str(stub)


def record_seeds(ledger: Ledger) -> None:
    """A few real runs: a success, a failure (exit 3) and a refusal."""
    from bvisor.front.api import run_confined
    from bvisor.launcher.host.backend import LinuxBackend
    from bvisor.planner.errors import PlanRefusal

    backend = LinuxBackend.with_launcher_path(_launcher())
    deny = SpawnPolicy.DENY_NEW_TASKS
    run_confined(_spec(deny, ["-c", "echo hello"]), ledger=ledger, backend=backend)
    run_confined(_spec(deny, ["-c", "echo bye >&2; exit 3"]), ledger=ledger, backend=backend)
    with contextlib.suppress(PlanRefusal):
        run_confined(
            _spec(SpawnPolicy.ALLOW_THREADS_WITHIN_BOUNDARY, ["-c", "true"]),
            ledger=ledger,
            backend=backend,
        )


def _clone(group: list[tuple[str, Any]], attempt: bytes) -> list[tuple[str, Any, bytes]]:
    """One run's events under a new attempt id, re-sealed so the clone verifies."""
    out: list[tuple[str, Any, bytes]] = []
    for kind, payload in group:
        payload = copy.copy(payload)
        if kind in OPENING_KINDS:
            payload["attempt_id"] = attempt
        elif kind == REPORT_SEALED:
            body = dict(payload["body"])
            body["attempt_id"] = attempt
            payload["body"] = body
            payload["seal"] = BoundaryReportBody.from_value(body).seal()
        out.append((kind, payload, attempt))
    return out


def build(path: Path, runs: int) -> tuple[int, int]:
    """Fill ``path`` with ``runs`` runs; returns (runs, events)."""
    with Ledger.open(path, create=True, map_size=8 << 30) as ledger:
        record_seeds(ledger)
        groups = [[(e.kind, e.payload) for e in ledger.run_events(s.run_id)] for s in ledger.runs()]
        have = len(groups)
        pending: list[tuple[str, Any, bytes]] = []
        for index in range(runs - have):
            pending += _clone(groups[index % len(groups)], os.urandom(32))
            if (index + 1) % BATCH_RUNS == 0:
                ledger.append_many(pending)
                pending = []
        if pending:
            ledger.append_many(pending)
        head = ledger.head()
        return len(ledger.runs()), 0 if head is None else head.seq + 1


def _timed(label: str, func: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    result = func()
    elapsed = time.perf_counter() - started
    print(f"  {label}: {elapsed:.2f} s")
    return elapsed, result


def _command(args: list[str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(args, cwd=REPO, capture_output=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{args[2]} failed ({done.returncode}): {done.stderr.decode()[-500:]}")
    return elapsed


def _cpu(func: Any) -> float:
    """CPU seconds of one call (this machine is shared: wall time is mostly waiting)."""
    started = time.process_time()
    func()
    return time.process_time() - started


def _command_cpu(args: list[str]) -> float:
    """CPU seconds (user + system) a command took, start-up included."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(args, cwd=REPO, capture_output=True, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{args[2:4]} failed ({done.returncode}): {done.stderr.decode()[-500:]}")
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _audit_ok(ledger: Ledger, runs: list[bytes] | None, anchor: Any) -> None:
    from bvisor.replay.anchored import audit_anchored

    report = audit_anchored(ledger, runs, anchor)
    assert report.ok, report.to_json()


def _log_run(path: Path, run: bytes) -> None:
    import io
    from contextlib import redirect_stdout

    from bvisor.front.cli.ledger_cmd import main as ledger_main

    with redirect_stdout(io.StringIO()):
        assert ledger_main(["log", "--ledger", str(path), "--run", run.hex()[:12]]) == 0


def one_run(base: Path, sizes: list[int], rounds: int = 5) -> dict[str, dict[int, float]]:
    """The O(run + log n) rows (see module), at each ledger size: CPU time, the best of
    ``rounds`` rounds that visit every size in turn (so load falls on all of them alike).
    Returns the best seconds by row name and size (benchmarks/targets.py reads them)."""
    from bvisor.ledger.keys import write_keypair
    from bvisor.replay.anchored import CheckpointAnchor, HeadAnchor

    key = base / "keys" / "checkpoint.key"
    if not key.exists():
        write_keypair(key, "bench.example/ledger")
    from bvisor.ledger.keys import load_signer

    signer = load_signer(key)
    pub = key.with_suffix(".pub")
    cases: dict[int, dict[str, Any]] = {}
    for size in sizes:
        path = base / f"one-run-{size}"
        if not (path / "data.mdb").exists():
            print(f"building a ledger of {size} runs")
            _timed("build", lambda path=path, size=size: build(path, size))
            with Ledger.open(path) as writer:
                _timed("first checkpoint (checks every event)", partial(writer.checkpoint, signer))
        ledger = Ledger.open(path, readonly=True)
        signed = max(ledger.checkpoints(), key=lambda c: c.checkpoint.size)
        summaries = ledger.runs()
        # runs are the seeds' clones in turn: the same kind of run at every size
        index = len(summaries) // 2 - (len(summaries) // 2) % 3
        cases[size] = {
            "path": path,
            "ledger": ledger,
            "anchor": CheckpointAnchor(signed, "bench key", (signer.verifier,)),
            "head": ledger.head(),
            "run": summaries[index].run_id,
        }
    rows: dict[str, dict[int, float]] = {}

    def record(name: str, size: int, seconds: float) -> None:
        by_size = rows.setdefault(name, {})
        by_size[size] = min(seconds, by_size.get(size, seconds))

    py = sys.executable
    for _ in range(rounds):
        for size, case in cases.items():
            ledger, run, path = case["ledger"], case["run"], case["path"]
            record(
                "replay RUN (checkpoint)",
                size,
                _cpu(partial(_audit_ok, ledger, [run], case["anchor"])),
            )
            record(
                "replay --last (expect-head)",
                size,
                _cpu(partial(_audit_ok, ledger, None, HeadAnchor(case["head"]))),
            )
            record("log --run PREFIX", size, _cpu(partial(_log_run, path, run)))
            replay = [py, "-m", "bvisor.front.cli.replay_cmd", "--ledger", str(path)]
            record(
                "bvisor-replay RUN --pub (command)",
                size,
                _command_cpu([*replay, "--pub", str(pub), run.hex()[:12]]),
            )
            record(
                "bvisor-replay --last --expect-head (command)",
                size,
                _command_cpu([*replay, "--expect-head", str(case["head"]), "--last"]),
            )
    for case in cases.values():
        case["ledger"].close()
    small, large = min(sizes), max(sizes)
    print(f"\none run, O(run + log n), CPU time: {small} vs {large} runs (target: <= 1.5x)")
    print(f"{'':46}{small:>10}{large:>10}{'ratio':>8}")
    for name, by_size in rows.items():
        a, b = by_size[small], by_size[large]
        print(f"{name:46}{a * 1000:>8.1f}ms{b * 1000:>8.1f}ms{b / a:>8.2f}")
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--keep", metavar="DIR", help="build the ledger here and keep it")
    parser.add_argument(
        "--one-run", metavar="SIZES", help="comma list of run counts for the one-run rows"
    )
    parser.add_argument("--skip-all", action="store_true", help="only the one-run rows")
    args = parser.parse_args()
    if args.skip_all:
        base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bvisor-replay-"))
        try:
            one_run(base, [int(x) for x in (args.one_run or "1000,100000").split(",")])
        finally:
            if not args.keep:
                shutil.rmtree(base, ignore_errors=True)
        return 0
    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bvisor-replay-"))
    path = base / "ledger"
    try:
        if not (path / "data.mdb").exists():
            print(f"building a ledger of {args.runs} runs in {path}")
            _timed("build", lambda: build(path, args.runs))

        from bvisor import replay

        with Ledger.open(path, readonly=True) as ledger:
            runs = len(ledger.runs())
            print("measuring")
            t_verify, result = _timed("ledger verify", lambda: verify(ledger))
            assert result.ok, result.findings[:3]
            events = result.events
            t_audit, report = _timed("replay audit", lambda: replay.audit(ledger))
            assert report.ok, [r.to_json() for r in report.runs if not r.ok][:1]
        cmd_verify = _command(
            [sys.executable, "-m", "bvisor.front.cli.ledger_cmd", "verify", "--ledger", str(path)]
        )
        cmd_replay = _command(
            [sys.executable, "-m", "bvisor.front.cli.replay_cmd", "--ledger", str(path), "--json"]
        )
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    print(f"\nledger: {runs} runs, {events} events ({events / runs:.1f} events/run)")
    print(f"{'':24}{'runs/s':>12}{'events/s':>12}")
    print(f"{'ledger verify':24}{runs / t_verify:>12.0f}{events / t_verify:>12.0f}")
    print(f"{'replay audit':24}{runs / t_audit:>12.0f}{events / t_audit:>12.0f}")
    print(
        f"replay / verify throughput ratio: {t_verify / t_audit:.3f} (replay is "
        f"{t_audit / t_verify:.1f}x the time of verify, which it includes)"
    )
    print(
        f"commands (wall, incl. start-up): bvisor-ledger verify {cmd_verify:.2f} s, "
        f"bvisor-replay {cmd_replay:.2f} s, ratio {cmd_replay / cmd_verify:.1f}x"
    )
    if args.one_run:
        work = Path(tempfile.mkdtemp(prefix="bvisor-one-run-"))
        try:
            one_run(work, [int(x) for x in args.one_run.split(",")])
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
