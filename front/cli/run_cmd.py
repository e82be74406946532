"""`bvisor run`: plan, run confined, pass output through, seal, record, exit with the status.

Exit status follows the coreutils habit so scripts can wrap bvisor like ``timeout``: the
workload's own code when it ran; 124 on timeout; 125 when refused at admission, denied by
the host, or on a supervisor fault; 128+N when killed by signal N; 2 for a usage mistake.
When bvisor itself is stopped — Ctrl-C, SIGTERM, SIGHUP — it kills the run tree, seals and
records the run (outcome ``killed``), then exits 128+N for its own signal (130, 143, 129).
When the run's record cannot be finished (a full disk), it says that the workload ran and
its record is incomplete, and exits 125. With a signing key (``--key``, ``$BVISOR_KEY`` or
the default key, if it exists) the run's last record comes with a signed checkpoint.
A command that cannot be started is refused before anything is planned, with one line
saying why and the status a shell would give: 127 not found, 126 found but not runnable
(not executable, a directory, a missing ``#!`` interpreter).

Standard streams: output is relayed live without ever stalling the run's deadline, and
shown with its control sequences made visible where it reaches a terminal (see
:mod:`bvisor.front.cli.run_output`); stdin is relayed into the boundary when it is a pipe
or a file, and never when it is a terminal (``--tty`` lends a pty instead). ``--json``
output is bounded: each stream shows at most ``JSON_STREAM_BYTES`` and says when it was cut.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from typing import Any

from bvisor.contract import facts as fact_kinds
from bvisor.contract import notes as wire_notes
from bvisor.contract import outputs as outputs_grammar
from bvisor.front.cli.leases import check_leases, lease_values

__all__ = ["add_arguments", "exit_status_for", "run"]

EXIT_USAGE = 2
EXIT_TIMEOUT = 124
EXIT_REFUSED = 125
JSON_STREAM_BYTES = 1024 * 1024


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--spec",
        metavar="SPEC",
        help="spec file (TOML or JSON); CMD, if given, replaces its workload. Without it: no "
        "network, the current directory read-write, the system read-only, descendants in a "
        "run cgroup killed at the end, environment PATH/LANG/HOME, only fds 0-2",
    )

    parser.add_argument(
        "--lease",
        metavar="REF=HOSTVAR",
        action="append",
        default=[],
        help="resolve secret lease REF from host environment variable HOSTVAR (repeatable)",
    )
    parser.add_argument(
        "--ledger",
        metavar="DIR",
        help="ledger to record in (default: $BVISOR_LEDGER or $XDG_DATA_HOME/bvisor/ledger)",
    )
    parser.add_argument(
        "--no-record", action="store_true", help="do not record the run in a ledger"
    )
    parser.add_argument(
        "--artifacts",
        metavar="DIR",
        help="where a spec that commits its outputs puts them, as DIR/<run id> (default: "
        "$BVISOR_ARTIFACTS or $XDG_DATA_HOME/bvisor/artifacts)",
    )
    parser.add_argument(
        "--key",
        metavar="FILE",
        help="sign a checkpoint with the run's record (default: $BVISOR_KEY, else the "
        "default key if it exists)",
    )
    parser.add_argument(
        "--no-key",
        action="store_true",
        help="sign no checkpoint, though a key is configured (the record is kept)",
    )
    parser.add_argument(
        "--new-log",
        action="store_true",
        help="the ledger is new at a place where the key signed another one before: sign "
        "it anyway (without this, a ledger replaced there is recorded but not signed)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print the sealed report as JSON (each stream shown up to 1 MiB, cut marked)",
    )
    parser.add_argument(
        "--tty",
        action="store_true",
        help="interactive: the workload gets a pty of its own, relayed to this terminal "
        "(which is put in raw mode and restored after); needs a terminal on stdin",
    )
    parser.add_argument(
        "--raw-output",
        action="store_true",
        help="pass the workload's control sequences to your terminal unchanged (by default "
        "they are shown, e.g. ESC as ^[); with this the workload can rewrite your screen "
        "and imitate bvisor's own lines",
    )
    from bvisor.front.defaults import add_limit_arguments

    add_limit_arguments(parser)
    parser.add_argument("command", nargs=argparse.REMAINDER, metavar="-- CMD ARGS...")


def exit_status_for(outcome: str, code: int | None, signal: int | None) -> int:
    if outcome == "timeout":
        return EXIT_TIMEOUT
    if outcome in {"completed", "failed"} and code is not None:
        return code
    if signal is not None:
        return 128 + signal
    return EXIT_REFUSED


def _fail(message: str, status: int = EXIT_USAGE, as_json: bool = False) -> int:
    from bvisor.front.cli.usage import report_error

    # stdout stays one JSON document, as every --json command promises
    code = {EXIT_USAGE: "usage", 126: "cannot-invoke", 127: "not-found"}.get(status, "error")
    return report_error("bvisor run", message, as_json=as_json, code=code, status=status)


def _print_json(document: dict[str, Any]) -> None:
    """One ``--json`` document on stdout (its module loads only for ``--json``)."""
    from bvisor.front import jsonview

    print(jsonview.dumps(document))


def _check_inherited_fds(spec: Any) -> str | None:
    """Every fd the spec hands to the workload must be open before bvisor opens its own.

    Called before the run opens anything that lasts (the ledger, the executable, pipes), so
    the fds open now are exactly the ones the command was started with; any other number
    would be one of bvisor's own, and handing that over would give the workload the evidence.
    """
    from bvisor.launcher.host.inherited import inherited_fds_not_open

    for fd in inherited_fds_not_open(spec):
        return (
            f"inherited_fds names fd {fd}, which was not open when bvisor started "
            f"(open it in the shell that runs bvisor, e.g. {fd}<FILE)"
        )
    return None


def _why_not_run(body: Any) -> list[str]:
    """The recorded reasons a workload never ran (host refusals, launcher refusals and
    faults), one line each."""
    reasons: list[str] = []
    for fact in body.observed:
        if fact.kind in fact_kinds.NOT_RUN:
            reasons.append(fact.detail)
        elif fact.kind == fact_kinds.LAUNCHER_NOTE and wire_notes.is_refusal(fact.detail):
            reasons.append(f"launcher {fact.detail}")
        elif fact.kind == fact_kinds.LAUNCHER_NOTE and (
            fault := wire_notes.parse_fault(fact.detail)
        ):
            mechanism, number, name = fault
            what = (
                "the workload could not be executed"
                if mechanism == "exec"
                else (f"setting up {mechanism} failed")
            )
            reasons.append(f"{what}: {os.strerror(int(number))} ({name})")
    return reasons


def _walk_stops(body: Any) -> list[str]:
    """Where the outputs walk stopped short (a bound, or the wall deadline): what follows
    that path was not listed, and nothing was committed. A directory left unentered at
    the depth bound is not a stop (the walk went on) and stays in --json."""
    stops: list[str] = []
    for fact in body.observed:
        if fact.kind != outputs_grammar.TRUNCATED:
            continue
        with contextlib.suppress(outputs_grammar.OutputsGrammarError):
            item = outputs_grammar.parse_item(f"{fact.kind} {fact.detail}")
            if item is not None and item.get("limit") != "depth":
                stops.append(fact.detail)
    return stops


def _build_spec(args: argparse.Namespace, command: list[str], snapshot: Any) -> Any:
    from bvisor.front.defaults import default_spec, limits_from_args, process_workload
    from bvisor.front.specfile import load_spec

    if args.spec is None:
        limits = limits_from_args(args)
        if isinstance(limits, str):
            raise ValueError(limits)
        return default_spec(command, snapshot=snapshot, limits=limits)
    spec = load_spec(args.spec, workload_override=process_workload(command) if command else None)
    return spec


def _notes(body: Any, output: Any) -> list[str]:
    """What the caller should know beyond the outcome: stdin, the relay, limits."""
    notes: list[str] = []
    for fact in body.observed:
        if fact.kind == fact_kinds.STDIN_SOURCE and fact.detail.startswith(
            "empty: the caller's stdin is a"
        ):
            notes.append(
                "stdin: your terminal is never given to a workload; it read empty input "
                "(pipe input in, or use --tty for interactive use)"
            )
        elif fact.kind in ("stream_relay_incomplete", "stdin_relay_stopped"):
            notes.append(f"{fact.kind.replace('_', ' ')}: {fact.detail}")
    unenforced = [
        w.dimension.value
        for w in body.budget_witnesses
        if w.guarantee == "mediated" and w.dimension.value in ("process_count", "resident_bytes")
    ]
    # One line for the limits this host cannot enforce; a witness that cannot even see
    # its dimension is said there too (its reason is in --json), or on a line of its own.
    blind = {
        w.dimension.value: w.source
        for w in body.budget_witnesses
        if w.limit is not None and w.observed is None
    }
    if unenforced:
        unseen = [name for name in unenforced if name in blind]
        if len(unseen) == len(unenforced):
            notes.append(
                f"limits not enforced on this host, nor witnessed: {', '.join(unenforced)} — "
                "no writable cgroup controller for them (why not witnessed: --json)"
            )
        else:
            also = f"; {', '.join(unseen)} not witnessed either (why: --json)" if unseen else ""
            notes.append(
                f"limits not enforced on this host (witnessed only): {', '.join(unenforced)} — "
                f"no writable cgroup controller for them{also}"
            )
    for name, source in blind.items():
        if name not in unenforced:
            notes.append(f"{name}: {source}")
    lookalikes, controls, overflow = (
        output.lookalikes() if output is not None else (0, False, False)
    )
    if controls:
        notes.append(
            "the workload's output holds terminal control sequences, so shown on a terminal "
            "any of its lines may pass for bvisor's; bvisor's own lines are these last ones"
        )
    elif overflow:
        from bvisor.front.cli.lookalike import EXAMINE_LIMIT, UNICODE_LIMIT

        notes.append(
            f"the workload's output holds more than bvisor judges of it ({EXAMINE_LIMIT:,} "
            "lines holding 'bvisor' or moving the cursor back, or "
            f"{UNICODE_LIMIT >> 20} MiB of text that is not ASCII), so it judged no "
            "further: shown on a terminal any of its lines may pass for bvisor's; bvisor's "
            "own lines are these last ones"
        )
    elif lookalikes:
        notes.append(
            f"the workload itself wrote {lookalikes} line(s) that may show as beginning "
            "'bvisor'; bvisor's own lines are these last ones"
        )
    return notes


def _summary(report: Any, elapsed: float) -> str:
    """bvisor's first line on a sealed run: outcome, exit, time and the ids to look it up."""
    body = report.body
    code = None if body.exit is None else body.exit.code
    signal = None if body.exit is None else body.exit.signal
    how = "no exit" if signal is None else f"signal={signal}"
    how = how if code is None else f"exit={code}"
    return (
        f"{body.outcome.value} ({how}) in {elapsed:.2f}s; plan {body.plan_id.hex()[:16]} "
        f"run {body.attempt_id.hex()[:16]} seal {report.seal.hex()[:16]}"
    )


