"""`bvisor run`: plan, run confined, pass output through, seal, record, exit with the status.

Exit status follows the coreutils habit so scripts can wrap bvisor like ``timeout``: the
workload's own code when it ran; 124 on timeout; 125 when refused at admission, denied by
the host, or on a supervisor fault; 128+N when killed by signal N; 2 for a usage mistake.
When bvisor itself is stopped — Ctrl-C, SIGTERM, SIGHUP — it kills the run tree, seals and
records the run (outcome ``killed``), then exits 128+N for its own signal (130, 143, 129).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

from bvisor.front import jsonview

__all__ = ["add_arguments", "exit_status_for", "run"]

EXIT_USAGE = 2
EXIT_TIMEOUT = 124
EXIT_REFUSED = 125


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
    parser.add_argument("--json", action="store_true", help="print the sealed report as JSON")
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
    print(f"bvisor run: {message}", file=sys.stderr)
    if as_json:  # stdout stays one JSON document, as every --json command promises
        code = "usage" if status == EXIT_USAGE else "error"
        print(jsonview.dumps({"error": {"code": code, "message": message}}))
    return status


def _leases(pairs: list[str]) -> dict[str, str] | str:
    values: dict[str, str] = {}
    for pair in pairs:
        ref, sep, host_var = pair.partition("=")
        if not sep or not ref or not host_var:
            return f"--lease {pair!r}: expected REF=HOSTVAR"
        if ref in values:
            return f"--lease {pair!r}: lease {ref!r} is given more than once"
        if host_var not in os.environ:
            return f"--lease {pair!r}: host variable {host_var} is not set"
        values[ref] = os.environ[host_var]
    return values


def _spec_lease_refs(spec: Any) -> list[str]:
    """The secret lease references the spec's environment asks for, in order."""
    from bvisor.contract import Environment, SecretLease

    refs: list[str] = []
    for capability in spec.capabilities:
        if isinstance(capability, Environment):
            for entry in capability.policy.entries:
                if isinstance(entry.value, SecretLease) and entry.value.ref not in refs:
                    refs.append(entry.value.ref)
    return refs


def _check_leases(spec: Any, leases: dict[str, str]) -> str | None:
    """Match ``--lease`` options to the spec before anything runs or is recorded.

    A missing lease would otherwise only surface as a run denied at launch (recorded in
    the ledger, exit 125), and a lease the spec never uses is almost always a typo in REF.
    """
    wanted = _spec_lease_refs(spec)
    for ref in leases:
        if ref not in wanted:
            uses = ", ".join(repr(r) for r in wanted) or "none"
            return f"--lease {ref}=...: the spec has no secret lease {ref!r} (it uses: {uses})"
    for ref in wanted:
        if ref not in leases:
            return f"the spec needs secret lease {ref!r}: give --lease {ref}=HOSTVAR"
    return None


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
    """The recorded reasons a workload never ran (host refusals, launcher refusals)."""
    reasons: list[str] = []
    for fact in body.observed:
        if fact.kind == "launch_refused_by_host":
            reasons.append(fact.detail)
        elif fact.kind == "launcher_note" and fact.detail.startswith("refused"):
            reasons.append(f"launcher {fact.detail}")
    return reasons


def _build_spec(args: argparse.Namespace, command: list[str]) -> Any:
    from bvisor.front.defaults import default_spec, process_workload
    from bvisor.front.specfile import load_spec

    if args.spec is None:
        return default_spec(command)
    spec = load_spec(args.spec, workload_override=process_workload(command) if command else None)
    return spec


