"""Every target of issue 10, each with its reference measured in the same run, in one table.

Rows (each prints its figure, the reference's, the ratio, the target and PASS/MISS):

a. ``run_confined`` of the default spec (full boundary, durable ledger) running
   ``/bin/true``, against bubblewrap running ``/bin/true``, alternating in one loop; the
   target is a median of at most 1.0x. The bubblewrap command is the issue's
   ``bwrap --unshare-all --die-with-parent --dev /dev --proc /proc`` with ``--ro-bind / /``
   added: without a root bind bubblewrap's new root is an empty tmpfs and it cannot exec
   ``/bin/true`` at all (it fails on this host), so the bind is what makes the reference
   run the same program. Two reference rows say how much of the gap is the durability a
   run must have, measured in the same loop on the ledger's filesystem: a run's two
   durable LMDB commits without bvisor (two transactions of one record each, of the bytes
   a default run's commits hold, in an environment opened as the ledger opens its store:
   ``sync``, ``metasync``; the first is written while the launcher verifies, so on a disk
   that keeps up only the second adds to a run's time), and the raw floor of this disk,
   a 4 KiB ``pwrite`` and ``fdatasync``.
b. ``bvisor run -- /bin/true`` as a command, through ``bvisor serve`` (started on demand,
   in a private runtime directory of this script so no other service is used) and with
   ``BVISOR_SERVE=0``, against the same bubblewrap command, alternating in one loop; target
   at most 3x. ``python -I -S -c pass`` is printed as the interpreter's floor (a command
   written in Python can never be faster than that).
c. Throughput, runs per second with 2 and 8 runs in flight: threads through the API
   (``run_confined``), and parallel ``bvisor run`` processes (served), against bubblewrap
   run the same way (threads each starting bwrap). No target is set for it: printed as a
   ratio of rates (bvisor/bwrap).
d. ``verify`` (what ``bvisor-ledger verify`` runs) against a reference loop over the same
   ledger that reads every raw LMDB record and computes two BLAKE3 digests over it (its
   bytes split in two, so every byte is hashed once, as verify hashes header and payload);
   CPU time, best of 3 interleaved; target speed at least 0.5x.
e. ``bvisor-replay`` of every run (``replay.audit``) against ``verify`` of the same ledger;
   CPU time, best of 3 interleaved; target at most 3x verify's time.
f. One run given a trusted anchor at a small and a large ledger (benchmarks/replay.py's
   ``one_run``): target the large ledger's time at most 1.5x the small one's.
g. Peak RSS (``ru_maxrss``) of the ``bvisor run -- /bin/true`` process, with
   ``BVISOR_SERVE=0`` (the whole host side; recorded, and ``--no-record`` as the 27 MiB
   was measured) and served (the command's own process); target no higher than the 27 MiB
   measured before issue 10. ``python -I -S -c pass`` is the floor.

Wall times are medians; this machine is shared, so run it several times and quote ranges.
Never asserts anything: the numbers are for notes.

Usage: python benchmarks/targets.py [--quick] [--rows abcdefg] [--runs N] [--json]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

BWRAP_ARGS = [
    "--unshare-all",
    "--die-with-parent",
    "--ro-bind",
    "/",
    "/",
    "--dev",
    "/dev",
    "--proc",
    "/proc",
]
RSS_BEFORE_MIB = 27.0  # `bvisor run -- /bin/true`, not recorded, before issue 10
PY_FLOOR = [sys.executable, "-I", "-S", "-c", "pass"]


class Table:
    """Rows of (id, what, value, reference, ratio, target text, verdict)."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def add(
        self,
        row: str,
        what: str,
        value: str,
        reference: str,
        ratio: float | None,
        target: str = "",
        passed: bool | None = None,
    ) -> None:
        verdict = "" if passed is None else ("PASS" if passed else "MISS")
        entry = {
            "row": row,
            "what": what,
            "value": value,
            "reference": reference,
            "ratio": None if ratio is None else round(ratio, 3),
            "target": target,
            "verdict": verdict,
        }
        self.rows.append(entry)
        shown = "" if ratio is None else f"{ratio:.2f}x"
        print(f"  [{row}] {what}: {value} vs {reference} {shown} {verdict}", file=sys.stderr)

    def print(self) -> None:
        print(
            f"{'':2} {'what':52} {'value':>16} {'reference':>24} {'ratio':>7} {'target':>8} {'':4}"
        )
        for r in self.rows:
            ratio = "" if r["ratio"] is None else f"{r['ratio']:.2f}x"
            print(
                f"{r['row']:2} {r['what']:52} {r['value']:>16} {r['reference']:>24} "
                f"{ratio:>7} {r['target']:>8} {r['verdict']:4}"
            )


