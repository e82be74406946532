"""`bvisor-replay [--ledger DIR] [--json] [--last | RUN_ID ...]`: re-verify recorded runs.

Anchors kept elsewhere make one run cheap (``bvisor.replay.anchored``): with
``--checkpoint FILE`` (signed; checked with ``--pub KEYFILE``), ``--pub KEYFILE`` alone (the
ledger's latest checkpoint, signed by that key) or ``--expect-head SEQ:HASH``, the named
runs (or ``--last``) are proven by inclusion proofs or by the chain from the run to the
head — O(that run + log n) — instead of by the whole chain. Without named runs, the whole
ledger is audited and the anchor must hold for it; runs it does not cover fail, named "not
yet covered". ``--bundle FILE --pub KEYFILE`` audits the run in a proof bundle
(``bvisor-ledger prove``) with no ledger at all.

Audits every run in the ledger, only the named ones, or (``--last``) only the run that
started most recently; a run id may be given by any unique prefix of its hexadecimal form
(an unknown or ambiguous prefix is a usage error that lists the candidates). Output is
a table (run id prefix, verdict, outcome, time) followed by the failing checks with their
details, or with ``--json``
``{"ok", "runs": [{"run_id", "verdict", "checks": [{"name", "ok", "detail"}]}]}``. A run whose
report says the launcher ran with a dangerous test hook (the test-only lie switch) is
verified when its record is faithful, and marked as not evidence: ``verified (test hook)``
in the table, with a note and a count, and ``"test_hooks"`` in its JSON.

Exit status: 0 every audited run is verified; 1 any run failed or is incomplete (or the
ledger is too damaged to audit); 2 bad usage or not a ledger; 3 nothing failed, but some
run names planner rules this build does not know (verdict ``unknown-rules``: upgrade
bvisor to check it). With ``--rerun RUN [--lease REF=HOSTVAR]...`` the run is verified,
re-executed under a fresh plan and compared (``bvisor.front.cli.rerun_cmd``: exit 0 all
matches, 1 something differs or RUN does not verify, 125 refused here). Progress goes to stderr
when it is a terminal and the ledger is large. The ledger directory defaults to
``$BVISOR_LEDGER``, else ``$XDG_DATA_HOME/bvisor/ledger``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING

from bvisor.front.cli.ledger_common import UsageError, read_input, verifiers_for
from bvisor.front.cli.stdio import EXIT_BROKEN_PIPE, check_std_streams, silence_stdout
from bvisor.front.cli.usage import Parser, json_requested, report_error
from bvisor.ledger import Ledger, LedgerError, RunSummary, default_ledger_path, parse_head
from bvisor.ledger.errors import LedgerFormatError, LedgerNotFoundError
from bvisor.ledger.runs import RunLookupError, resolve_in_ledger, resolve_run_prefix
from bvisor.replay import AuditReport, ReplayUsageError, audit
from bvisor.replay.anchored import CheckpointAnchor, HeadAnchor, audit_anchored, trusted_stored
from bvisor.replay.audit import Progress
from bvisor.replay.render import render_json, render_table
from bvisor.replay.results import UNKNOWN_RULES

if TYPE_CHECKING:
    from bvisor.ledger.checkpoint import SignedCheckpoint
    from bvisor.ledger.note import Verifier

__all__ = ["build_parser", "main", "resolve_run_ids"]

PROG = "bvisor-replay"
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNKNOWN_RULES = 0, 1, 2, 3
_PROGRESS_MIN_RUNS = 500
_PROGRESS_MIN_EVENTS = 20_000


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
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
    parser.add_argument(
        "--checkpoint", metavar="FILE", help="prove the runs against this signed checkpoint"
    )
    parser.add_argument(
        "--pub",
        metavar="KEYFILE",
        action="append",
        help="trusted public key: checkpoints and bundles must be signed by it (repeatable)",
    )
    parser.add_argument(
        "--expect-head", metavar="SEQ:HASH", help="prove the runs by the chain up to this head"
    )
    parser.add_argument(
        "--bundle", metavar="FILE", help="audit the run in this proof bundle (no ledger; --pub)"
    )
    parser.add_argument(
        "--rerun",
        metavar="RUN",
        help="verify RUN, re-execute its spec under a fresh plan here, compare the two",
    )
    parser.add_argument(
        "--lease",
        metavar="REF=HOSTVAR",
        action="append",
        default=[],
        help="with --rerun: resolve secret lease REF from host variable HOSTVAR (repeatable)",
    )
    return parser


def resolve_run_ids(prefixes: Sequence[str], runs: Sequence[RunSummary]) -> list[bytes]:
    """Map each hex prefix to the one run id it starts; UsageError if none or several."""
    return _resolve_each(prefixes, lambda text: resolve_run_prefix(text, runs))


def resolve_in(ledger: Ledger, prefixes: Sequence[str]) -> list[bytes]:
    """Each hex prefix's one run id, looked up in O(log n) (UsageError if none or several)."""
    return _resolve_each(prefixes, lambda text: resolve_in_ledger(text, ledger))


def _resolve_each(prefixes: Sequence[str], lookup: Callable[[str], bytes]) -> list[bytes]:
    """The run ids ``lookup`` gives the prefixes, each once, in order."""
    chosen: list[bytes] = []
    for text in prefixes:
        try:
            run_id = lookup(text)
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
        ledger = Ledger.open(path, readonly=True)
        if ledger.unlocked:
            print(
                f"{PROG}: note: {path} was opened without LMDB's lock ({ledger.unlocked}); "
                "nothing is changed, but a writer appending at this moment could make what "
                "is read inconsistent (run again if so)",
                file=sys.stderr,
            )
        return ledger
    except (LedgerNotFoundError, LedgerFormatError) as exc:
        raise UsageError(f"{path}: not a ledger ({exc})") from None
    except LedgerError as exc:
        raise UsageError(f"{path}: cannot open the ledger ({exc})") from None


