"""`bvisor-ledger`: append to, verify and read the evidence ledger from the shell.

Subcommands (each takes ``--ledger DIR`` and ``--json``, before or after its name):

* ``append --kind KIND [--run RUN_ID] (--data JSON | --file PATH | -)`` appends one event
  (the kinds bvisor records runs with, ``plan.admitted`` ... ``report.sealed``, are refused)
  and prints ``SEQ:HASH`` (the same form ``head`` prints and ``verify --expect-head`` takes).
  ``--file`` and ``-`` read the JSON value from a file or stdin.
* ``append --batch [--kind KIND] [--run RUN_ID] [--group N]`` reads JSON lines from stdin,
  each ``{"kind": ..., "run": ..., "data": ...}`` (``kind``/``run`` default to the options),
  and appends them in one process, committing every N lines (default 512) and at the end
  of input. The first bad line is reported with its line number; the lines before it are
  committed, nothing after it is appended, and the exit status is 2.
* ``verify [--from SEQ] [--to SEQ] | [--expect-head SEQ:HASH]`` (``--to`` is inclusive;
  ``--expect-head`` always verifies from event 0 and is refused with a range):
  exit 0 intact, 1 a finding, 2 bad usage or not a ledger. Progress goes to stderr when it
  is a terminal and the range is large.
* ``log [--run RUN_ID] [--kind KIND] [--limit N]``: one line per event; ``--kind`` takes an
  exact kind or a shell-style pattern (``plan.*``); ``--limit N`` shows the last N matches.
* ``show SEQ``, ``runs``, ``head`` (prints ``SEQ:HASH``; exit 1 on an empty ledger) and
  ``export [--run RUN_ID]`` (JSON Lines: every field, both hashes, the raw record hex and
  the ``ledger_id``; a record that does not decode is exported as ``damaged`` with its raw
  bytes, and the export goes on past it, exiting 1 at the end).
* ``verify`` also takes ``--checkpoint FILE`` (the ledger must still extend a checkpoint
  kept elsewhere), ``--pub KEYFILE`` (trusted key for checkpoint signatures; repeatable),
  ``--tree`` (compare every stored Merkle node) and ``--require-covered`` (events not yet
  covered by a signed checkpoint are a failure, not only named).
* ``keygen``, ``checkpoint``, ``consistency``, ``prove`` and ``attest`` — the signed
  checkpoints, proofs and attestations — are described in ``bvisor.front.cli.ledger_proofs``.

Every read command opens the ledger read-only and changes nothing; on a ledger this user
cannot write (another user's files, a read-only copy) it works without LMDB's lock file and
says so on stderr.

Run ids are written in hexadecimal (attempt ids are random bytes). JSON input may not hold
floats, NaN or duplicate keys — the ledger stores canonical CBOR, which has none. In JSON
output, byte strings are shown as lowercase hex. Exit status: 0 success; 1 a verify finding,
an unknown seq or run, an empty ledger for ``head``, or a damaged ledger on read; 2 bad
usage, bad input or not a ledger. User mistakes never produce a traceback. A SEQ is at most
2^64-2.

The ledger directory defaults to ``$BVISOR_LEDGER``, else ``$XDG_DATA_HOME/bvisor/ledger``.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import IO, Any, NoReturn

from bvisor.canonical import Value
from bvisor.contract.events import NOTE_EXTERNAL, RUN_KINDS
from bvisor.front.cli import ledger_proofs
from bvisor.front.cli.ledger_common import (
    NotFound,
    UsageError,
    emit,
    ledger_path,
    open_ledger,
    read_input,
    run_ref,
    say,
    time_text,
    to_json,
    verifiers_for,
)
from bvisor.front.cli.stdio import EXIT_BROKEN_PIPE, check_std_streams, silence_stdout
from bvisor.front.cli.usage import Parser, json_requested, report_error, whole_number
from bvisor.ledger import (
    Event,
    EventNotFoundError,
    Head,
    Ledger,
    LedgerCorruptError,
    LedgerError,
    LedgerForkError,
    VerifyResult,
    parse_head,
    verify,
)
from bvisor.ledger.errors import LedgerDiskFullError, LedgerUsageError
from bvisor.ledger.kinds import check_kind
from bvisor.ledger.record import (
    MAX_SEQ,
    RecordError,
    check_run_id,
    decode_record,
    decode_record_lenient,
    encode_payload,
)
from bvisor.ledger.tree_verify import CheckpointCheck
from bvisor.ledger.verify import proven_statement

__all__ = ["build_parser", "main"]

PROG = "bvisor-ledger"
_DEFAULT_GROUP = 512
_PROGRESS_MIN_EVENTS = 20_000


_UsageError = UsageError
_NotFound = NotFound
_emit = emit
_to_json = to_json
_time = time_text
_ledger_path = ledger_path


class _BadLine(_UsageError):
    """A bad line of ``append --batch`` input; ``line`` is its 1-based number."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line


