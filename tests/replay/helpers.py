"""Recording and forging helpers for the replay tests.

``record_synthetic`` writes a run exactly as ``bvisor.launcher.host.runner`` writes it — a real plan
from the real planner on this host's real probe, recorded with the runner's own payload
helpers — but with a made-up execution (outcome, exit, transcript, output), so replay can
be tested on every outcome without depending on what the kernel does. ``record_real``
goes through ``bvisor.front.api.run_confined``.

``forge`` is the attacker who can rewrite the ledger: it reads every event, lets a test
edit the payloads (or drop, reorder and renumber events), and re-appends everything into a
*new* ledger through the public ``Ledger.append`` — so every event hash and the whole
chain are recomputed and ``bvisor-ledger verify`` finds nothing wrong. Only the meaning
checks can catch what it did.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bvisor.contract import (
    BoundarySpec,
    Budget,
    BudgetRequirements,
    CaptureStreams,
    ChildSpawn,
    Environment,
    EnvPolicy,
    EvidenceRequirements,
    ExitStatus,
    Filesystem,
    FsAccess,
    Kill,
    KillGuarantee,
    KillTarget,
    LaunchWorkload,
    MinGuarantee,
    Network,
    NetworkAllowList,
    ObservedFact,
    Outcome,
    ProcessWorkload,
    SpawnPolicy,
    StdStreams,
)
from bvisor.contract.plan import BoundaryPlan
from bvisor.contract.profile import ProfileSnapshot
from bvisor.contract.report import BoundaryReportBody, BudgetWitness, seal_report
from bvisor.contract.transcript import HAPPY_PATH
from bvisor.ledger import Ledger
from tests.features import dev_launcher_path

SUCCESS_LINES = (
    *HAPPY_PATH[:1],
    "# identity code=00 entry=00",
    *HAPPY_PATH[1:-1],
    "# workload pid=4242",
    "ExecSucceeded",
)


def base_spec(args: Sequence[str] = ("-c", "echo hi; exit 3")) -> BoundarySpec:
    """A spec with something to widen: read-only /usr, deny new tasks, captured output."""
    return BoundarySpec(
        workload=ProcessWorkload(exe="/bin/sh", args=tuple(args)),
        capabilities=(
            Filesystem(access=FsAccess.READ, roots=("/usr",)),
            ChildSpawn(policy=SpawnPolicy.DENY_NEW_TASKS),
            Environment(policy=EnvPolicy.exact(())),
        ),
        controls=(LaunchWorkload(), CaptureStreams(streams=StdStreams.capture_out_err())),
        budgets=BudgetRequirements.uniform(8, MinGuarantee.MEDIATED),
        evidence=EvidenceRequirements(),
    )


def descendants_spec(args: Sequence[str], exe: str = "/bin/sh", **budgets: Budget) -> BoundarySpec:
    """Descendants allowed, run tree killed atomically, optional budgets."""
    return BoundarySpec(
        workload=ProcessWorkload(exe=exe, args=tuple(args)),
        capabilities=(
            ChildSpawn(policy=SpawnPolicy.ALLOW_DESCENDANTS_WITHIN_BOUNDARY),
            Environment(policy=EnvPolicy.exact(())),
        ),
        controls=(
            LaunchWorkload(),
            CaptureStreams(streams=StdStreams.capture_out_err()),
            Kill(target=KillTarget.RUN_TREE, guarantee=KillGuarantee.ATOMIC),
        ),
        budgets=BudgetRequirements(**budgets),
        evidence=EvidenceRequirements(),
    )


def refused_spec() -> BoundarySpec:
    """A UDP allow list entry: the proxy relays TCP only, so always refused."""
    return BoundarySpec(
        workload=ProcessWorkload(exe="/bin/true", args=()),
        capabilities=(Network(NetworkAllowList(("example.org:53/udp",))),),
        controls=(LaunchWorkload(),),
        budgets=BudgetRequirements(),
        evidence=EvidenceRequirements(),
    )


def backend() -> Any:
    from bvisor.launcher.host.backend import LinuxBackend

    return LinuxBackend.with_launcher_path(dev_launcher_path())


_SNAPSHOT: list[ProfileSnapshot] = []


def snapshot() -> ProfileSnapshot:
    """This host's real profile (probed once per test session)."""
    if not _SNAPSHOT:
        _SNAPSHOT.append(backend().probe())
    return _SNAPSHOT[0]


def make_plan(spec: BoundarySpec) -> BoundaryPlan:
    from bvisor.planner.planning import plan_boundary

    return plan_boundary(spec, snapshot())


@dataclass
class FakeRun:
    """What a made-up execution observed."""

    outcome: Outcome = Outcome.FAILED
    exit: ExitStatus | None = field(default_factory=lambda: ExitStatus.exited(3))
    lines: tuple[str, ...] = SUCCESS_LINES
    stdout: bytes = b"hi\n"
    stderr: bytes = b""
    witnesses: tuple[BudgetWitness, ...] = ()
    facts: tuple[tuple[str, str], ...] = ()  # the classifier's facts (kind, detail), last