def _json_payload(report: Any, collected: dict[str, Any], status: int) -> dict[str, Any]:
    """What ``bvisor run --json`` prints of a sealed run: its report, seal, exit status and
    the streams as shown."""
    payload: dict[str, Any] = {
        "report": report.body.to_value(),
        "seal": report.seal,
        "exit_status": status,
    }
    facts = []
    for name, buffer in collected.items():
        payload[name] = buffer.data().decode("utf-8", errors="replace")
        if buffer.truncated:
            facts.append(
                {
                    "kind": "json_stream_truncated",
                    "detail": f"{name}: shown the first {len(buffer.data())} of "
                    f"{buffer.total} bytes (the record keeps up to the capture cap)",
                }
            )
    payload["shown"] = {
        name: {"total": b.total, "shown": len(b.data()), "truncated": b.truncated}
        for name, b in collected.items()
    }
    payload["host_facts"] = facts
    return payload


def run(args: argparse.Namespace) -> int:
    from bvisor.contract import ContractError
    from bvisor.front.api import run_confined
    from bvisor.front.defaults import limits_given
    from bvisor.front.specfile import SpecFileError
    from bvisor.launcher.host.script import CommandUnrunnable
    from bvisor.launcher.host.terminal import is_terminal
    from bvisor.planner.errors import PlanRefusal

    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    as_json = bool(args.json)
    if not command and args.spec is None:
        return _fail(
            "nothing to run: give a spec with --spec or a command after --", as_json=as_json
        )
    if args.spec is not None and limits_given(args):
        return _fail(
            "--limit-* change the default spec; with --spec, set [budgets] in the spec file",
            as_json=as_json,
        )
    if args.no_key and args.key is not None:
        return _fail("--no-key signs nothing: do not give --key with it", as_json=as_json)
    if args.tty and (as_json or not is_terminal(0)):
        why = "--json collects output" if as_json else "stdin is not a terminal"
        return _fail(f"--tty lends your terminal to the workload, but {why}", as_json=as_json)
    leases = lease_values(args.lease)
    if isinstance(leases, str):
        return _fail(leases, as_json=as_json)
    from bvisor.launcher.host.backend import LinuxBackend

    snapshot = LinuxBackend().probe()
    try:
        spec = _build_spec(args, command, snapshot)
        if args.tty:
            from bvisor.front.defaults import with_terminal

            spec = with_terminal(spec)
    except SpecFileError as exc:
        return _fail(exc.describe(), as_json=as_json)
    except CommandUnrunnable as exc:
        return _fail(str(exc), exc.status, as_json=as_json)
    except (ContractError, ValueError, OSError) as exc:
        return _fail(str(exc), as_json=as_json)
    lease_problem = check_leases(spec, leases)
    if lease_problem is not None:
        return _fail(lease_problem, as_json=as_json)
    fd_problem = _check_inherited_fds(spec)
    if fd_problem is not None:
        return _fail(fd_problem, as_json=as_json)
    ledger_choice: Any = False if args.no_record else args.ledger
    return _run_and_report(args, spec, snapshot, leases, ledger_choice, run_confined, PlanRefusal)