# -- argument parsing ---------------------------------------------------------------------


# A sequence number is 0 .. 2^64-2 (so that SEQ + 1 still fits the 8-byte key).
_seq = whole_number(0, MAX_SEQ, f"the largest seq {MAX_SEQ}")
_positive = whole_number(1)


_Parser = Parser


def _common(suppress: bool) -> _Parser:
    """--ledger/--json, accepted before the subcommand and after it."""
    parent = _Parser(add_help=False)
    default: dict[str, Any] = {"default": argparse.SUPPRESS} if suppress else {}
    parent.add_argument(
        "--ledger",
        metavar="DIR",
        help="ledger directory (default: $BVISOR_LEDGER, else $XDG_DATA_HOME/bvisor/ledger)",
        **default,
    )
    parent.add_argument(
        "--json", action="store_true", help="machine-readable output on stdout", **default
    )
    return parent


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Append to, verify and read the bvisor evidence ledger.",
        parents=[_common(False)],
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    common = [_common(True)]

    def add(name: str, summary: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=summary, description=summary, parents=common)

    append = add("append", "append one event, or a batch of JSON lines from stdin")
    append.add_argument("--kind", help="event kind, a dotted lower-case name (note.external)")
    append.add_argument("--run", metavar="RUN_ID", help="run id in hex")
    append.add_argument("--data", metavar="JSON", help="the payload as inline JSON")
    append.add_argument("--file", metavar="PATH", help="read the JSON payload from PATH")
    append.add_argument("source", nargs="?", metavar="-", help="read the JSON payload from stdin")
    append.add_argument("--batch", action="store_true", help="append JSON lines from stdin")
    append.add_argument(
        "--group",
        type=_positive,
        default=_DEFAULT_GROUP,
        metavar="N",
        help=f"with --batch: commit every N lines (default {_DEFAULT_GROUP})",
    )
    append.set_defaults(handler=_cmd_append)

    check = add("verify", "recompute every hash, link and index; exit 0 intact, 1 finding")
    check.add_argument("--from", dest="start", type=_seq, metavar="SEQ")
    check.add_argument("--to", dest="to", type=_seq, metavar="SEQ", help="inclusive")
    check.add_argument(
        "--expect-head",
        metavar="SEQ:HASH",
        help="prove events 0..SEQ are intact (verifies from event 0; not with --from/--to)",
    )
    check.add_argument(
        "--checkpoint",
        metavar="FILE",
        help="prove the ledger still extends this signed checkpoint kept elsewhere",
    )
    check.add_argument(
        "--pub",
        metavar="KEYFILE",
        action="append",
        help="trusted public key: checkpoints must be signed by it (repeatable)",
    )
    check.add_argument(
        "--tree", action="store_true", help="also compare every stored Merkle tree node"
    )
    check.add_argument(
        "--require-covered",
        action="store_true",
        help="fail (exit 1) when events are not yet covered by a signed checkpoint",
    )
    check.set_defaults(handler=_cmd_verify)

    log = add("log", "list events, oldest first")
    log.add_argument("--run", metavar="RUN_ID", help="only this run (hex id or unique prefix)")
    log.add_argument("--kind", help="only this kind, or a pattern such as 'plan.*'")
    log.add_argument("--limit", type=_positive, metavar="N", help="only the last N matches")
    log.set_defaults(handler=_cmd_log)

    show = add("show", "print one event with its payload")
    show.add_argument("seq", type=_seq, metavar="SEQ")
    show.set_defaults(handler=_cmd_show)

    add("runs", "one line per run: id, outcome, time, test hooks").set_defaults(handler=_cmd_runs)
    add("head", "print the head as SEQ:HASH (keep it for verify --expect-head)").set_defaults(
        handler=_cmd_head
    )

    export = add("export", "every event as JSON Lines, for other tools")
    export.add_argument("--run", metavar="RUN_ID", help="only this run (hex id or unique prefix)")
    export.set_defaults(handler=_cmd_export)
    ledger_proofs.add_commands(add)
    return parser