# -- helpers -------------------------------------------------------------------------


def ensure_bwrap() -> str:
    found = shutil.which("bwrap")
    if found is None and os.geteuid() == 0:
        subprocess.run(["apt-get", "install", "-y", "-qq", "bubblewrap"], capture_output=True)
        found = shutil.which("bwrap")
    if found is None:
        raise SystemExit("bubblewrap is missing: apt-get install -y bubblewrap")
    return found


def bvisor_command() -> list[str]:
    """The installed ``bvisor`` script (what a user types), else the module."""
    beside = Path(sys.executable).parent / "bvisor"
    return [str(beside)] if beside.is_file() else [sys.executable, "-m", "bvisor.front.cli.main"]


def run_quiet(args: list[str], env: dict[str, str] | None = None, cwd: str | None = None) -> None:
    done = subprocess.run(
        args,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        cwd=cwd,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"{args[:4]} failed ({done.returncode}): {done.stderr.decode()[-400:]}")


def interleaved(cases: dict[str, Callable[[], None]], runs: int) -> dict[str, list[float]]:
    """Each case once per round, in turn (the order rotating), after one warm-up each."""
    for once in cases.values():
        once()
    samples: dict[str, list[float]] = {name: [] for name in cases}
    names = list(cases)
    for index in range(runs):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            started = time.perf_counter()
            cases[name]()
            samples[name].append(time.perf_counter() - started)
    return samples


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def cpu(func: Callable[[], object]) -> float:
    started = time.process_time()
    func()
    return time.process_time() - started


# -- the context every row shares ----------------------------------------------------


class Context:
    def __init__(self, scratch: Path, bwrap: str) -> None:
        self.scratch = scratch
        self.bwrap = bwrap
        self.work = scratch / "work"  # the run's root; the ledger lies outside it
        self.work.mkdir()
        self.ledger = scratch / "ledger"
        runtime = scratch / "runtime"  # this script's own service, nobody else's
        runtime.mkdir(mode=0o700)
        self.env = {
            **os.environ,
            "BVISOR_LEDGER": str(self.ledger),
            "XDG_RUNTIME_DIR": str(runtime),
        }
        self.env.pop("BVISOR_SERVE", None)
        self.unserved_env = {**self.env, "BVISOR_SERVE": "0"}
        self.bvisor = bvisor_command()

    def bwrap_true(self) -> None:
        subprocess.run([self.bwrap, *BWRAP_ARGS, "/bin/true"], check=True)

    def cli_true(self, env: dict[str, str]) -> None:
        run_quiet([*self.bvisor, "run", "--", "/bin/true"], env=env, cwd=str(self.work))

    def start_service(self) -> None:
        """Start ``bvisor serve`` as on demand, and wait until it answers."""
        self.cli_true(self.env)  # runs here, and starts the service for the next one
        status = [*self.bvisor, "serve", "--status", "--json"]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            done = subprocess.run(status, env=self.env, capture_output=True, check=False)
            if done.returncode == 0 and json.loads(done.stdout).get("running"):
                # The rows time served commands: one that would not be served says why.
                self.cli_true({**self.env, "BVISOR_SERVE": "require"})
                return
            time.sleep(0.2)
        raise SystemExit("bvisor serve did not start within 30 s")

    def stop_service(self) -> None:
        subprocess.run([*self.bvisor, "serve", "--stop"], env=self.env, capture_output=True)


# -- rows ----------------------------------------------------------------------------


# Bytes of the records in each of a default /bin/true run's commits (plan and lowering;
# launcher lines, terminal, streams and report), as measured on the ledger.
RUN_COMMIT_BYTES = (24_000, 19_000)