def _execution(attempt_id: bytes, fake: FakeRun, plan: BoundaryPlan) -> Any:
    """The facts ``bvisor.launcher.host.backend`` writes for such an observation, in its order."""
    from bvisor.contract.report_inputs import lowering_facts
    from bvisor.launcher.host.backend import Execution

    run = Execution(attempt_id=attempt_id, outcome=fake.outcome, exit=fake.exit)
    run.observed.extend(lowering_facts(plan))
    run.lines = list(fake.lines)
    run.stdout, run.stderr = fake.stdout, fake.stderr
    run.stdout_total, run.stderr_total = len(fake.stdout), len(fake.stderr)
    run.witnesses = list(fake.witnesses)
    run.fact("launcher_identity", plan.profile.facts.launcher_identity or "code=00 entry=00")
    terminal = None
    pid = None
    for line in fake.lines:
        if line.startswith("# "):
            run.fact("launcher_note", line[2:])
            if line.startswith("# workload pid="):
                pid = line.removeprefix("# workload pid=")
        elif line in ("ExecSucceeded", "SetupRefused", "SetupFaulted"):
            terminal = line
    if pid is not None:
        run.fact("workload_launched", f"pid={pid}")
    run.fact("launcher_terminal", terminal or "none")
    for name, data in (("stdout", fake.stdout), ("stderr", fake.stderr)):
        run.fact("stream_captured", f"{name} bytes={len(data)}")
    for kind, detail in fake.facts:
        run.fact(kind, detail)
    return run


def record_synthetic(
    ledger: Ledger,
    spec: BoundarySpec | None = None,
    fake: FakeRun | None = None,
    *,
    attempt_id: bytes | None = None,
    stop_after_admission: bool = False,
    plan: BoundaryPlan | None = None,
    rerun_of: Any = None,
) -> bytes:
    """Record one run the way the runner does; returns its run id.

    ``plan``: one made elsewhere (other rules, say) instead of ``spec``'s on this host;
    ``rerun_of``: the :class:`RerunLink` a rerun's plan.admitted carries.
    """
    from bvisor.contract import events
    from bvisor.launcher.host import runner

    plan = plan or make_plan(spec or base_spec())
    fake = fake or FakeRun()
    attempt = attempt_id or os.urandom(32)
    ledger.append_many(
        [("plan.admitted", events.admitted_payload(plan, attempt, rerun_of), attempt)]
        + [("lowering.entry", p, attempt) for p in runner.lowering_payloads(plan)]
    )
    if stop_after_admission:
        return attempt
    for index, line in enumerate(fake.lines):
        ledger.append("launcher.phase", events.phase_payload(index, line), attempt)
    execution = _execution(attempt, fake, plan)
    report = seal_report(runner.build_report_body(plan, execution))
    items: list[tuple[str, Any, bytes | None]] = [
        ("run.terminal", runner.terminal_payload(execution), attempt)
    ]
    items += [
        ("run.denied", events.denied_payload(index, entry), attempt)
        for index, entry in enumerate(report.body.denied_attempts)
    ]
    for name, data in (("stdout", fake.stdout), ("stderr", fake.stderr)):
        items += [
            ("run.streams", chunk, attempt)
            for chunk in runner.stream_chunks(name, data, len(data), False)
        ]
    items.append(("report.sealed", events.sealed_payload(report), attempt))
    ledger.append_many(items)
    return attempt


def record_refusal(ledger: Ledger, spec: BoundarySpec | None = None) -> bytes:
    """Record a refusal exactly as ``bvisor.front.api.run_confined`` does."""
    from bvisor.launcher.host.runner import refused_payload
    from bvisor.planner.errors import PlanRefusal

    attempt = os.urandom(32)
    try:
        make_plan(spec or refused_spec())
    except PlanRefusal as refusal:
        ledger.append(
            "plan.refused",
            refused_payload(spec or refused_spec(), snapshot(), refusal, attempt),
            attempt,
        )
        return attempt
    raise AssertionError("the spec was admitted")


# -- the forger ----------------------------------------------------------------------------


@dataclass
class Copied:
    """One event as the forger holds it: kind, run id and a mutable payload."""

    kind: str
    run_id: bytes | None
    payload: Any


Edit = Callable[[list[Copied]], list[Copied] | None]


def forge(source: Ledger, target: Path, edit: Edit) -> Ledger:
    """Copy ``source`` into a new ledger at ``target`` after ``edit`` (hashes recomputed)."""
    events = [Copied(e.kind, e.run_id, copy.deepcopy(e.payload)) for e in source.events()]
    edited = edit(events)
    if edited is not None:
        events = edited
    forged = Ledger.open(target, create=True)
    for event in events:
        forged.append(event.kind, event.payload, event.run_id)
    return forged


def renumber(events: list[Copied], kind: str) -> None:
    """Rewrite ``index`` fields of ``kind`` per run to count 0, 1, 2, ... again."""
    counters: dict[bytes | None, int] = {}
    for event in events:
        if event.kind == kind:
            event.payload["index"] = counters.get(event.run_id, 0)
            counters[event.run_id] = counters.get(event.run_id, 0) + 1


def first(events: list[Copied], kind: str) -> Copied:
    return next(e for e in events if e.kind == kind)


def reseal(events: list[Copied]) -> None:
    """Recompute the seal of every report from its (possibly edited) body."""
    for event in events:
        if event.kind == "report.sealed":
            body = BoundaryReportBody.from_value(event.payload["body"])
            event.payload["seal"] = body.seal()


def observed(kind: str, detail: str) -> dict[str, Any]:
    return ObservedFact(kind, detail).to_value()