def run(args: argparse.Namespace) -> int:
    from bvisor.contract import ContractError
    from bvisor.front.api import run_confined
    from bvisor.front.specfile import SpecFileError
    from bvisor.planner.errors import PlanRefusal

    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    as_json = bool(args.json)
    if not command and args.spec is None:
        return _fail(
            "nothing to run: give a spec with --spec or a command after --", as_json=as_json
        )
    leases = _leases(args.lease)
    if isinstance(leases, str):
        return _fail(leases, as_json=as_json)
    try:
        spec = _build_spec(args, command)
    except SpecFileError as exc:
        return _fail(exc.describe(), as_json=as_json)
    except (ContractError, ValueError, OSError) as exc:
        return _fail(str(exc), as_json=as_json)
    lease_problem = _check_leases(spec, leases)
    if lease_problem is not None:
        return _fail(lease_problem, as_json=as_json)
    fd_problem = _check_inherited_fds(spec)
    if fd_problem is not None:
        return _fail(fd_problem, as_json=as_json)
    ledger_choice: Any = False if args.no_record else args.ledger

    def passthrough(stream: Any) -> Any:
        def write(chunk: bytes) -> None:
            stream.write(chunk)
            stream.flush()

        return write

    collected: dict[str, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}
    started = time.monotonic()
    from bvisor.launcher.host.interrupts import stop_signals_interrupt

    try:
        # SIGTERM/SIGHUP end the run as Ctrl-C does (tree killed, sealed, recorded), and
        # then this command exits 128+N (main() reports it).
        with stop_signals_interrupt():
            report = run_confined(
                spec,
                ledger=ledger_choice,
                secrets=leases,
                on_stdout=collected["stdout"].extend
                if args.json
                else passthrough(sys.stdout.buffer),
                on_stderr=collected["stderr"].extend
                if args.json
                else passthrough(sys.stderr.buffer),
                stdin_fd=0,  # reaches the workload only if its spec asks for stdin
                artifacts=args.artifacts,
            )
    except PlanRefusal as refusal:
        if args.json:
            print(jsonview.dumps({"admitted": False, **refusal.to_value()}))
        else:
            where = f" ({refusal.requirement})" if refusal.requirement else ""
            fact = f" [missing kernel fact: {refusal.missing_fact}]" if refusal.missing_fact else ""
            print(
                f"bvisor run: refused [{refusal.code}]{where}: {refusal.detail}{fact}",
                file=sys.stderr,
            )
        return EXIT_REFUSED
    except Exception as exc:  # a supervisor fault must still end with a clear message
        from bvisor.launcher.host.locate import LauncherNotFound
        from bvisor.launcher.host.reach import LedgerReachable
        from bvisor.ledger import LedgerError

        if isinstance(exc, LedgerReachable):  # nothing ran or was recorded: a usage mistake
            return _fail(str(exc), as_json=as_json)
        if isinstance(exc, (LedgerError, LauncherNotFound, OSError)):
            return _fail(str(exc), EXIT_REFUSED, as_json=as_json)
        raise
    body = report.body
    exit_value = body.exit
    code = None if exit_value is None else exit_value.code
    signal = None if exit_value is None else exit_value.signal
    status = exit_status_for(body.outcome.value, code, signal)
    if args.json:
        payload = {"report": body.to_value(), "seal": report.seal, "exit_status": status}
        for name, data in collected.items():
            payload[name] = data.decode("utf-8", errors="replace")
        print(jsonview.dumps(payload))
        return status
    elapsed = time.monotonic() - started
    how = (
        f"exit={code}"
        if code is not None
        else f"signal={signal}"
        if signal is not None
        else "no exit"
    )
    print(
        f"bvisor: {body.outcome.value} ({how}) in {elapsed:.2f}s; plan {body.plan_id.hex()[:16]} "
        f"run {body.attempt_id.hex()[:16]} seal {report.seal.hex()[:16]}",
        file=sys.stderr,
    )
    if code is None and signal is None:
        for reason in _why_not_run(body):
            print(f"bvisor: not run: {reason}", file=sys.stderr)
    for observed in body.observed:
        if observed.kind in ("artifacts_committed", "artifacts_not_committed"):
            print(f"bvisor: {observed.kind.replace('_', ' ')}: {observed.detail}", file=sys.stderr)
    for finding in body.findings:
        print(f"bvisor: finding: {finding}", file=sys.stderr)
    return status