class DurableFloor:
    """What durability costs on the ledger's filesystem, without bvisor: a run's two LMDB
    commits (of a run's bytes, opened as the ledger opens its store), a raw fdatasync."""

    def __init__(self, directory: Path) -> None:
        import lmdb

        directory.mkdir()
        self._env = lmdb.open(str(directory / "lmdb"), map_size=1 << 30, sync=True, metasync=True)
        self._fd = os.open(directory / "raw", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self._count = 0

    def commits(self) -> None:
        for size in RUN_COMMIT_BYTES:
            self._count += 1
            with self._env.begin(write=True) as txn:
                txn.put(self._count.to_bytes(8, "big"), os.urandom(size))

    def fdatasync(self) -> None:
        os.pwrite(self._fd, b"x" * 4096, 0)
        os.fdatasync(self._fd)

    def close(self) -> None:
        self._env.close()
        os.close(self._fd)


def row_a(ctx: Context, table: Table, runs: int) -> None:
    from bvisor.contract import Outcome
    from bvisor.front.api import run_confined
    from bvisor.front.defaults import default_spec

    spec = default_spec(["/bin/true"], cwd=str(ctx.work))

    def confined() -> None:
        report = run_confined(spec, ledger=ctx.ledger)
        assert report.body.outcome is Outcome.COMPLETED, report.body.observed

    floor = DurableFloor(ctx.scratch / "floor")
    try:
        samples = interleaved(
            {
                "bwrap": ctx.bwrap_true,
                "run_confined": confined,
                "commits": floor.commits,
                "fdatasync": floor.fdatasync,
            },
            runs,
        )
    finally:
        floor.close()
    med = {name: statistics.median(values) for name, values in samples.items()}
    ours, ref = med["run_confined"], med["bwrap"]
    table.add(
        "a",
        "run_confined /bin/true (default spec, ledger)",
        ms(ours),
        f"bwrap {ms(ref)}",
        ours / ref,
        "<= 1.0x",
        ours / ref <= 1.0,
    )
    table.add(
        "a",
        "a run's two durable LMDB commits, without bvisor",
        ms(med["commits"]),
        f"bwrap {ms(ref)}",
        med["commits"] / ref,
    )
    table.add(
        "a",
        "4 KiB pwrite + fdatasync (this disk's floor)",
        ms(med["fdatasync"]),
        f"bwrap {ms(ref)}",
        med["fdatasync"] / ref,
    )


def row_b(ctx: Context, table: Table, runs: int) -> None:
    ctx.start_service()
    cases = {
        "bwrap": ctx.bwrap_true,
        "served": lambda: ctx.cli_true(ctx.env),
        "unserved": lambda: ctx.cli_true(ctx.unserved_env),
        "floor": lambda: run_quiet(PY_FLOOR),
    }
    samples = interleaved(cases, runs)
    med = {name: statistics.median(values) for name, values in samples.items()}
    ref = med["bwrap"]
    for name, what in (
        ("served", "bvisor run -- /bin/true (served)"),
        ("unserved", "bvisor run -- /bin/true (BVISOR_SERVE=0)"),
    ):
        table.add(
            "b",
            what,
            ms(med[name]),
            f"bwrap {ms(ref)}",
            med[name] / ref,
            "<= 3x",
            med[name] / ref <= 3,
        )
    table.add(
        "b",
        "python -I -S -c pass (the floor)",
        ms(med["floor"]),
        f"bwrap {ms(ref)}",
        med["floor"] / ref,
    )


def _rate(once: Callable[[], None], in_flight: int, total: int) -> float:
    """Runs per second doing ``total`` runs with ``in_flight`` threads at once."""
    with concurrent.futures.ThreadPoolExecutor(in_flight) as pool:
        list(pool.map(lambda _i: once(), range(in_flight)))  # warm every thread
        started = time.perf_counter()
        list(pool.map(lambda _i: once(), range(total)))
        return total / (time.perf_counter() - started)


def row_c(ctx: Context, table: Table, total: int, rounds: int) -> None:
    from bvisor.contract import Outcome
    from bvisor.front.api import run_confined
    from bvisor.front.defaults import default_spec

    spec = default_spec(["/bin/true"], cwd=str(ctx.work))

    def confined() -> None:
        report = run_confined(spec, ledger=ctx.ledger)
        assert report.body.outcome is Outcome.COMPLETED, report.body.observed

    ctx.start_service()
    cases = {
        "bwrap": ctx.bwrap_true,
        "api": confined,
        "cli": lambda: ctx.cli_true(ctx.env),
    }
    for in_flight in (2, 8):
        rates: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(rounds):
            for name, once in cases.items():
                rates[name].append(_rate(once, in_flight, total))
        med = {name: statistics.median(values) for name, values in rates.items()}
        ref = f"bwrap {med['bwrap']:.1f}/s"
        table.add(
            "c",
            f"{in_flight} in flight: run_confined threads",
            f"{med['api']:.1f} runs/s",
            ref,
            med["api"] / med["bwrap"],
        )
        table.add(
            "c",
            f"{in_flight} in flight: bvisor run processes (served)",
            f"{med['cli']:.1f} runs/s",
            ref,
            med["cli"] / med["bwrap"],
        )


def _reference_scan(path: Path) -> int:
    """The raw floor of a verify: every record read, two BLAKE3 digests over its bytes."""
    import lmdb
    from blake3 import blake3

    context = "bvisor.ledger.event.v1"
    env = lmdb.open(str(path), readonly=True, lock=False, max_dbs=16, subdir=True)
    try:
        events = env.open_db(b"events", create=False)
        count = 0
        with env.begin(buffers=True) as txn:
            for _key, value in txn.cursor(db=events):
                half = len(value) // 2
                blake3(value[:half], derive_key_context=context).digest()
                blake3(value[half:], derive_key_context=context).digest()
                count += 1
        return count
    finally:
        env.close()


def _into(found: list[Any], func: Callable[[], Any]) -> None:
    found.append(func())


def rows_de(ctx: Context, table: Table, runs: int, rows: str) -> None:
    import replay as replay_bench
    from bvisor import replay
    from bvisor.ledger import Ledger, verify

    path = ctx.scratch / "reading"
    print(f"building a ledger of {runs} runs", file=sys.stderr)
    replay_bench.build(path, runs)
    best: dict[str, float] = {}

    def keep(name: str, seconds: float) -> None:
        best[name] = min(seconds, best.get(name, seconds))

    def opened(func: Callable[[Ledger], Any]) -> Callable[[], Any]:
        """``func`` over the ledger opened read-only (each side opens its own: LMDB allows
        one environment per path in a process)."""

        def call() -> Any:
            with Ledger.open(path, readonly=True) as ledger:
                return func(ledger)

        return call

    events = _reference_scan(path)
    for _ in range(3):
        keep("reference", cpu(lambda: _reference_scan(path)))
        found: list[Any] = []
        keep("verify", cpu(partial(_into, found, opened(verify))))
        assert found[-1].ok and found[-1].events == events, found[-1].findings[:3]
        if "e" in rows:
            keep("replay", cpu(partial(_into, found, opened(replay.audit))))
            assert found[-1].ok
    if "d" in rows:
        speed = best["reference"] / best["verify"]
        table.add(
            "d",
            f"verify, {events:,} events ({runs:,} runs)",
            f"{events / best['verify'] / 1000:.0f}k events/s",
            f"raw scan {events / best['reference'] / 1000:.0f}k/s",
            speed,
            ">= 0.5x",
            speed >= 0.5,
        )
    if "e" in rows:
        ratio = best["replay"] / best["verify"]
        table.add(
            "e",
            f"replay of all {runs:,} runs (CPU time)",
            f"{best['replay']:.2f} s",
            f"verify {best['verify']:.2f} s",
            ratio,
            "<= 3x",
            ratio <= 3,
        )


def row_f(ctx: Context, table: Table, sizes: list[int], rounds: int) -> None:
    import replay as replay_bench

    found = replay_bench.one_run(ctx.scratch / "one-run", sizes, rounds=rounds)
    small, large = min(sizes), max(sizes)
    for name, by_size in found.items():
        ratio = by_size[large] / by_size[small]
        table.add(
            "f",
            f"{name}",
            f"{by_size[large] * 1000:.1f} ms @{large // 1000}k",
            f"{by_size[small] * 1000:.1f} ms @{small // 1000}k",
            ratio,
            "<= 1.5x",
            ratio <= 1.5,
        )


# Run by a small interpreter of its own: a child's ru_maxrss starts from what its parent
# held when it forked (and a vfork'ed child's from the parent's whole high-water mark), so
# measured from this big process every command would seem to hold what this one does.
_RSS_HELPER = """
import os, sys
pid = os.posix_spawn(sys.argv[1], sys.argv[1:], os.environ)
_, status, usage = os.wait4(pid, 0)
print(os.waitstatus_to_exitcode(status), usage.ru_maxrss * 1024)
"""


def _peak_rss(args: list[str], env: dict[str, str], cwd: str) -> int:
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", _RSS_HELPER, *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        env=env,
        cwd=cwd,
        check=True,
    )
    status, rss = (int(word) for word in done.stdout.split())
    if status != 0:
        raise SystemExit(f"{args[:4]} failed ({status})")
    return rss


