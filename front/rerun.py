"""Re-execute a recorded run and say what reproduced (``bvisor-replay --rerun RUN``).

Replay proves a run's evidence; a rerun asks whether the run *reproduces*. The recorded
run is first audited (a run that does not verify is never re-executed: its spec is not
known to be the one that ran). Its recorded spec — workload argv, environment, roots,
budgets, unchanged — is then planned afresh on this host and run through the ordinary
API path, so the rerun is a run like any other in the same ledger (two commits), whose
``plan.admitted`` names the run it re-executes (:class:`bvisor.contract.rerun.RerunLink`;
replay checks the link). Secret leases are given again by the caller: a lease's value is
never in the ledger. Nothing here decides what "the same" means beyond equal digests:
each row compares one recorded digest or value with the rerun's.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from bvisor.contract import CaptureStreams, Filesystem
from bvisor.contract.outputs import LISTED, parse_item
from bvisor.contract.plan import BoundaryPlan
from bvisor.contract.profile import ProfileSnapshot
from bvisor.contract.report import BoundaryReportBody
from bvisor.contract.rerun import RerunLink
from bvisor.contract.spec import BoundarySpec
from bvisor.ledger import Ledger
from bvisor.ledger.checkpoint import SignedCheckpoint
from bvisor.replay import VERIFIED, audit
from bvisor.replay.diff import show
from bvisor.replay.events import GrammarError, ParsedRun, parse_run

__all__ = [
    "RerunFailed",
    "RerunRefused",
    "RerunResult",
    "Row",
    "compare",
    "profile_differences",
    "recorded_run",
    "rerun",
]


class RerunFailed(Exception):
    """The recorded run cannot be re-executed because it does not verify (exit 1)."""


class RerunRefused(Exception):
    """The recorded spec cannot run here (admission refuses, a root is gone): exit 125.

    ``code``/``requirement``/``missing_fact`` are the planner's when it refused.
    """

    def __init__(
        self,
        message: str,
        code: str = "refused",
        requirement: str | None = None,
        missing_fact: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code, self.requirement, self.missing_fact = code, requirement, missing_fact


@dataclass(frozen=True, slots=True)
class Row:
    """One compared item: what the recorded run says, what the rerun says."""

    name: str
    recorded: str | None
    rerun: str | None

    @property
    def same(self) -> bool:
        return self.recorded == self.rerun

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "recorded": self.recorded,
            "rerun": self.rerun,
            "same": self.same,
        }


@dataclass(frozen=True, slots=True)
class RerunResult:
    """The two runs side by side; ``why_h_p`` lists the profile facts that differ."""

    recorded_run: bytes
    rerun_run: bytes
    rows: tuple[Row, ...]
    why_h_p: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())

    @property
    def same(self) -> bool:
        return all(row.same for row in self.rows)

    def to_json(self) -> dict[str, object]:
        return {
            "recorded_run": self.recorded_run.hex(),
            "rerun_run": self.rerun_run.hex(),
            "same": self.same,
            "rows": [row.to_json() for row in self.rows],
            "differs": [row.name for row in self.rows if not row.same],
            "profile_differences": list(self.why_h_p),
            "notes": list(self.notes),
        }


def recorded_run(ledger: Ledger, run_id: bytes) -> ParsedRun:
    """The run, audited and decoded; :class:`RerunFailed` when it does not verify."""
    report = audit(ledger, [run_id])
    (run,) = report.runs
    if run.verdict != VERIFIED or not report.ok:
        bad = [c for c in run.checks if not c.ok]
        why = f"{bad[0].name}: {bad[0].detail}" if bad else (report.error or "the ledger")
        raise RerunFailed(f"run {run_id.hex()[:16]} does not verify ({run.verdict}): {why}")
    try:
        parsed = parse_run(run_id, ledger.run_events(run_id))
    except GrammarError as exc:  # verified a moment ago: only a concurrent rewrite
        raise RerunFailed(f"run {run_id.hex()[:16]}: {exc}") from None
    return parsed


def missing_roots(spec: BoundarySpec) -> list[str]:
    """The recorded cwd and filesystem roots that no longer exist on this host."""
    paths: list[str] = []
    cwd = getattr(spec.workload, "cwd", None)
    if cwd is not None:
        paths.append(cwd)
    for capability in spec.capabilities:
        if isinstance(capability, Filesystem):
            paths.extend(capability.roots)
    return [path for path in paths if not os.path.lexists(path)]


def rerun(
    ledger: Ledger,
    parsed: ParsedRun,
    secrets: Mapping[str, str],
    on_plan: Callable[[BoundaryPlan], None] | None = None,
    on_checkpoint: Callable[[SignedCheckpoint | None, str | None], None] | None = None,
) -> tuple[BoundaryPlan, BoundaryReportBody]:
    """Re-execute ``parsed``'s spec under a fresh plan, recorded in ``ledger``.

    ``on_plan`` hears the fresh plan once admitted, before anything runs (the command
    says there what it is about to run); ``on_checkpoint`` hears what
    :func:`bvisor.front.api.run_confined` says of the checkpoint a configured key signs
    (the rerun is a run like any other: its record is signed, and a checkpoint that
    first covers runs it did not record says so). Raises :class:`RerunRefused` when this host
    refuses the spec (recorded as a ``plan.refused``, as any refusal is), a recorded root
    is gone or the run had a terminal (nothing recorded).
    """
    from bvisor.front.api import run_confined
    from bvisor.launcher.host.reach import ArtifactsReachable, KeyReachable, LedgerReachable
    from bvisor.planner.errors import PlanRefusal

    admitted, sealed = parsed.admitted, parsed.sealed
    if admitted is None or sealed is None:
        raise RerunFailed("the run has no admitted plan and sealed report: nothing ran")
    gone = missing_roots(admitted.spec)
    if gone:
        raise RerunRefused(
            f"the recorded spec names {gone[0]}, which no longer exists on this host",
            code="root-missing",
            requirement="workload.cwd / filesystem.roots",
        )
    if any(isinstance(c, CaptureStreams) and c.streams.tty for c in admitted.spec.controls):
        raise RerunRefused(
            "the recorded run had a terminal (bvisor run --tty); a rerun reads empty stdin "
            "and lends none, so the host could only deny it",
            code="terminal",
            requirement="capture_streams.tty",
        )
    link = RerunLink(run_id=parsed.run_id, plan_id=admitted.plan_id, seal=sealed.seal)
    plans: list[BoundaryPlan] = []

    def planned(plan: BoundaryPlan) -> None:
        plans.append(plan)
        if on_plan is not None:
            on_plan(plan)

    try:
        report = run_confined(
            admitted.spec,
            ledger=ledger,
            secrets=dict(secrets),
            on_plan=planned,
            on_checkpoint=on_checkpoint,
            rerun_of=link,
        )
    except (LedgerReachable, KeyReachable, ArtifactsReachable) as exc:
        raise RerunRefused(str(exc), code="reach") from None
    except PlanRefusal as refusal:
        where = f" [{refusal.requirement}]" if refusal.requirement else ""
        missing = f" (missing: {refusal.missing_fact})" if refusal.missing_fact else ""
        raise RerunRefused(
            f"this host refuses the recorded spec: {refusal.code}{where}: "
            f"{refusal.detail}{missing}",
            code=refusal.code,
            requirement=refusal.requirement,
            missing_fact=refusal.missing_fact,
        ) from None
    return plans[0], report.body


def _outputs(body: BoundaryReportBody) -> dict[str, str]:
    """Each listed output (root/path) and committed artifact (path) -> its SHA-256."""
    found: dict[str, str] = {}
    for fact in body.observed:
        if fact.kind == LISTED:
            item = parse_item(f"{LISTED} {fact.detail}")
            if item is not None:
                root, path = item.get("root"), item.get("path")
                found[f"output {root.rstrip('/')}/{path}"] = item.get("sha256")
    for entry in body.artifacts:
        item = parse_item(f"artifact {entry}")
        if item is not None:
            found[f"artifact {item.get('path')}"] = item.get("sha256")
    return found


def _exit(body: BoundaryReportBody) -> str | None:
    if body.exit is None:
        return None
    if body.exit.signal is not None:
        return f"signal {body.exit.signal}"
    return f"code {body.exit.code}"


def compare(
    old: BoundaryReportBody,
    new: BoundaryReportBody,
    old_profile: ProfileSnapshot,
    new_profile: ProfileSnapshot,
    old_rules: int,
    new_rules: int,
) -> tuple[tuple[Row, ...], tuple[str, ...]]:
    """The rows (plan digests, the planner rules that made them — a new rules version
    changes h_a — outcome, exit, streams, outputs) and why h_p differs."""
    rows = [
        Row(name, getattr(old, attr).hex(), getattr(new, attr).hex())
        for name, attr in (("h_p", "h_p"), ("h_a", "h_a"), ("h_l", "h_l"), ("plan_id", "plan_id"))
    ]
    rows.append(Row("rules", f"v{old_rules}", f"v{new_rules}"))
    rows.append(Row("outcome", old.outcome.value, new.outcome.value))
    rows.append(Row("exit", _exit(old), _exit(new)))
    old_streams = {s.name: s for s in old.streams}
    new_streams = {s.name: s for s in new.streams}
    for name in sorted(set(old_streams) | set(new_streams)):
        a, b = old_streams.get(name), new_streams.get(name)
        rows.append(
            Row(
                f"stream {name}",
                None if a is None else f"{a.digest.hex()} ({a.length} bytes)",
                None if b is None else f"{b.digest.hex()} ({b.length} bytes)",
            )
        )
    old_out, new_out = _outputs(old), _outputs(new)
    for name in sorted(set(old_out) | set(new_out)):
        rows.append(Row(name, old_out.get(name), new_out.get(name)))
    why: tuple[str, ...] = ()
    if old.h_p != new.h_p:
        why = tuple(profile_differences(old_profile.to_value(), new_profile.to_value()))
    return tuple(rows), why


def profile_differences(recorded: object, now: object) -> list[str]:
    """Why two profiles' h_p differ: each host fact that differs, then each ceiling cell
    whose level differs (the ceiling follows from the facts and the rules; its reasons
    and mechanism names are prose and are not listed), then whether the probe's notes
    (how the facts were established, prose too) differ."""
    old = recorded if isinstance(recorded, Mapping) else {}
    new = now if isinstance(now, Mapping) else {}
    old_facts = dict(old.get("facts") or {})
    new_facts = dict(new.get("facts") or {})
    old_notes, new_notes = old_facts.pop("probe_notes", None), new_facts.pop("probe_notes", None)
    found = leaf_differences(old_facts, new_facts, "facts")
    found += leaf_differences(_levels(old.get("ceiling")), _levels(new.get("ceiling")), "ceiling")
    for key in sorted((set(old) | set(new)) - {"facts", "ceiling"}):
        found += leaf_differences(old.get(key), new.get(key), key)
    if old_notes != new_notes:
        found.append("facts.probe_notes: the probe's notes differ (prose, not compared further)")
    return found


def _levels(cells: object) -> dict[str, object]:
    """Ceiling cells by key -> their enforcement level."""
    levels: dict[str, object] = {}
    for cell in cells if isinstance(cells, list | tuple) else ():
        if isinstance(cell, Mapping) and isinstance(cell.get("key"), str):
            levels[cell["key"]] = cell.get("enforcement")
    return levels


def leaf_differences(recorded: object, now: object, path: str) -> list[str]:
    """Every leaf where two canonical values differ: ``path: recorded X, here Y``."""
    if isinstance(recorded, Mapping) and isinstance(now, Mapping):
        found: list[str] = []
        for key in sorted(set(recorded) | set(now)):
            at = f"{path}.{key}"
            if key not in now:
                found.append(f"{at}: recorded {show(recorded[key])}, absent here")
            elif key not in recorded:
                found.append(f"{at}: not recorded, here {show(now[key])}")
            else:
                found += leaf_differences(recorded[key], now[key], at)
        return found
    if isinstance(recorded, list) and isinstance(now, list) and len(recorded) == len(now):
        found = []
        for index, (a, b) in enumerate(zip(recorded, now, strict=True)):
            found += leaf_differences(a, b, f"{path}[{index}]")
        return found
    if recorded == now and type(recorded) is type(now):
        return []
    return [f"{path}: recorded {show(recorded)}, here {show(now)}"]