def _run_and_report(
    args: argparse.Namespace,
    spec: Any,
    snapshot: Any,
    leases: dict[str, str],
    ledger_choice: Any,
    run_confined: Any,
    refusal_type: type[Exception],
) -> int:
    from bvisor.front.cli.run_output import RunOutput, open_run_output
    from bvisor.launcher.host.capture import BoundedBuffer
    from bvisor.launcher.host.interrupts import signal_of, stop_signals_interrupt
    from bvisor.launcher.host.terminal import CallerTerminal

    collected = {name: BoundedBuffer(JSON_STREAM_BYTES) for name in ("stdout", "stderr")}
    output: RunOutput | None = None
    unsigned: list[str] = []
    signed_with: list[str] = []  # remarks on a checkpoint that was signed

    def checkpointed(signed: Any, problem: str | None) -> None:
        if problem is not None:
            (unsigned if signed is None else signed_with).append(problem)

    started = time.monotonic()
    try:
        if not args.json:
            output = open_run_output(tty=bool(args.tty), raw=bool(args.raw_output))
        # SIGTERM/SIGHUP end the run as Ctrl-C does (tree killed, sealed, recorded), and
        # then this command exits 128+N (main() reports it).
        with stop_signals_interrupt(), contextlib.ExitStack() as lent:
            if output is not None and output.stdio.tty is not None:
                lent.enter_context(CallerTerminal(0).lent(window_target=output.stdio.tty))
            report = run_confined(
                spec,
                ledger=ledger_choice,
                secrets=leases,
                on_stdout=collected["stdout"].feed if args.json else None,
                on_stderr=collected["stderr"].feed if args.json else None,
                stdin_fd=0,
                stdio=output.stdio if output is not None else None,
                snapshot=snapshot,
                key=False if args.no_key else args.key,
                new_log=bool(args.new_log),
                on_checkpoint=checkpointed,
                artifacts=args.artifacts,
            )
    except refusal_type as refusal:
        _close(output)
        return _refused(args, refusal)
    except Exception as exc:  # a supervisor fault must still end with a clear message
        _close(output)
        from bvisor.launcher.host.locate import LauncherNotFound
        from bvisor.launcher.host.reach import LedgerReachable
        from bvisor.ledger import LedgerError
        from bvisor.ledger.errors import RecordIncompleteError

        if isinstance(exc, LedgerReachable):  # nothing ran or was recorded: a usage mistake
            return _fail(str(exc), as_json=bool(args.json))
        if isinstance(exc, RecordIncompleteError):
            return _fail(str(exc), EXIT_REFUSED, as_json=bool(args.json))
        if isinstance(exc, (LedgerError, LauncherNotFound, OSError)):
            return _fail(str(exc), EXIT_REFUSED, as_json=bool(args.json))
        raise
    except BaseException as stopped:
        _close(output)
        # Stopped (Ctrl-C, SIGTERM, SIGHUP): the run was sealed and recorded as killed
        # first; say which, as a document with --json, and exit 128+N (main says so).
        interrupted = isinstance(stopped, KeyboardInterrupt)
        sealed = getattr(stopped, "report", None) if interrupted else None
        if sealed is not None:
            if args.json:
                _print_json(_json_payload(sealed, collected, 128 + signal_of(stopped)))
            else:
                print(f"bvisor: {_summary(sealed, time.monotonic() - started)}", file=sys.stderr)
        raise
    for problem in unsigned:  # the record is kept; only its checkpoint is missing
        print(f"bvisor run: warning: no checkpoint was signed: {problem}", file=sys.stderr)
    for remark in signed_with:
        from bvisor.front.visible import visible

        print(f"bvisor run: warning: {visible(remark)}", file=sys.stderr)
    body = report.body
    exit_value = body.exit
    code = None if exit_value is None else exit_value.code
    signal = None if exit_value is None else exit_value.signal
    status = exit_status_for(body.outcome.value, code, signal)
    if args.json:
        _print_json(_json_payload(report, collected, status))
        return status
    assert output is not None
    lines = [f"bvisor: {_summary(report, time.monotonic() - started)}"]
    if code is None and signal is None:
        lines += [f"bvisor: not run: {reason}" for reason in _why_not_run(body)]
    lines += [f"bvisor: denied: {denied.summary()}" for denied in body.denied_attempts]
    lines += [f"bvisor: outputs truncated: {detail}" for detail in _walk_stops(body)]
    lines += [
        f"bvisor: {fact.kind.replace('_', ' ')}: {fact.detail}"
        for fact in body.observed
        if fact.kind in ("artifacts_committed", "artifacts_not_committed")
    ]
    lines += [f"bvisor: note: {note}" for note in _notes(body, output)]
    lines += [f"bvisor: finding: {finding}" for finding in body.findings]
    try:
        output.say(lines)
    finally:
        output.close()
    return status


def _close(output: Any) -> None:
    if output is not None:
        output.close()


def _refused(args: argparse.Namespace, refusal: Any) -> int:
    if args.json:
        _print_json({"admitted": False, **refusal.to_value()})
    else:
        where = f" ({refusal.requirement})" if refusal.requirement else ""
        fact = f" [missing kernel fact: {refusal.missing_fact}]" if refusal.missing_fact else ""
        print(
            f"bvisor run: refused [{refusal.code}]{where}: {refusal.detail}{fact}",
            file=sys.stderr,
        )
    return EXIT_REFUSED
