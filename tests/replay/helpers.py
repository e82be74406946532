"""Recording and forging helpers for the replay tests.

``record_synthetic`` writes a run exactly as ``bvisor.launcher.host.runner`` writes it — a real plan
from the real planner on this host's real probe, recorded with the runner's own payload
helpers — but with a made-up execution (outcome, exit, transcript, output), so replay can
be tested on every outcome without depending on what the kernel does. ``record_real``
goes through ``bvisor.front.api.run_confined``.

A synthetic run that reaches exec carries the notes the launcher writes for each mechanism
its plan schedules (``applied_lines``), after the phase state that covers it, as replay
requires; ``FakeRun(applied=False)`` records the lines exactly as given.

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
from dataclasses import dataclass, field, replace
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
    notes,
)
from bvisor.contract import landlock as landlock_facts
from bvisor.contract import mechanisms as mech
from bvisor.contract import seccomp as seccomp_labels
from bvisor.contract.lowering import Phase
from bvisor.contract.plan import BoundaryPlan
from bvisor.contract.profile import ProfileSnapshot
from bvisor.contract.report import BoundaryReportBody, BudgetWitness, seal_report
from bvisor.contract.transcript import HAPPY_PATH, state_of
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
    applied: bool = True  # insert the plan's applied-mechanism notes (applied_lines)


def _mechanism_notes(entry_id: str, params: Any, entry_ids: set[str]) -> list[str]:
    """The notes a launcher on a plausible host writes once ``entry_id`` is applied."""
    if entry_id == mech.USERNS.id:
        return [notes.userns_note(params.uid, params.gid)]
    if entry_id == mech.CGROUP_LEAF.id:
        placed = [notes.cgroup_placed_note("v2", 17)] if params.v2_base is not None else []
        placed += [
            notes.cgroup_placed_note("v1", 18 + i, name)
            for i, name in enumerate(sorted(dict(params.v1_bases)))
        ]
        hidden = [] if mech.ROOTFS.id in entry_ids else [notes.cgroupfs_hidden_note(["/sys"])]
        return placed + hidden
    if entry_id == mech.ROOTFS.id:
        shown = [notes.mount_shown(m) for m in params.mounts]
        return [notes.private_root_note(shown), notes.pivot_root_note(params.cwd)]
    if entry_id == mech.AMBIENT_SCRUB.id:
        kept = [0, 1, 2, *sorted(fd for fd in params.keep_fds if fd > 2)]
        return [
            notes.fds_kept_note(kept),
            notes.session_note(params.tty),
            notes.environment_note(len(params.env)),
        ]
    if entry_id == mech.LANDLOCK.id:
        rules = len(params.rules) + len(params.inside)
        abi = max(params.abi_floor, mech.LANDLOCK_ABI_FLOOR)
        handled = landlock_facts.fs_rights_for_abi(abi)
        return [notes.landlock_note(abi, rules, handled, landlock_facts.scope_bits(params.scope))]
    if entry_id == mech.SECCOMP.id:
        flags = [(name, getattr(params, name)) for name in mech.Seccomp.FIELDS]
        denied = seccomp_labels.expected_denials(dict(flags))
        return [notes.seccomp_note(flags, "x86_64", 100, denied)]
    return _plain_notes(entry_id, params)


def _plain_notes(entry_id: str, params: Any) -> list[str]:
    fixed = {
        mech.NETNS.id: [notes.NETNS_CREATED],
        mech.IPCNS.id: [notes.IPCNS_CREATED],
        mech.PIDNS.id: [notes.PIDNS_CREATED],
        mech.CAPS_DROP.id: [notes.CAPS_DROPPED],
        mech.NO_NEW_PRIVS.id: [notes.NO_NEW_PRIVS_SET],
    }
    if entry_id in fixed:
        return fixed[entry_id]
    if entry_id == mech.USER_LIMITS.id:
        return [notes.user_limits_note(params.share_percent, "inotify_instances=64 of 128")]
    if entry_id == mech.OOM_SCORE.id:
        return [notes.oom_note(params.score)]
    if entry_id == mech.LANDLOCK_SCOPE.id:
        return [notes.landlock_note(7, 0, 0, landlock_facts.scope_bits(params.scope))]
    if entry_id == mech.LANDLOCK_NET.id:
        return [notes.landlock_net_note(7, params.connect_ports)]
    if entry_id == mech.NETPROXY.id:
        return [notes.netproxy_note(params.port, len(params.allow))]
    if entry_id == mech.NETDNS.id:
        return [notes.netdns_note(params.port)]
    if entry_id == mech.UTSNS.id:
        return [notes.utsns_note(params.hostname, params.domainname)]
    return []


def _rules_v1_notes(entry_id: str, raw: Any) -> list[str]:
    """The notes of the rules-v1 entries later rules replaced (read from raw params)."""
    if entry_id == "linux.ambient.scrub.v1":
        kept = [0, 1, 2, *sorted(fd for fd in raw["keep_fds"] if fd > 2)]
        env = len(raw["env"])
        return [notes.fds_kept_note(kept), notes.session_note(False), notes.environment_note(env)]
    if entry_id == "linux.landlock.apply.v1":
        abi = max(raw["abi_floor"], mech.LANDLOCK_ABI_FLOOR)
        handled = landlock_facts.fs_rights_for_abi(abi)
        scoped = landlock_facts.scope_bits(raw["scope"])
        return [notes.landlock_note(abi, len(raw["rules"]), handled, scoped)]
    if entry_id == "linux.seccomp.apply.v1":
        flags = [(name, value) for name, value in raw.items() if isinstance(value, bool)]
        denied = seccomp_labels.expected_denials(dict(flags))
        return [notes.seccomp_note(flags, "x86_64", 100, denied)]
    return []


def applied_lines(plan: BoundaryPlan, lines: Sequence[str]) -> tuple[str, ...]:
    """``lines`` with each mechanism's notes after the phase state that covers it."""
    by_state: dict[str, list[str]] = {}
    entry_ids = {p.entry.id for p in plan.lowering}
    for primitive in plan.lowering:
        entry_id = primitive.entry.id
        if entry_id in mech.BY_ID:
            params = mech.params_of(entry_id, primitive.params)
            texts = _mechanism_notes(entry_id, params, entry_ids)
        else:
            texts = _rules_v1_notes(entry_id, primitive.params)
        policy = entry_id in (mech.SECCOMP.id, "linux.seccomp.apply.v1")
        state = state_of(Phase(primitive.entry.phase_code), policy=policy)
        by_state.setdefault(state, []).extend("# " + text for text in texts)
    result: list[str] = []
    for line in lines:
        result.append(line)
        result += by_state.pop(line, [])
    return tuple(result)


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
    if fake.applied:
        fake = replace(fake, lines=applied_lines(plan, fake.lines))
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
