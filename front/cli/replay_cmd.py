"""`bvisor-replay [--ledger DIR] [--json] [--last | RUN_ID ...]`: re-verify recorded runs.

Audits every run in the ledger, only the named ones, or (``--last``) only the run that
started most recently; a run id may be given by any unique prefix of its hexadecimal form
(an unknown or ambiguous prefix is a usage error that lists the candidates). Output is
a table (run id prefix, verdict, outcome, time) followed by the failing checks with their
details, or with ``--json``
``{"ok", "runs": [{"run_id", "verdict", "checks": [{"name", "ok", "detail"}]}]}``.

Exit status: 0 every audited run is verified; 1 any run failed or is incomplete (or the
ledger is too damaged to audit); 2 bad usage or not a ledger; 3 nothing failed, but some
run names planner rules this build does not know (verdict ``unknown-rules``: upgrade
bvisor to check it). Progress goes to stderr
when it is a terminal and the ledger is large. The ledger directory defaults to
``$BVISOR_LEDGER``, else ``$XDG_DATA_HOME/bvisor/ledger``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from bvisor.front.cli.stdio import EXIT_BROKEN_PIPE, check_std_streams, silence_stdout
from bvisor.ledger import Ledger, LedgerError, RunSummary, default_ledger_path
from bvisor.ledger.errors import LedgerFormatError, LedgerNotFoundError
from bvisor.ledger.runs import RunLookupError, resolve_run_prefix
from bvisor.replay import ReplayUsageError, audit
from bvisor.replay.audit import Progress
from bvisor.replay.render import render_json, render_table
from bvisor.replay.results import UNKNOWN_RULES

__all__ = ["build_parser", "main", "resolve_run_ids"]

PROG = "bvisor-replay"
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNKNOWN_RULES = 0, 1, 2, 3
_PROGRESS_MIN_RUNS = 500
_PROGRESS_MIN_EVENTS = 20_000


class UsageError(Exception):
    """Bad arguments: exit 2 with the message."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Re-verify recorded runs from the evidence ledger alone (nothing is run).",
    )
    parser.add_argument(
        "--ledger", metavar="DIR", help="ledger directory (default: $BVISOR_LEDGER, else XDG)"
    )
    parser.add_argument("--json", action="store_true", help="print the audit as JSON")
    parser.add_argument(
        "--last", action="store_true", help="audit only the run that started most recently"
    )
    parser.add_argument(
        "run_ids", metavar="RUN_ID", nargs="*", help="run ids or unique hex prefixes (default: all)"
    )
    return parser


def resolve_run_ids(prefixes: Sequence[str], runs: Sequence[RunSummary]) -> list[bytes]:
    """Map each hex prefix to the one run id it starts; UsageError if none or several."""
    chosen: list[bytes] = []
    for text in prefixes:
        try:
            run_id = resolve_run_prefix(text, runs)
        except RunLookupError as exc:
            raise UsageError(str(exc)) from None
        if run_id not in chosen:
            chosen.append(run_id)
    return chosen


def _progress(stream: IO[str]) -> Progress | None:
    if not stream.isatty():
        return None

    def show(stage: str, done: int, total: int) -> None:
        small = total < (_PROGRESS_MIN_EVENTS if stage == "chain" else _PROGRESS_MIN_RUNS)
        if small or (done % 256 and done < total):
            return
        unit = "events chained" if stage == "chain" else "runs audited"
        end = "\n" if done >= total else ""
        stream.write(f"\r{PROG}: {done}/{total} {unit}{end}")
        stream.flush()

    return show


def _open(path: Path) -> Ledger:
    if not path.is_dir():
        raise UsageError(f"{path}: no ledger here (not a directory)")
    try:
        return Ledger.open(path, readonly=True)
    except (LedgerNotFoundError, LedgerFormatError) as exc:
        raise UsageError(f"{path}: not a ledger ({exc})") from None
    except LedgerError as exc:
        raise UsageError(f"{path}: cannot open the ledger ({exc})") from None


def _run(args: argparse.Namespace) -> int:
    path = Path(args.ledger) if args.ledger else default_ledger_path()
    with _open(path) as ledger:
        run_ids: list[bytes] | None = None
        if args.last and args.run_ids:
            raise UsageError("give either --last or run ids, not both")
        if args.run_ids or args.last:
            try:
                runs = ledger.runs()
            except LedgerError as exc:
                print(f"{PROG}: the ledger's run index cannot be read: {exc}", file=sys.stderr)
                return EXIT_FAILED
            if args.last:
                if not runs:
                    raise UsageError(f"{path}: no runs are recorded yet")
                run_ids = [max(runs, key=lambda run: run.first_seq).run_id]
            else:
                run_ids = resolve_run_ids(args.run_ids, runs)
        progress = None if args.json else _progress(sys.stderr)
        try:
            report = audit(ledger, run_ids, progress=progress)
        except ReplayUsageError as exc:
            raise UsageError(str(exc)) from None
    sys.stdout.write(render_json(report) if args.json else render_table(report))
    if report.ok:
        return EXIT_OK
    only_unknown = all(run.ok or run.verdict == UNKNOWN_RULES for run in report.runs)
    ledger_ok = report.ledger is None or report.ledger.ok
    if only_unknown and ledger_ok and report.error is None:
        return EXIT_UNKNOWN_RULES
    return EXIT_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    refused = check_std_streams(PROG)
    if refused is not None:
        return refused
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except UsageError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        if args.json:  # a script reading stdout gets a document, as bvisor-ledger gives
            print(json.dumps({"error": {"code": "usage", "message": str(exc)}}, sort_keys=True))
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`bvisor-replay | head -1`): not worth a traceback.
        silence_stdout()
        return EXIT_BROKEN_PIPE


if __name__ == "__main__":
    sys.exit(main())
