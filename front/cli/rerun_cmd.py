"""``bvisor-replay --rerun RUN [--lease REF=HOSTVAR]... [--json]``: does RUN reproduce?

RUN (an id or unique hex prefix) is audited first; a run that does not verify is not
re-executed (exit 1, saying which check failed). Its recorded spec is re-run here under
a fresh plan and recorded in the same ledger as a new run naming RUN
(:mod:`bvisor.front.rerun`); then the two are shown side by side: h_p, h_a, h_l, the plan
id (and, when h_p differs, which profile facts do), outcome, exit, each stream's digest
and each listed output's and committed artifact's digest. The workload's output is
captured and recorded, not shown (``bvisor-ledger log --run`` has it); it reads empty
stdin. Before anything runs, stderr says what is about to (:func:`announcement`): the
command (and argv[0]), its working directory, environment and roots, its network, what
its spec leaves unconfined.

Exit status: 0 ran and everything compared matches; 1 ran and something differs, or RUN
does not verify; 2 bad usage (unknown or ambiguous RUN, a bad ``--lease``); 125 refused:
this host does not admit the recorded spec (the planner's code, requirement and missing
fact are named), a recorded root or working directory is gone, the run had a terminal
(--tty: a rerun lends none), or a secret lease the
spec needs was not given again.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

from bvisor.contract.plan import BoundaryPlan
from bvisor.contract.report import BoundaryReportBody
from bvisor.front.cli.leases import lease_values, spec_lease_refs
from bvisor.front.rerun import RerunFailed, RerunRefused, RerunResult, compare, recorded_run, rerun
from bvisor.front.visible import visible
from bvisor.ledger import Ledger, LedgerError
from bvisor.ledger.errors import LedgerFormatError, LedgerNotFoundError, RecordIncompleteError
from bvisor.ledger.runs import RunLookupError, resolve_in_ledger

__all__ = [
    "EXIT_DIFFERS",
    "EXIT_REFUSED",
    "EXIT_SAME",
    "RerunUsageError",
    "announcement",
    "render_table",
    "run_rerun",
]

PROG = "bvisor-replay"
EXIT_SAME, EXIT_DIFFERS, EXIT_REFUSED = 0, 1, 125


class RerunUsageError(Exception):
    """Bad usage of ``--rerun`` (the caller exits 2 with the message)."""


def _open(path: Path) -> Ledger:
    if not path.is_dir():
        raise RerunUsageError(f"{path}: no ledger here (not a directory)")
    try:
        return Ledger.open(path)
    except (LedgerNotFoundError, LedgerFormatError) as exc:
        raise RerunUsageError(f"{path}: not a ledger ({exc})") from None
    except LedgerError as exc:
        raise RerunUsageError(f"{path}: cannot open the ledger for writing ({exc})") from None


def _say(message: str, as_json: bool, code: str, status: int, **extra: object) -> int:
    print(visible(f"{PROG}: {message}"), file=sys.stderr)
    if as_json:
        print(json.dumps({"error": {"code": code, "message": message, **extra}}, sort_keys=True))
    return status


def run_rerun(path: Path, prefix: str, lease_pairs: list[str], *, as_json: bool) -> int:
    """The command; :class:`RerunUsageError` is a usage error (the caller exits 2)."""
    leases = lease_values(lease_pairs)
    if isinstance(leases, str):
        raise RerunUsageError(leases)
    with _open(path) as ledger:
        try:
            run_id = resolve_in_ledger(prefix, ledger)
        except RunLookupError as exc:
            raise RerunUsageError(str(exc)) from None
        try:
            parsed = recorded_run(ledger, run_id)
        except RerunFailed as exc:
            return _say(str(exc), as_json, "not-verified", EXIT_DIFFERS)
        if parsed.admitted is None:
            raise RerunUsageError(f"run {run_id.hex()[:16]} was refused at admission: nothing ran")
        wanted = spec_lease_refs(parsed.admitted.spec)
        for ref in leases:
            if ref not in wanted:
                uses = ", ".join(repr(r) for r in wanted) or "none"
                raise RerunUsageError(
                    f"--lease {ref}=...: the spec has no secret lease {ref!r} ({uses})"
                )
        for ref in wanted:
            if ref not in leases:
                return _say(
                    f"refused: the recorded spec needs secret lease {ref!r} (never kept in the "
                    f"ledger): give --lease {ref}=HOSTVAR",
                    as_json,
                    "lease-missing",
                    EXIT_REFUSED,
                    requirement=ref,
                )
        warnings: list[str] = []

        def checkpointed(signed: object, problem: str | None) -> None:
            if problem is not None:
                unsigned = "no checkpoint was signed: " if signed is None else ""
                warnings.append(f"warning: {unsigned}{problem}")

        try:
            plan, body = rerun(
                ledger,
                parsed,
                leases,
                on_plan=lambda p: _announce(run_id, p),
                on_checkpoint=checkpointed,
            )
        except RecordIncompleteError as exc:  # a full disk: the rerun ran, its record is not
            return _say(f"the rerun's record is incomplete: {exc}", as_json, "record", 125)
        except LedgerError as exc:  # a key that cannot be used: nothing ran
            return _say(f"refused: {exc}", as_json, "ledger", EXIT_REFUSED)
        except RerunRefused as exc:
            return _say(
                f"refused: {exc}",
                as_json,
                exc.code,
                EXIT_REFUSED,
                requirement=exc.requirement,
                missing_fact=exc.missing_fact,
            )
        assert parsed.sealed is not None
        rows, why = compare(
            parsed.sealed.body,
            body,
            parsed.admitted.profile,
            plan.profile,
            parsed.admitted.admission.rules_version,
            plan.admission.rules_version,
        )
        result = RerunResult(run_id, body.attempt_id, rows, why, _notes(parsed.sealed.body))
    for warning in warnings:  # the record is kept; these are about its checkpoint
        print(visible(f"{PROG}: {warning}"), file=sys.stderr)
    if as_json:
        print(json.dumps(result.to_json(), sort_keys=True))
    else:
        sys.stdout.write(visible(render_table(result)))
    return EXIT_SAME if result.same else EXIT_DIFFERS


def announcement(run_id: bytes, plan: BoundaryPlan) -> list[str]:
    """What a rerun is about to run, from the plan it was just admitted under: the
    command (and the name it is given as argv[0]), its working directory, its whole
    environment, the host paths it is granted and how, its network and the families its
    spec leaves the host's own. A verified chain proves order, not
    authorship (README): whoever could write the ledger chose this spec, so its owner
    sees it before it runs rather than only in the table after."""
    from bvisor.contract import Environment, Filesystem, Network, NetworkAllowList
    from bvisor.contract.environment import SecretLease
    from bvisor.front.cli.plan_cmd import unconfined

    spec = plan.spec
    workload = spec.workload
    argv = [getattr(workload, "exe", "?"), *getattr(workload, "args", ())]
    cwd = getattr(workload, "cwd", None)
    argv0 = getattr(workload, "argv0", None)  # what the program sees as its name
    lines = [
        f"rerunning {run_id.hex()[:16]} as recorded: {shlex.join(argv)}"
        + (f" (as argv[0] {shlex.quote(argv0)})" if argv0 is not None else "")
        + (f" (in {cwd})" if cwd is not None else "")
    ]
    for capability in spec.capabilities:
        if isinstance(capability, Environment):
            # The whole environment it starts with: a recorded LD_PRELOAD or BASH_ENV
            # makes the command above run something else.
            shown = [
                f"{entry.name} from lease {shlex.quote(entry.value.ref)}"
                if isinstance(entry.value, SecretLease)
                else shlex.quote(f"{entry.name}={entry.value.value}")
                for entry in capability.policy.entries
            ]
            lines.append(f"  environment: {', '.join(shown) if shown else 'empty'}")
        elif isinstance(capability, Filesystem):
            lines.append(f"  {capability.access.value}: {' '.join(capability.roots)}")
        elif isinstance(capability, Network):
            policy = capability.policy
            if isinstance(policy, NetworkAllowList):
                lines.append(f"  network: only {' '.join(policy.endpoints)}")
            else:
                lines.append("  network: none (an empty namespace)")
    left = unconfined(plan)
    if left:
        lines.append(
            f"  not confined: {', '.join(left)} (the spec names no capability of these: "
            "the host's own, as far as your uid may reach)"
        )
    return lines


def _announce(run_id: bytes, plan: BoundaryPlan) -> None:
    """Each line of :func:`announcement` on stderr, one line each: a recorded newline or
    tab is written as its escape too, so a forged argv cannot add lines of its own."""
    for line in announcement(run_id, plan):
        shown = visible(line).replace("\n", "\\n").replace("\t", "\\t")
        print(f"{PROG}: {shown}", file=sys.stderr)
    sys.stderr.flush()


def _notes(recorded: BoundaryReportBody) -> tuple[str, ...]:
    """What the rerun could not give again, where it may explain a difference."""
    notes: list[str] = []
    for fact in recorded.observed:
        if fact.kind == "stdin_relayed":
            notes.append(f"the recorded run was relayed stdin ({fact.detail}); the rerun read none")
    return tuple(notes)


def _short(value: str | None) -> str:
    if value is None:
        return "-"
    head, sep, rest = value.partition(" ")
    if len(head) == 64 and all(c in "0123456789abcdef" for c in head):
        head = head[:16]
    return f"{head}{sep}{rest}"


def render_table(result: RerunResult) -> str:
    """The side-by-side table: ``=`` the same, ``!`` differs."""
    differ = [row.name for row in result.rows if not row.same]
    verdict = "everything compared matches" if not differ else f"{len(differ)} differ"
    lines = [
        f"rerun of {result.recorded_run.hex()[:16]} recorded as "
        f"{result.rerun_run.hex()[:16]}: {verdict}",
        f"  {'':1} {'':<28} {'recorded':<32} rerun",
    ]
    for row in result.rows:
        mark = "=" if row.same else "!"
        lines.append(f"  {mark} {row.name:<28} {_short(row.recorded):<32} {_short(row.rerun)}")
    lines += [f"note: {note}" for note in result.notes]
    if result.why_h_p:
        lines.append("h_p differs: this host's profile is not the recorded one:")
        lines += [f"  {difference}" for difference in result.why_h_p]
    return "\n".join(lines) + "\n"