def row_g(ctx: Context, table: Table, runs: int) -> None:
    ctx.start_service()
    command = [*ctx.bvisor, "run", "--", "/bin/true"]
    unrecorded = [*ctx.bvisor, "run", "--no-record", "--", "/bin/true"]
    found: dict[str, list[int]] = {"unserved": [], "unrecorded": [], "served": [], "floor": []}
    for _ in range(runs):
        found["unserved"].append(_peak_rss(command, ctx.unserved_env, str(ctx.work)))
        found["unrecorded"].append(_peak_rss(unrecorded, ctx.unserved_env, str(ctx.work)))
        found["served"].append(_peak_rss(command, ctx.env, str(ctx.work)))
        found["floor"].append(_peak_rss(PY_FLOOR, ctx.env, str(ctx.work)))
    mib = {name: statistics.median(values) / (1 << 20) for name, values in found.items()}
    for name, what in (
        ("unserved", "peak RSS, bvisor run (BVISOR_SERVE=0)"),
        ("unrecorded", "peak RSS, bvisor run --no-record (BVISOR_SERVE=0)"),
        ("served", "peak RSS, bvisor run (served: the command)"),
    ):
        table.add(
            "g",
            what,
            f"{mib[name]:.1f} MiB",
            f"before {RSS_BEFORE_MIB:.0f} MiB",
            mib[name] / RSS_BEFORE_MIB,
            "<= 1.0x",
            mib[name] <= RSS_BEFORE_MIB,
        )
    table.add("g", "peak RSS, python -I -S -c pass (floor)", f"{mib['floor']:.1f} MiB", "", None)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: about two minutes")
    parser.add_argument("--rows", default="abcdefg", help="which rows (letters), default all")
    parser.add_argument("--runs", type=int, help="rounds of each latency loop (a, b)")
    parser.add_argument("--ledger-runs", type=int, help="runs in the ledger of rows d and e")
    parser.add_argument("--one-run", metavar="SIZES", help="row f's ledger sizes, e.g. 1000,100000")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    quick = args.quick
    runs = args.runs or (15 if quick else 40)
    ledger_runs = args.ledger_runs or (1000 if quick else 5000)
    sizes = [
        int(x) for x in (args.one_run or ("1000,10000" if quick else "1000,100000")).split(",")
    ]
    bwrap = ensure_bwrap()
    scratch = Path(tempfile.mkdtemp(prefix="bvisor-targets-"))
    os.environ["BVISOR_LEDGER"] = str(scratch / "ledger")  # never the user's default ledger
    ctx = Context(scratch, bwrap)
    table = Table()
    try:
        if "a" in args.rows:
            row_a(ctx, table, runs)
        if "b" in args.rows:
            row_b(ctx, table, runs)
        if "c" in args.rows:
            row_c(ctx, table, 8 if quick else 24, 1 if quick else 3)
        if "d" in args.rows or "e" in args.rows:
            rows_de(ctx, table, ledger_runs, args.rows)
        if "f" in args.rows:
            row_f(ctx, table, sizes, 5 if quick else 7)  # ms timings: best of several rounds
        if "g" in args.rows:
            row_g(ctx, table, 3 if quick else 5)
    finally:
        ctx.stop_service()
        shutil.rmtree(scratch, ignore_errors=True)
    print(
        f"issue 10 targets ({os.uname().release}, {os.cpu_count()} cpus, "
        f"{'quick' if quick else 'full'}; bwrap: {' '.join(BWRAP_ARGS)} /bin/true)"
    )
    if args.json:
        print(json.dumps(table.rows, indent=2))
    else:
        table.print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