def _checkpoint(path: str) -> SignedCheckpoint:
    from bvisor.ledger.checkpoint import read_checkpoint

    try:
        return read_checkpoint(path)
    except LedgerError as exc:
        raise UsageError(f"--checkpoint: {exc}") from None


def _show(args: argparse.Namespace, report: AuditReport) -> int:
    sys.stdout.write(render_json(report) if args.json else render_table(report))
    if report.ok:
        return EXIT_OK
    only_unknown = all(run.ok or run.verdict == UNKNOWN_RULES for run in report.runs)
    ledger_ok = report.ledger is None or report.ledger.ok
    if only_unknown and ledger_ok and report.error is None:
        return EXIT_UNKNOWN_RULES
    return EXIT_FAILED


def _run_bundle(args: argparse.Namespace) -> int:
    from bvisor.ledger.bundle import MAX_BUNDLE_BYTES
    from bvisor.replay.bundle import audit_bundle

    if args.run_ids or args.last or args.checkpoint or args.expect_head or args.ledger:
        raise UsageError("--bundle audits the bundle's run alone: give only --pub (and --json)")
    verifiers = verifiers_for(args.pub)
    if not verifiers:
        raise UsageError("--bundle needs --pub KEYFILE: the key the checkpoint must be signed by")
    data = read_input(args.bundle, "--bundle", MAX_BUNDLE_BYTES)
    return _show(args, audit_bundle(data, verifiers))


def _anchor(
    args: argparse.Namespace, ledger: Ledger, verifiers: list[Verifier]
) -> CheckpointAnchor | HeadAnchor | None:
    from bvisor.ledger.note import NoteError

    if args.expect_head is not None:
        try:
            return HeadAnchor(parse_head(args.expect_head))
        except LedgerError as exc:
            raise UsageError(f"--expect-head: {exc}") from None
    if args.checkpoint is None and not verifiers:
        return None
    if args.checkpoint is not None:
        signed = _checkpoint(args.checkpoint)
    else:
        with ledger.snapshot() as snap:  # the largest trusted one: found from the top
            latest = next(trusted_stored(snap, verifiers, 0, newest_first=True), None)
        if latest is None:
            raise UsageError("--pub: the ledger holds no checkpoint signed by that key")
        signed = latest
    if not verifiers:
        return CheckpointAnchor(signed, "signature not checked (no --pub)")
    try:
        keys = signed.verified_by(verifiers)
    except NoteError as exc:
        raise UsageError(f"the checkpoint is not signed by a trusted key: {exc}") from None
    names = ", ".join(f"{k.name}+{k.key_id.hex()}" for k in keys)
    return CheckpointAnchor(signed, f"signed by {names}", tuple(verifiers))


def _run(args: argparse.Namespace) -> int:
    if args.rerun is not None:
        from bvisor.front.cli.rerun_cmd import RerunUsageError, run_rerun

        others = args.run_ids or args.last or args.bundle or args.checkpoint
        if others or args.expect_head or args.pub:
            raise UsageError("--rerun re-executes one run: give only --ledger, --lease, --json")
        path = Path(args.ledger) if args.ledger else default_ledger_path()
        try:
            return run_rerun(path, args.rerun, args.lease, as_json=args.json)
        except RerunUsageError as exc:
            raise UsageError(str(exc)) from None
    if args.lease:
        raise UsageError("--lease is for --rerun")
    if args.bundle is not None:
        return _run_bundle(args)
    if args.expect_head is not None and (args.checkpoint is not None or args.pub):
        raise UsageError("give either --expect-head or a checkpoint (--checkpoint/--pub)")
    if args.last and args.run_ids:
        raise UsageError("give either --last or run ids, not both")
    verifiers = verifiers_for(args.pub)
    path = Path(args.ledger) if args.ledger else default_ledger_path()
    with _open(path) as ledger:
        anchor = _anchor(args, ledger, verifiers)
        if anchor is not None and (args.run_ids or args.last):
            chosen = None if args.last else resolve_in(ledger, args.run_ids)
            return _show(args, audit_anchored(ledger, chosen, anchor))
        run_ids: list[bytes] | None = None
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
        head = anchor.head if isinstance(anchor, HeadAnchor) else None
        signed = anchor.signed if isinstance(anchor, CheckpointAnchor) else None
        try:
            report = audit(
                ledger,
                run_ids,
                progress=progress,
                expect_head=head,
                checkpoint=signed,
                verifiers=verifiers,
            )
        except ReplayUsageError as exc:
            raise UsageError(str(exc)) from None
    return _show(args, report)


def main(argv: Sequence[str] | None = None) -> int:
    refused = check_std_streams(PROG)
    if refused is not None:
        return refused
    try:
        args = build_parser().parse_args(argv)
    except UsageError as exc:
        return report_error(PROG, str(exc), as_json=json_requested(_words(argv)))
    try:
        return _run(args)
    except UsageError as exc:  # a script reading stdout gets a document, as bvisor-ledger gives
        return report_error(PROG, str(exc), as_json=bool(args.json))
    except KeyboardInterrupt:  # a script reading --json still gets a document
        return report_error(
            PROG, "interrupted", as_json=bool(args.json), code="interrupted", status=130
        )
    except BrokenPipeError:
        # The reader went away (`bvisor-replay | head -1`): not worth a traceback.
        silence_stdout()
        return EXIT_BROKEN_PIPE


def _words(argv: Sequence[str] | None) -> Sequence[str]:
    return sys.argv[1:] if argv is None else argv


if __name__ == "__main__":
    sys.exit(main())