# -- entry point --------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    refused = check_std_streams(PROG)
    if refused is not None:
        return refused
    as_json = json_requested(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
    except _UsageError as exc:
        return _report(as_json, "usage", str(exc), 2)
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    as_json = bool(args.json)
    try:
        return int(args.handler(args))
    except _UsageError as exc:
        return _report(as_json, "usage", str(exc), 2)
    except _NotFound as exc:
        return _report(as_json, "not-found", str(exc), 1)
    except EventNotFoundError as exc:
        return _report(as_json, "not-found", str(exc), 1)
    except LedgerCorruptError as exc:
        return _report(as_json, "corrupt", str(exc), 1)
    except LedgerForkError as exc:
        return _report(as_json, "usage", str(exc), 2)
    except LedgerDiskFullError as exc:
        return _report(as_json, "disk-full", str(exc), 1)
    except LedgerError as exc:  # not a ledger, bad format, bad kind/payload/run, misuse
        return _report(as_json, "error", str(exc), 2)
    except KeyboardInterrupt:  # a script reading --json still gets a document
        return _report(as_json, "interrupted", "interrupted", 130)
    except BrokenPipeError:
        # The reader went away (`bvisor-ledger log | head`): 141, as `bvisor` and
        # `bvisor-replay` say, so a script can tell a cut-short listing from a whole one.
        silence_stdout()
        return EXIT_BROKEN_PIPE


def _report(as_json: bool, code: str, message: str, status: int) -> int:
    return report_error(PROG, message, as_json=as_json, code=code, status=status)


def _open(args: argparse.Namespace, *, write: bool = False) -> Ledger:
    """The ledger; ``write`` also makes it when missing (only ``append`` writes)."""
    return open_ledger(args, write=write, create=write)


# -- JSON in and out ----------------------------------------------------------------------


class _JsonRefused(ValueError):
    pass


def _refuse_float(text: str) -> NoReturn:
    raise _JsonRefused(f"number {text} is not an integer (the ledger stores no floats)")


def _refuse_constant(text: str) -> NoReturn:
    raise _JsonRefused(f"{text} is not allowed")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _JsonRefused(f"duplicate key {key!r}")
        result[key] = value
    return result


def _parse_json(text: str, where: str | None) -> Any:
    try:
        return json.loads(
            text,
            parse_float=_refuse_float,
            parse_constant=_refuse_constant,
            object_pairs_hook=_unique_keys,
        )
    except _JsonRefused as exc:
        problem = str(exc)
    except json.JSONDecodeError as exc:
        problem = f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
    except RecursionError:
        problem = "JSON nested too deeply"
    raise _UsageError(problem if where is None else f"{where}: {problem}")


def _run_id(text: str | None, where: str = "--run") -> bytes | None:
    if text is None:
        return None
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise _UsageError(f"{where}: {text!r} is not a hexadecimal run id") from None
    try:
        return check_run_id(raw)
    except LedgerError as exc:
        raise _UsageError(f"{where}: {exc}") from None


def _head_json(head: Head | None) -> dict[str, Any] | None:
    return None if head is None else {"seq": head.seq, "hash": head.hash.hex()}


def _event_json(event: Event, *, payload: bool, record: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "seq": event.seq,
        "hash": event.hash.hex(),
        "prev_hash": event.prev_hash.hex(),
        "time_ns": event.time_ns,
        "time": _time(event.time_ns),
        "kind": event.kind,
        "run": None if event.run_id is None else event.run_id.hex(),
        "payload_hash": event.payload_hash.hex(),
        "version": event.version,
    }
    if payload:
        out["payload"] = _to_json(event.payload)
    if record:
        out["record"] = event.raw.hex()
    return out


# -- append -------------------------------------------------------------------------------


def _cmd_append(args: argparse.Namespace) -> int:
    if args.source not in (None, "-"):
        raise _UsageError(f"append: unexpected argument {args.source!r} (use - for stdin)")
    sources = [args.data is not None, args.file is not None, args.source == "-"]
    if args.batch:
        if any(sources):
            raise _UsageError("append --batch reads stdin; do not give --data, --file or -")
        return _append_batch(args)
    if sum(sources) != 1:
        raise _UsageError("append: give exactly one of --data JSON, --file PATH or -")
    if args.kind is None:
        raise _UsageError("append: --kind is required")
    kind = _checked_kind(args.kind, "--kind")
    run_id = _run_id(args.run)
    if args.data is not None:
        payload = _parse_json(args.data, "--data")
    elif args.file is not None:
        payload = _parse_json(_read_text(args.file, "--file"), f"--file {args.file}")
    else:
        payload = _parse_json(_read_text("-", "stdin"), "stdin")
    encode_payload(payload)  # refuse a bad payload before the ledger is opened (or created)
    with _open(args, write=True) as ledger:
        receipt = ledger.append(kind, payload, run_id)
    if args.json:
        _emit({"seq": receipt.seq, "hash": receipt.hash.hex()})
    else:
        say(f"{receipt.seq}:{receipt.hash.hex()}")
    return 0


def _checked_kind(kind: object, where: str) -> str:
    try:
        checked = check_kind(kind)
    except LedgerError as exc:
        raise _UsageError(f"{where}: {exc}") from None
    if checked in RUN_KINDS:
        raise _UsageError(
            f"{where}: {checked!r} is reserved for runs recorded by bvisor itself "
            f"({', '.join(RUN_KINDS)}); external evidence uses note.* kinds such as "
            f"{NOTE_EXTERNAL}"
        )
    return checked


def _read_text(path: str, what: str) -> str:
    """The UTF-8 text of a bounded input (:func:`read_input`: ``-`` is stdin)."""
    try:
        return read_input(path, what).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _UsageError(f"{what} {path}: cannot read ({exc})") from None


def _stdin_lines() -> Iterator[str]:
    """Lines of stdin decoded as UTF-8 one by one, so a bad byte names its line."""
    binary: IO[bytes] | None = getattr(sys.stdin, "buffer", None)
    if binary is None:
        yield from sys.stdin
        return
    for number, raw in enumerate(binary, start=1):
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError:
            raise _BadLine(number, "not valid UTF-8") from None


def _batch_item(
    line: str, number: int, kind: str | None, run_id: bytes | None
) -> tuple[str, Value, bytes | None]:
    """Parse and fully validate one batch line, so nothing after a bad line is written."""
    try:
        item = _parse_json(line, None)
        if not isinstance(item, dict):
            raise _UsageError("expected a JSON object with 'kind', 'run' and 'data'")
        unknown = sorted(set(item) - {"kind", "run", "data"})
        if unknown:
            raise _UsageError(f"unknown field {unknown[0]!r}")
        if "data" not in item:
            raise _UsageError("missing field 'data'")
        if "kind" in item:
            kind = _checked_kind(item["kind"], "field 'kind'")
        elif kind is None:
            raise _UsageError("missing field 'kind' (or give --kind)")
        if "run" in item:
            run = item["run"]
            if run is not None and not isinstance(run, str):
                raise _UsageError("field 'run' must be a hex string or null")
            run_id = _run_id(run, "field 'run'")
        try:
            encode_payload(item["data"])
        except LedgerError as exc:
            raise _UsageError(f"field 'data': {exc}") from None
    except _BadLine:
        raise
    except _UsageError as exc:
        raise _BadLine(number, str(exc)) from None
    payload: Value = item["data"]
    return kind, payload, run_id


def _append_batch(args: argparse.Namespace) -> int:
    kind = None if args.kind is None else _checked_kind(args.kind, "--kind")
    default_run = _run_id(args.run)
    receipts = []
    error: str | None = None
    error_line: int | None = None
    # An existing ledger (or a path that cannot be one) is opened first, so its problems
    # are reported before stdin is read; a new ledger is created only when there is
    # something to append, so a batch whose first line is bad leaves no ledger behind.
    path = _ledger_path(args)
    ledger: Ledger | None = None
    if path.exists() and (not path.is_dir() or (path / "data.mdb").exists()):
        ledger = _open(args, write=True)
    try:
        group: list[tuple[str, Value, bytes | None]] = []
        try:
            for number, line in enumerate(_stdin_lines(), start=1):
                if not line.strip():
                    continue
                group.append(_batch_item(line, number, kind, default_run))
                if len(group) >= args.group:
                    ledger = ledger or _open(args, write=True)
                    receipts.extend(ledger.append_many(group))
                    group = []
        except _BadLine as exc:
            error, error_line = str(exc), exc.line
        if group:
            ledger = ledger or _open(args, write=True)
            receipts.extend(ledger.append_many(group))
        head = None if ledger is None else ledger.head()
    finally:
        if ledger is not None:
            ledger.close()
    if error is not None:
        say(
            f"{PROG}: {error}; {len(receipts)} earlier events were appended, "
            "nothing after this line",
            file=sys.stderr,
        )
    summary = {
        "appended": len(receipts),
        "first_seq": receipts[0].seq if receipts else None,
        "last_seq": receipts[-1].seq if receipts else None,
        "head": _head_json(head),
        "error": None if error is None else {"line": error_line, "message": error},
    }
    if args.json:
        _emit(summary)
    elif receipts:
        say(
            f"appended {len(receipts)} events (seq {receipts[0].seq}..{receipts[-1].seq}); "
            f"head {head}"
        )
    else:
        say("appended 0 events")
    return 2 if error is not None else 0


# -- verify -------------------------------------------------------------------------------


def _cmd_verify(args: argparse.Namespace) -> int:
    if args.expect_head is not None and (args.start is not None or args.to is not None):
        raise _UsageError(
            "verify: --expect-head proves every event from 0 to the expected head, so it "
            "cannot be combined with --from/--to (drop the range)"
        )
    whole = args.checkpoint is not None or args.pub or args.tree or args.require_covered
    if whole and (args.start is not None or args.to is not None):
        raise _UsageError(
            "verify: --checkpoint, --pub, --tree and --require-covered prove the whole prefix "
            "from event 0, so they cannot be combined with --from/--to (drop the range)"
        )
    if args.require_covered and args.checkpoint is None and not args.pub:
        raise _UsageError(
            "verify: --require-covered needs --checkpoint FILE or --pub KEYFILE (what covers)"
        )
    expect = None if args.expect_head is None else _parse_expected(args.expect_head)
    checkpoint = None
    if args.checkpoint is not None:
        checkpoint = ledger_proofs.load_checkpoint(args.checkpoint)
    verifiers = verifiers_for(args.pub)
    start = args.start
    stop = None if args.to is None else args.to + 1
    if start is not None and stop is not None and stop <= start:
        raise _UsageError("verify: --to must not be below --from")
    progress = None if args.json else _progress_printer(sys.stderr)
    with _open(args) as ledger:
        if start:
            _check_start(ledger, start)
        result = verify(
            ledger,
            start=start,
            stop=stop,
            expect_head=expect,
            progress=progress,
            checkpoint=checkpoint,
            verifiers=verifiers,
            tree_nodes=bool(args.tree),
        )
    uncovered = result.checkpoint is not None and result.checkpoint.uncovered is not None
    failed = not result.ok or (args.require_covered and uncovered)
    if args.json:
        _emit(_verify_json(result))
    else:
        _print_verify(result)
    return 1 if failed else 0


def _check_start(ledger: Ledger, start: int) -> None:
    """A ``--from`` past the last event is a usage mistake, not a missing event: without
    this, verify would report the event before it as a sequence gap and exit 1."""
    with ledger.snapshot() as snap:
        last_seq = snap.last_event_seq()
    if last_seq is None:
        raise _UsageError(f"verify: --from {start}: the ledger is empty")
    if start > last_seq:
        raise _UsageError(f"verify: --from {start}: the ledger ends at event {last_seq}")


def _parse_expected(text: str) -> Head:
    try:
        return parse_head(text)
    except LedgerUsageError as exc:
        raise _UsageError(f"--expect-head: {exc}") from None


def _progress_printer(stream: IO[str]) -> Callable[[int, int], None] | None:
    if not stream.isatty():
        return None

    def show(done: int, total: int) -> None:
        if total < _PROGRESS_MIN_EVENTS:
            return
        end = "\n" if done >= total else ""
        stream.write(f"\rverifying: {done}/{total} events{end}")
        stream.flush()

    return show


def _verify_json(result: VerifyResult) -> dict[str, Any]:
    """The verify document: five keys always; more only when they say something."""
    out: dict[str, Any] = {
        "ok": result.ok,
        "events": result.events,
        "head": _head_json(result.head),
        "first_bad_seq": result.first_bad_seq,
        "findings": [{"seq": f.seq, "code": f.code, "detail": f.detail} for f in result.findings],
    }
    if not result.ok:
        out["chain_bad_seq"] = result.chain_bad_seq
        out["proven"] = proven_statement(result)
    if result.notes:
        out["notes"] = list(result.notes)
    if result.rewritten:
        out["rewritten"] = [{"from": a, "to": b - 1} for a, b in result.rewritten]
    check = result.checkpoint
    if check is not None:
        span = check.uncovered
        out["checkpoint"] = {
            "size": check.size,
            "signature": check.signature,
            "covered": check.covered,
            "uncovered": None if span is None else {"from": span[0], "to": span[1]},
            "uncovered_runs": [run.hex() for run in check.uncovered_runs],
            "uncovered_run_count": check.uncovered_run_count,
            "signatures_checked": check.signatures_checked,
            "recorded_runs": check.recorded_runs,
            "unrecorded_runs": [run.hex() for run in check.unrecorded_runs],
            "unrecorded_run_count": check.unrecorded_run_count,
        }
    if result.tree_root is not None:
        out["tree_root"] = result.tree_root.hex()
    return out


def _print_verify(result: VerifyResult) -> None:
    head = "empty ledger" if result.head is None else f"head {result.head}"
    if result.ok:
        say(f"ok: {result.events} events verified; {head}")
    else:
        say(
            f"FAILED: {len(result.findings)} finding(s) in {result.events} events; "
            f"first bad seq {result.first_bad_seq}; {head}"
        )
        for finding in result.findings:
            where = "-" if finding.seq is None else str(finding.seq)
            say(f"  seq {where}: {finding.code}: {finding.detail}")
        say(f"  proven: {proven_statement(result)}")
    for note in result.notes:
        say(f"note: {note}")
    check = result.checkpoint
    if check is not None:
        if check.size is not None:
            say(f"checkpoint of {check.size} events: signature {check.signature}")
        span = check.uncovered
        # Without a trusted key no signature was checked: the coverage is said as such.
        signed, unchecked = ("signed ", "")
        if not check.signatures_checked:
            signed, unchecked = ("", " (signatures not checked: no --pub)")
        if span is None:
            say(f"{signed}checkpoints cover all {check.events} events{unchecked}")
        else:
            runs = ", ".join(r.hex()[:16] for r in check.uncovered_runs) or "no run"
            more = check.uncovered_run_count - len(check.uncovered_runs)
            extra = f" and {more} more" if more > 0 else ""
            say(
                f"events {span[0]}..{span[1]} are not yet covered by a {signed}checkpoint "
                f"(runs: {runs}{extra}){unchecked}"
            )
        _print_authorship(check)


def _print_authorship(check: CheckpointCheck) -> None:
    """Which covered runs a signer says it recorded itself, and which none does."""
    if check.unrecorded_run_count == 0:
        if check.recorded_runs:
            say(f"every covered run ({check.recorded_runs}) was recorded by a signer itself")
        return
    runs = ", ".join(r.hex()[:16] for r in check.unrecorded_runs)
    more = check.unrecorded_run_count - len(check.unrecorded_runs)
    extra = f" and {more} more" if more > 0 else ""
    say(
        f"{check.unrecorded_run_count} covered run(s) no signer says it recorded itself, or "
        f"with events it did not: {runs}{extra} (recorded without a key and signed later, "
        "or appended by whoever could write the ledger: check them with bvisor-replay RUN)"
    )
    if check.recorded_runs:
        say(f"{check.recorded_runs} covered run(s) were recorded by a signer itself")


# -- reading ------------------------------------------------------------------------------


def _matching(events: Iterable[Event], pattern: str | None) -> Iterator[Event]:
    for event in events:
        if pattern is None or fnmatch.fnmatchcase(event.kind, pattern):
            yield event


def _run_ref(ledger: Ledger, text: str | None) -> bytes | None:
    """A recorded run named by its id or a unique hex prefix of it (O(log n))."""
    return run_ref(ledger, text)


def _cmd_log(args: argparse.Namespace) -> int:
    with _open(args) as ledger:
        run_id = _run_ref(ledger, args.run)
        if run_id is not None:
            events: list[Event] = ledger.run_events(run_id)
            if not events:
                raise _NotFound(f"no events for run {run_id.hex()}")
            selected = list(_matching(events, args.kind))
            if args.limit is not None:
                selected = selected[-args.limit :]
            _print_log(args, selected)
        elif args.limit is not None:
            newest: list[Event] = []
            for event in _matching(ledger.events(reverse=True), args.kind):
                newest.append(event)
                if len(newest) >= args.limit:
                    break
            _print_log(args, list(reversed(newest)))
        else:
            _print_log(args, _matching(ledger.events(), args.kind))
    return 0


def _print_log(args: argparse.Namespace, events: Iterable[Event]) -> None:
    if args.json:
        _emit([_event_json(event, payload=False) for event in events])
        return
    for event in events:
        run = "-" if event.run_id is None else event.run_id.hex()
        say(
            f"{event.seq:>8}  {_time(event.time_ns)}  {event.kind:<16}  {run}  "
            f"{event.hash.hex()[:16]}"
        )


def _cmd_show(args: argparse.Namespace) -> int:
    with _open(args) as ledger:
        event = ledger.get(args.seq)
    if args.json:
        _emit(_event_json(event, payload=True))
        return 0
    fields = _event_json(event, payload=False)
    for name in ("seq", "hash", "prev_hash", "time", "time_ns", "kind", "run", "payload_hash"):
        value = fields[name]
        say(f"{name:<13}{'-' if value is None else value}")
    say("payload:")
    say(json.dumps(_to_json(event.payload), indent=2, sort_keys=True))
    return 0


def _cmd_runs(args: argparse.Namespace) -> int:
    # Lazily: the replay package is heavy, and only this command reads what runs mean.
    from bvisor.replay.outcomes import recorded_outcomes, recorded_test_hooks

    with _open(args) as ledger:
        listed = recorded_outcomes(ledger)
        hooked = recorded_test_hooks(ledger)
    summaries = [summary for summary, _ in listed]
    outcomes = {summary.run_id: outcome for summary, outcome in listed}
    if args.json:
        _emit(
            [
                {
                    "run": s.run_id.hex(),
                    "outcome": outcomes[s.run_id],
                    "test_hooks": list(hooked.get(s.run_id, ())),
                    "time": _time(s.first_time_ns),
                    "first_time_ns": s.first_time_ns,
                    "last_time_ns": s.last_time_ns,
                    "first_seq": s.first_seq,
                    "last_seq": s.last_seq,
                    "events": s.count,
                    "last_kind": s.last_kind,
                }
                for s in summaries
            ]
        )
        return 0
    for s in summaries:
        outcome = outcomes[s.run_id] or "incomplete"
        hooks = hooked.get(s.run_id)
        marked = f"  test hook {', '.join(hooks)}: not evidence" if hooks else ""
        say(
            f"{s.run_id.hex()}  {outcome:<15}  {_time(s.first_time_ns)}  "
            f"{s.count} events (seq {s.first_seq}..{s.last_seq}){marked}"
        )
    return 0


def _cmd_head(args: argparse.Namespace) -> int:
    with _open(args) as ledger:
        head = ledger.head()
    if head is None:
        if args.json:
            _emit({"seq": None, "hash": None})
        say(f"{PROG}: the ledger is empty (no head yet)", file=sys.stderr)
        return 1
    if args.json:
        _emit(_head_json(head))
    else:
        say(head)
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    """Every record as one JSON line; a damaged one is marked, shown raw, and passed."""
    damaged = 0
    with _open(args) as ledger:
        ledger_id = ledger.ledger_id.hex()
        run_id = _run_ref(ledger, args.run)
        if run_id is not None:
            seqs = ledger.run_seqs(run_id)
            if not seqs:
                raise _NotFound(f"no events for run {run_id.hex()}")
            records: Iterable[tuple[int, bytes | None]] = ((s, ledger.raw(s)) for s in seqs)
        else:
            records = ledger.raw_events()
        for seq, raw in records:
            line = _export_line(seq, raw)
            damaged += "damaged" in line
            line["ledger_id"] = ledger_id
            say(json.dumps(line, sort_keys=True))
    if damaged:
        say(f"{PROG}: {damaged} damaged event(s) exported as such (run verify)", file=sys.stderr)
    return 1 if damaged else 0


def _export_line(seq: int, raw: bytes | None) -> dict[str, Any]:
    """One export line: the event, or — for a record that does not hold — what it is."""
    if raw is None:
        return {"seq": seq, "damaged": {"code": "missing", "detail": "the event is missing"}}
    try:
        decoded = decode_record(raw)
    except RecordError as exc:
        damage = {"code": exc.code, "detail": exc.detail}
        try:  # a well-formed record in a non-canonical encoding still shows its fields
            decoded = decode_record_lenient(raw)
        except RecordError as again:
            damage = {"code": "malformed-record", "detail": again.detail}
            return {"seq": seq, "record": raw.hex(), "damaged": damage}
        line = _event_json(decoded.event, payload=True, record=True)
        line["seq"], line["damaged"] = seq, damage
        return line
    event = decoded.event
    line = _event_json(event, payload=True, record=True)
    if event.seq != seq:
        line["seq"] = seq
        line["damaged"] = {"code": "sequence-mismatch", "detail": f"the record says {event.seq}"}
    elif not decoded.payload_ok:
        line["damaged"] = {
            "code": "payload-hash-mismatch",
            "detail": "the payload does not match its payload_hash",
        }
    return line


if __name__ == "__main__":
    sys.exit(main())
