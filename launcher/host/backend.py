"""The Linux backend: probe this kernel, and execute an admitted plan for real.

``execute`` owns the host half of a run: create the run cgroup (limits written before the
workload exists), assemble the launch body and its fds, start the launcher, enforce the
wall deadline with ``cgroup.kill``, and tear down — always, even when interrupted. It
returns an :class:`Execution` of raw facts; sealing the report and recording events is the
runner's job, so the backend stays testable without a ledger.

Outcome classification (the workload's *real* status, never a guess):

* launcher wrote ``SetupRefused``       -> Unsupported (nothing ran)
* launcher faulted / died before exec   -> SupervisorFault (nothing ran)
* host could not prepare (lease, paths) -> Denied (nothing ran)
* deadline passed and the tree was killed -> Timeout (the workload's exit code kept when it
  exited on its own just before the kill: a ``deadline_race`` fact says so); so is a run
  whose outputs walk the deadline stopped (``outputs_truncated limit:deadline``)
* killed by a signal                    -> Killed (signal recorded; the budget named when
  the kernel's own counters show the memory limit did it)
* exit code 0 / non-zero                -> Completed / Failed (code recorded)
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bvisor.contract import (
    Budget,
    BudgetDimension,
    ExitStatus,
    MinGuarantee,
    ObservedFact,
    Outcome,
)
from bvisor.contract import facts as fact_kinds
from bvisor.contract import mechanisms as mech
from bvisor.contract import notes as wire_notes
from bvisor.contract import outputs as outputs_grammar
from bvisor.contract.plan import BoundaryPlan
from bvisor.contract.profile import ProfileSnapshot
from bvisor.contract.report import BudgetWitness
from bvisor.contract.report_inputs import lowering_facts, mediated_finding, test_hook_finding
from bvisor.contract.transcript import NOTE_PREFIX, TERMINAL_STATES, split_lines
from bvisor.launcher.basement.cgroups import (
    CgroupError,
    RunCgroup,
    create_run_cgroup,
    leaf_name,
    reap_stale_leaves,
)
from bvisor.launcher.host import artifacts
from bvisor.launcher.host.capture import Captured
from bvisor.launcher.host.interrupts import interrupts_held, signal_of
from bvisor.launcher.host.launch import (
    LaunchObservation,
    LaunchOptions,
    LaunchRefused,
    run_launcher,
)
from bvisor.launcher.host.launch_body import LaunchPreparationError, prepare_launch
from bvisor.launcher.host.reach import covering_root
from bvisor.launcher.host.relay import HostStdio
from bvisor.launcher.host.secrets import NoSecrets, SecretResolver, SecretUnresolved
from bvisor.launcher.host.storage import (
    StorageSample,
    close_roots,
    open_roots,
    sample_open_roots,
)
from bvisor.launcher.host.terminal import Pty, is_terminal
from bvisor.launcher.wire.lowered import LoweredParams, LoweringParamsError, lowered_params

if TYPE_CHECKING:
    # Loaded when a plan has the allow list's proxy: most runs, `bvisor run -- CMD` among
    # them, do not.
    from bvisor.launcher.host.proxy import DecisionSink, ProxyResult, ProxySession

__all__ = ["DEFAULT_STREAM_CAP", "LINUX_BACKEND_ID", "Execution", "LinuxBackend"]

LINUX_BACKEND_ID = "linux"
DEFAULT_STREAM_CAP = 16 * 1024 * 1024
LineCallback = Callable[[str], None]
ChunkCallback = Callable[[bytes], None]


@dataclass
class Execution:
    """What happened, as raw facts for the runner to seal."""

    attempt_id: bytes
    outcome: Outcome
    exit: ExitStatus | None = None
    observed: list[ObservedFact] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)
    witnesses: list[BudgetWitness] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    # The kept bytes: a Captured (spilled to a temp file, digested as it came) from a real
    # run; plain bytes are accepted too (tests build executions by hand).
    stdout: bytes | Captured = b""
    stderr: bytes | Captured = b""
    stdout_total: int = 0
    stderr_total: int = 0
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    test_hooks: frozenset[str] = frozenset()
    network: ProxyResult | None = None  # the allow list's proxy, when the plan has one
    interrupted: bool = False  # a stop signal during the run: the tree was killed
    # The stop signal to re-raise once sealed: the one that interrupted the run, or one
    # that arrived during teardown of a run that had ended on its own.
    stop_signal: int | None = None
    artifacts: list[str] = field(default_factory=list)  # committed outputs (report grammar)

    def fact(self, kind: str, detail: str) -> None:
        self.observed.append(ObservedFact(kind=kind, detail=detail))


class LinuxBackend:
    """Confines with seccomp, Landlock, namespaces and cgroups through the launcher."""

    def __init__(
        self,
        launcher_path: str | os.PathLike[str] | None = None,
        *,
        dangerous_test_hooks: frozenset[str] = frozenset(),
    ) -> None:
        self._launcher_path = None if launcher_path is None else os.fspath(launcher_path)
        self._test_hooks = frozenset(dangerous_test_hooks)

    @classmethod
    def with_launcher_path(cls, path: str | os.PathLike[str]) -> LinuxBackend:
        return cls(path)

    @classmethod
    def dangerous_with_test_hooks(
        cls, path: str | os.PathLike[str] | None, hooks: frozenset[str]
    ) -> LinuxBackend:
        """A backend whose launcher skips mechanisms while reporting them: tests only.

        Every run it makes says so in its report (a ``test_hook_active`` fact and a finding),
        so a lying run can never pass for an honest one.
        """
        return cls(path, dangerous_test_hooks=hooks)

    def id(self) -> str:
        return LINUX_BACKEND_ID

    @property
    def launcher_path(self) -> str:
        if self._launcher_path is not None:
            return self._launcher_path
        from bvisor.launcher.host.locate import default_launcher_path

        return default_launcher_path()

    def probe(self) -> ProfileSnapshot:
        """This host's profile: probed, or cached while nothing that shaped it has changed."""
        from bvisor.launcher.host.profile_cache import cached_linux_profile

        return cached_linux_profile(self.launcher_path)

    # ------------------------------------------------------------------------------------
    def execute(
        self,
        plan: BoundaryPlan,
        *,
        attempt_id: bytes | None = None,
        secrets: SecretResolver | None = None,
        on_control_line: LineCallback | None = None,
        on_stdout: ChunkCallback | None = None,
        on_stderr: ChunkCallback | None = None,
        stdin_fd: int | None = None,
        stream_cap: int | None = None,
        on_finished: Callable[[Execution], None] | None = None,
        stdio: HostStdio | None = None,
        artifact_dir: str | os.PathLike[str] | None = None,
        on_network_decision: DecisionSink | None = None,
        before_child: Callable[[], None] | None = None,
    ) -> Execution:
        """Run ``plan`` for real. Never raises for a run that went wrong: it says so.

        ``on_finished`` (the runner's seal-and-record) runs right after teardown inside the
        same held-signal block, so no stop signal can land between the two.

        ``before_child`` (the runner's record of the plan) is called exactly once, before
        any child of the run exists and before ``on_finished``: while the launcher
        verifies the plan (``LaunchOptions.before_child``), or — a run that ends before
        its launcher starts, or that commits its outputs (their staging directory outlives
        the process) — before that. If it raises, the run is torn down, nothing is sealed
        and its exception propagates.

        Standard input: when the plan lets the workload read stdin, the bytes of
        ``stdio.stdin`` (or ``stdin_fd``) are relayed into its stdin pipe — the caller's fd
        itself never reaches it — except a terminal, which is never relayed without a pty
        of the run's own (``stdio.tty``): the workload then reads empty input, and a
        ``stdin_source`` fact says why.

        ``artifact_dir``: where a plan that commits its outputs puts them (default:
        :func:`bvisor.launcher.host.artifacts.default_artifacts_path`).
        ``on_network_decision`` gets each decision of the allow list's proxy as it is made.
        """
        attempt = attempt_id if attempt_id is not None else os.urandom(32)
        run = Execution(attempt_id=attempt, outcome=Outcome.SUPERVISOR_FAULT)
        run.test_hooks = self._test_hooks
        for hook in sorted(self._test_hooks):
            run.fact(fact_kinds.TEST_HOOK_ACTIVE, hook)
            run.findings.append(test_hook_finding(hook))
        record = _Once(before_child)

        def finished(execution: Execution) -> None:
            record()  # the plan first, if the launcher never got to its gate
            if on_finished is not None:
                on_finished(execution)

        try:
            lowered = lowered_params(plan)
        except LoweringParamsError as exc:
            run.fact(fact_kinds.LOWERING_PARAMS_INVALID, str(exc))
            _transcript_facts(run)
            _settle(run, finished)
            return run
        run.observed.extend(lowering_facts(plan))

        def take_line(line: str) -> None:
            # The transcript is kept here, the one copy the report and the ledger both use;
            # on_control_line only shows progress.
            run.lines.append(line)
            if on_control_line is not None:
                on_control_line(line)

        streams = lowered.streams
        host = stdio or HostStdio(stdin=stdin_fd)
        mismatch = _terminal_mismatch(lowered.tty, host.tty is not None)
        if mismatch is not None:
            # The plan's root and session are built for a terminal or for none: a pty the
            # plan does not name has no /dev/pts behind it, and a plan's terminal no pty.
            run.outcome = Outcome.DENIED
            run.fact(fact_kinds.LAUNCH_REFUSED_BY_HOST, mismatch)
            _transcript_facts(run)
            _settle(run, finished)
            return run
        source, tty = _stdin_source(run, host, streams is not None and streams.stdin)
        options = LaunchOptions(
            stdin_source=source,
            tty=tty,
            stdout_outlet=host.stdout,
            stderr_outlet=None if tty is not None else host.stderr,
            expected_identity=plan.profile.facts.launcher_identity,
            stream_cap=stream_cap or (streams.cap_bytes if streams else DEFAULT_STREAM_CAP),
            on_stdout=on_stdout,
            on_stderr=on_stderr,
            on_control_line=take_line,
            before_child=record if before_child is not None else None,
        )
        cgroup: RunCgroup | None = None
        staging: artifacts.Staging | None = None
        started = time.monotonic()
        observation: LaunchObservation | None = None
        storage = _StorageWatch(plan, lowered)
        proxies: list[ProxySession] = []
        try:
            if lowered.commits:
                record()
                staging = _prepare_staging(run, lowered, artifact_dir)
                if staging is None:
                    return run
            if lowered.cgroup is not None:
                cgroup = _prepare_cgroup(run, attempt, lowered)
                if cgroup is None:
                    return run
            storage.before()
            observation = self._launch(
                run,
                plan,
                lowered,
                secrets,
                cgroup,
                options,
                started,
                staging,
                (proxies, on_network_decision),
            )
        except KeyboardInterrupt as stop:
            # Not re-raised here: the runner seals and records first, then re-raises.
            run.interrupted = True
            run.stop_signal = signal_of(stop)
        finally:
            # A plan that could not be recorded raises out of here, after the teardown.
            _settle(
                run,
                finished,
                lambda: _finish(
                    run, plan, observation, cgroup, started, lowered, storage, staging, proxies
                ),
            )
        return run

    def _launch(
        self,
        run: Execution,
        plan: BoundaryPlan,
        lowered: LoweredParams,
        secrets: SecretResolver | None,
        cgroup: RunCgroup | None,
        options: LaunchOptions,
        started: float,
        staging: artifacts.Staging | None,
        proxy: tuple[list[ProxySession], DecisionSink | None],
    ) -> LaunchObservation | None:
        try:
            prepared = prepare_launch(
                plan,
                lowered,
                run.attempt_id,
                secrets or NoSecrets(),
                cgroup,
                self._test_hooks,
                None if staging is None else staging.open_for_launch(),
            )
        except (LaunchPreparationError, SecretUnresolved, OSError) as exc:
            run.outcome = Outcome.DENIED
            run.fact(fact_kinds.LAUNCH_REFUSED_BY_HOST, str(exc))
            return None
        if prepared.netproxy_channel is not None and lowered.netproxy is not None:
            from bvisor.launcher.host.proxy import ProxySession

            session = ProxySession(
                prepared.netproxy_channel,
                lowered.netproxy,
                lowered.network_budget,
                proxy[1],
                resolver=lowered.netdns,
                allow_all="proxy_allow_all" in self._test_hooks,
            )
            session.start()  # stopped in the run's teardown, whatever happens
            proxy[0].append(session)
        for path in prepared.skipped_paths:
            run.fact("filesystem_root_absent", path)
        if prepared.granted_paths:
            run.fact(fact_kinds.FILESYSTEM_CONFINED, ", ".join(prepared.granted_paths))
        if lowered.wall_micros is not None:
            deadline = started + lowered.wall_micros / 1_000_000
            on_deadline = None if cgroup is None else _tree_killer(cgroup)
            if on_deadline is None and lowered.pidns:
                on_deadline = _init_killer(run)
            options = dataclasses.replace(options, deadline=deadline, on_deadline=on_deadline)
        if cgroup is not None:
            # When the launcher exits, whatever the workload left behind dies with the run.
            options = dataclasses.replace(options, on_launcher_exit=_tree_killer(cgroup))
            cgroup.start_sampler()
        try:
            return run_launcher(
                self.launcher_path, prepared.plan, prepared.authority, options=options
            )
        except LaunchRefused as exc:
            run.outcome = Outcome.DENIED
            run.fact(fact_kinds.LAUNCH_REFUSED_BY_HOST, str(exc))
            return None
        except OSError as exc:
            # The launcher could not be found or started: nothing ran; seal that, don't raise.
            run.outcome = Outcome.SUPERVISOR_FAULT
            run.fact(fact_kinds.LAUNCHER_START_FAILED, str(exc))
            return None
        finally:
            prepared.close()


class _Once:
    """``callback`` called at most once; a second call repeats its exception, if it raised
    one, and does nothing otherwise (the plan is recorded once, or the run goes no further).
    """

    def __init__(self, callback: Callable[[], None] | None) -> None:
        self._callback = callback
        self._done = False
        self._failed: BaseException | None = None

    def __call__(self) -> None:
        if self._failed is not None:
            raise self._failed
        if self._done or self._callback is None:
            return
        self._done = True
        try:
            self._callback()
        except BaseException as exc:
            self._failed = exc
            raise


def _init_killer(run: Execution) -> Callable[[], None]:
    """The deadline of a run without a cgroup: kill the PID namespace's init (the kernel then
    kills the whole namespace at once) and let the launcher report it. Killing the launcher
    instead would end the tree too, but leave the workload's status unreported."""

    def kill() -> None:
        for line in run.lines:
            pid = wire_notes.init_pid(line.removeprefix(NOTE_PREFIX))
            if line.startswith(NOTE_PREFIX) and pid is not None:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
                return

    return kill


def _terminal_mismatch(planned: bool, lent: bool) -> str | None:
    if planned and not lent:
        return (
            "the plan gives the workload a terminal (capture_streams tty), but the caller "
            "lent no pty (bvisor run --tty; API: HostStdio(tty=...))"
        )
    if lent and not planned:
        return (
            "the caller lent a pty, but the plan gives the workload no terminal "
            "(capture_streams tty = true; bvisor run --tty sets it)"
        )
    return None


def _stdin_source(run: Execution, host: HostStdio, wanted: bool) -> tuple[int | None, Pty | None]:
    """What the workload's stdin will be, said in a ``stdin_source`` fact."""
    if host.tty is not None:
        if not wanted:
            run.fact(fact_kinds.STDIN_SOURCE, "a pty of the run's own; the spec reads no stdin")
            return None, host.tty
        run.fact(
            fact_kinds.STDIN_SOURCE, "a pty of the run's own, relayed from the caller's terminal"
        )
        return host.stdin, host.tty
    if not wanted:
        run.fact(fact_kinds.STDIN_SOURCE, "empty: the spec does not read stdin")
        return None, None
    if host.stdin is None:
        run.fact(fact_kinds.STDIN_SOURCE, "empty: the caller gave no stdin")
        return None, None
    if is_terminal(host.stdin):
        run.fact(
            fact_kinds.STDIN_SOURCE,
            "empty: the caller's stdin is a terminal, which never reaches a workload "
            "(interactive use lends a pty of the run's own: --tty)",
        )
        return None, None
    run.fact(fact_kinds.STDIN_SOURCE, "relayed through a pipe from the caller's stdin")
    return host.stdin, None


def _settle(
    run: Execution,
    on_finished: Callable[[Execution], None] | None,
    teardown: Callable[[], None] = lambda: None,
) -> None:
    """Teardown, classification and sealing run whole: a stop signal waits for them.

    One that arrives meanwhile is kept as ``run.stop_signal`` (unless the run was already
    stopped by one) for the runner to raise once the record is safe.
    """
    with interrupts_held(redeliver=False) as held:
        teardown()
        if on_finished is not None:
            on_finished(run)
    if run.stop_signal is None:
        run.stop_signal = held.signum


def _prepare_staging(
    run: Execution, lowered: LoweredParams, where: str | os.PathLike[str] | None
) -> artifacts.Staging | None:
    """The run's artifact staging directory; None (the run denied, saying why) if it
    cannot be made."""
    outputs = lowered.outputs
    assert outputs is not None
    root = artifacts.default_artifacts_path() if where is None else where
    try:
        staging = artifacts.open_staging(root, run.attempt_id, outputs.commit == "synced")
    except artifacts.ArtifactsError as exc:
        run.outcome = Outcome.DENIED
        run.fact(fact_kinds.LAUNCH_REFUSED_BY_HOST, str(exc))
        return None
    # The caller judged the directory by its name; this judges the directory opened (by
    # its fd), so a name re-pointed in between cannot put the artifacts in reach.
    opened = os.readlink(f"/proc/self/fd/{staging.root_fd}")
    covering = covering_root(opened, lowered)
    if covering is not None:
        staging.abandon()
        staging.close()
        run.outcome = Outcome.DENIED
        run.fact(
            fact_kinds.LAUNCH_REFUSED_BY_HOST,
            f"the artifact directory opened, {opened}, lies in the filesystem root {covering}, "
            "which the workload can reach (its name was re-pointed after it was checked)",
        )
        return None
    return staging


def _record_outputs(run: Execution, staging: artifacts.Staging | None) -> None:
    """The launcher's outputs notes as facts; the commit made (or abandoned) and said."""
    _, notes = split_lines(run.lines)
    outcome = artifacts.outputs_outcome(notes, staging)
    run.observed.extend(outcome.facts)
    run.artifacts = list(outcome.artifacts)


def _tree_killer(cgroup: RunCgroup) -> Callable[[], None]:
    def kill() -> None:
        cgroup.kill()

    return kill


class _StorageWatch:
    """The writable roots' allocated bytes before and after, when storage is budgeted."""

    def __init__(self, plan: BoundaryPlan, lowered: LoweredParams) -> None:
        wanted = plan.spec.budgets.get(BudgetDimension.STORAGE_BYTES) is not None
        self.roots = list(lowered.writable_paths())
        self.wanted = wanted
        self.start: StorageSample | None = None
        self.fds: list[int] = []  # the roots, opened before the run: both samples use them

    def before(self) -> None:
        if self.wanted and self.roots:
            self.fds, why = open_roots(self.roots)
            self.start = StorageSample(None, why) if why else sample_open_roots(self.fds)

    def witness(self) -> tuple[int | None, str]:
        if not self.wanted:
            return None, "not witnessed: no storage budget was asked"
        if not self.roots:
            return None, "unavailable: the spec grants no write root to measure"
        if self.start is None:
            return None, "unavailable: the run ended before its roots were measured"
        try:
            end = sample_open_roots(self.fds)
        finally:
            close_roots(self.fds)
            self.fds = []
        why = self.start.why_not or end.why_not
        if self.start.allocated is None or end.allocated is None:
            return None, f"unavailable: {why}"
        return (
            max(end.allocated - self.start.allocated, 0),
            "growth of the bytes allocated under the write roots (net, measured before and "
            "after the run)",
        )


def _finish(
    run: Execution,
    plan: BoundaryPlan,
    observation: LaunchObservation | None,
    cgroup: RunCgroup | None,
    started: float,
    lowered: LoweredParams,
    storage: _StorageWatch,
    staging: artifacts.Staging | None = None,
    proxies: list[ProxySession] | None = None,
) -> None:
    """Teardown (always), then classify and witness what happened."""
    # Wall time runs until the launcher was seen gone (the watchdog notes the moment),
    # not until the streams are drained and the cgroup removed.
    ended = observation.launcher_exited_at if observation is not None else None
    # Recording the plan while the launcher waited at its gate is not the run's time.
    recorded = observation.recorded_for if observation is not None else 0.0
    wall_micros = int(((ended or time.monotonic()) - started - recorded) * 1_000_000)
    for session in proxies or []:
        run.network = session.stop()
    usage = _CgroupUsage()
    if cgroup is not None:
        kernel_peak = cgroup.kernel_peak_pids()
        peak, memory = cgroup.peak_pids(), cgroup.peak_memory()
        refusals, kills = cgroup.pids_max_events(), cgroup.oom_kills()
        for problem in cgroup.teardown():  # reads cpu.stat once every task is gone
            run.fact("cgroup_teardown_incomplete", problem)
        usage = _CgroupUsage(
            peak,
            memory,
            refusals,
            kills,
            in_cgroup=True,
            kernel_peak=kernel_peak is not None,
            cpu_usec=cgroup.final_cpu_usec,
        )
    if observation is not None:
        _absorb_observation(run, observation)
        _classify(run, observation, usage.oom_kills)
    elif not run.interrupted:
        # Denied by the host or never started: the report still says how far the launcher
        # got (nowhere: terminal "none"), as every report does.
        _transcript_facts(run)
    if run.interrupted:
        _record_interruption(run)
    if staging is not None or any(e.entry.id == mech.OUTPUTS.id for e in plan.lowering):
        try:
            _record_outputs(run, staging)
        finally:
            if staging is not None:
                staging.close()
    if run.network is not None:
        from bvisor.launcher.host.proxy.facts import network_facts

        facts, findings = network_facts(run.network, plan.spec.budgets)
        run.observed.extend(facts)
        run.findings.extend(findings)
    no_tasks = lowered.seccomp is not None and lowered.seccomp.deny_new_tasks
    _witness_budgets(run, plan, observation, wall_micros, usage, no_tasks, storage.witness())


# Dimensions whose cap the kernel enforces as a hard ceiling (a peak can never pass it).
_KERNEL_CAPPED = frozenset({BudgetDimension.PROCESS_COUNT, BudgetDimension.RESIDENT_BYTES})


@dataclass(frozen=True)
class _CgroupUsage:
    """What the kernel's cgroup counters said just before teardown."""

    peak_pids: int | None = None
    peak_memory: int | None = None
    pids_refusals: int = 0
    oom_kills: int = 0
    in_cgroup: bool = False
    kernel_peak: bool = False  # the pids peak is the kernel's (pids.peak), not sampled
    cpu_usec: int | None = None  # v2 cpu.stat usage_usec after the last task died


def _prepare_cgroup(run: Execution, attempt: bytes, lowered: LoweredParams) -> RunCgroup | None:
    assert lowered.cgroup is not None
    bases = [base for _, base in lowered.cgroup.v1_bases]
    if lowered.cgroup.v2_base is not None:
        bases.append(lowered.cgroup.v2_base)
    for line in reap_stale_leaves(bases):
        run.fact("cgroup_stale_leaf_reaped", line)
    name = leaf_name(attempt)
    try:
        cgroup = create_run_cgroup(
            name,
            lowered.cgroup.v2_base,
            dict(lowered.cgroup.v1_bases),
            pids_limit=None if lowered.pids is None else lowered.pids.limit,
            pids_hierarchy=None if lowered.pids is None else lowered.pids.hierarchy,
            memory_limit=None if lowered.memory is None else lowered.memory.limit,
            memory_hierarchy=None if lowered.memory is None else lowered.memory.hierarchy,
        )
    except CgroupError as exc:
        run.outcome = Outcome.SUPERVISOR_FAULT
        run.fact(fact_kinds.CGROUP_PREPARE_FAILED, str(exc))
        return None
    leaves = [str(cgroup.v2_leaf)] if cgroup.v2_leaf else []
    leaves += [str(path) for _, path in sorted(cgroup.v1_leaves.items())]
    run.fact("cgroup_leaf_prepared", ", ".join(leaves))
    if cgroup.pids_limit is not None:
        run.fact(
            "budget_applied",
            f"process_count pids.max={cgroup.pids_limit} ({cgroup.pids_hierarchy})",
        )
    if cgroup.memory_limit is not None:
        run.fact(
            "budget_applied",
            f"resident_bytes memory limit={cgroup.memory_limit} ({cgroup.memory_hierarchy})",
        )
    return cgroup


def _transcript_facts(run: Execution, workload_pid: int | None = None) -> None:
    """The launcher's notes and its terminal, from the transcript as it arrived."""
    states, notes = split_lines(run.lines)
    for note in notes:
        run.fact(fact_kinds.LAUNCHER_NOTE, note)
    if workload_pid is not None:
        run.fact(fact_kinds.WORKLOAD_LAUNCHED, f"pid={workload_pid}")
    terminal = next((state for state in states if state in TERMINAL_STATES), None)
    run.fact(fact_kinds.LAUNCHER_TERMINAL, terminal or "none")


def _record_interruption(run: Execution) -> None:
    """An interrupted host: the tree was killed; say what the transcript had reached."""
    _transcript_facts(run)
    name = signal.Signals(run.stop_signal or signal.SIGINT).name
    run.fact(
        fact_kinds.HOST_INTERRUPTED, f"the host was interrupted ({name}); the run tree was killed"
    )
    run.outcome = Outcome.KILLED
    run.exit = None


def _absorb_observation(run: Execution, obs: LaunchObservation) -> None:
    # run.lines already holds the transcript: take_line kept every line as it arrived.
    run.stdout, run.stderr = obs.stdout_capture, obs.stderr_capture
    run.stdout_total, run.stderr_total = obs.stdout_total, obs.stderr_total
    run.stdout_truncated, run.stderr_truncated = obs.stdout_truncated, obs.stderr_truncated
    run.fact(fact_kinds.LAUNCHER_IDENTITY, obs.launcher_identity)
    _transcript_facts(run, obs.workload_pid)
    for name, total, truncated in (
        ("stdout", obs.stdout_total, obs.stdout_truncated),
        ("stderr", obs.stderr_total, obs.stderr_truncated),
    ):
        run.fact(fact_kinds.STREAM_CAPTURED, f"{name} bytes={total}")
        if truncated:
            run.fact(
                "stream_truncated", f"{name}: kept the first bytes up to the cap of {total} written"
            )
    _relay_facts(run, obs)


def _relay_facts(run: Execution, obs: LaunchObservation) -> None:
    """What the relay to and from the caller could not do, said plainly."""
    relay = obs.relay
    if relay.stdin_relayed:
        run.fact("stdin_relayed", f"bytes={relay.stdin_relayed}")
    if relay.stdin_left:
        run.fact("stdin_relay_stopped", relay.stdin_left)
    for name, dropped, broken in (
        ("stdout", relay.stdout_dropped, relay.stdout_broken),
        ("stderr", relay.stderr_dropped, relay.stderr_broken),
    ):
        if dropped or broken:
            why = f" ({broken})" if broken else " (the reader did not take them in time)"
            if broken is not None:
                why = f" ({broken}: writing to the caller failed, so the run's end was closed too)"
            run.fact(
                "stream_relay_incomplete",
                f"{name}: {dropped} bytes were captured but not delivered to the caller{why}",
            )


def _classify(run: Execution, obs: LaunchObservation, oom_kills: int) -> None:
    if obs.terminal == "SetupRefused":
        run.outcome = Outcome.UNSUPPORTED
        return
    if not obs.exec_succeeded():
        run.outcome = Outcome.SUPERVISOR_FAULT
        return
    if obs.workload_exit_signal is not None:
        run.exit = ExitStatus(code=None, signal=obs.workload_exit_signal)
    elif obs.workload_exit_code is not None:
        run.exit = ExitStatus(code=obs.workload_exit_code, signal=None)
    else:
        run.outcome = Outcome.SUPERVISOR_FAULT
        run.fact(
            fact_kinds.WORKLOAD_STATUS_UNKNOWN, "the launcher did not report the workload's status"
        )
        return
    walk_cut = outputs_grammar.reached_deadline(obs.notes)
    # The launcher notes the exit before its after-workload steps and the rusage after
    # them: without the rusage past the deadline, the grace's kill cut those steps short.
    killed_after = obs.deadline_hit and not obs.workload_rusage
    if obs.deadline_hit or walk_cut:
        _timed_out(run, "walk" if walk_cut else "killed" if killed_after else None)
    elif run.exit.signal is not None:
        run.outcome = Outcome.KILLED
        if oom_kills:
            run.fact(
                fact_kinds.BUDGET_EXCEEDED,
                f"resident_bytes: the kernel OOM-killed {oom_kills} task(s)",
            )
    elif run.exit.code == 0:
        run.outcome = Outcome.COMPLETED
    else:
        run.outcome = Outcome.FAILED


def _timed_out(run: Execution, cut: str | None) -> None:
    """The run outlived its wall deadline: a timeout, whatever the workload's status.

    ``cut``: the deadline came after the workload exited, while the launcher still
    finished the run — ``walk``: its outputs walk stopped there; ``killed``: a step of it
    (an outputs walk blocked in one fsync) outlived the grace, and the launcher was
    killed. Either way the run's work was not done (never ``completed`` with its listing
    cut short) and nothing was committed."""
    assert run.exit is not None
    run.outcome = Outcome.TIMEOUT
    if cut == "walk":
        run.fact(
            fact_kinds.BUDGET_EXCEEDED,
            "wall_micros: deadline passed while the launcher listed the run's outputs; "
            "the listing stopped there and nothing was committed",
        )
    elif cut == "killed":
        run.fact(
            fact_kinds.BUDGET_EXCEEDED,
            "wall_micros: deadline passed while the launcher finished the run after the "
            "workload exited (its outputs walk); it was killed when the grace ran out, and "
            "nothing was committed",
        )
    else:
        run.fact(fact_kinds.BUDGET_EXCEEDED, "wall_micros: deadline passed; run tree killed")
    if run.exit.code is None:
        return
    # The deadline is the launcher's: the workload exited on its own in the last moments,
    # before the kill (its code is real), or before the launcher's work after it was done,
    # but the run was still going.
    code = run.exit.code
    race = (
        f"the workload exited with code {code} before the deadline, which passed while the "
        "launcher " + ("listed its outputs" if cut == "walk" else "finished the run")
        if cut is not None
        else f"the workload exited with code {code} as the deadline passed, before the kill "
        "reached it"
    )
    run.fact("deadline_race", race)


def _witness_budgets(
    run: Execution,
    plan: BoundaryPlan,
    obs: LaunchObservation | None,
    wall_micros: int,
    usage: _CgroupUsage,
    no_new_tasks: bool,
    storage: tuple[int | None, str],
) -> None:
    """One witness per dimension: the kernel's own count where it keeps one; where the
    host cannot see everything, ``observed`` is None and the source says *unavailable*
    (a partial count would read as a low one)."""
    ran = obs is not None and obs.exec_succeeded()
    # The PID namespace's init is a task of the leaf too, and not the workload's.
    with_init = any(p.entry.id == mech.PIDNS.id for p in plan.lowering)
    pids_refusals, oom_kills = usage.pids_refusals, usage.oom_kills
    rusage = obs.workload_rusage if obs is not None else {}
    cpu, cpu_source = _cpu_witness(usage, rusage, no_new_tasks)
    resident = usage.peak_memory
    resident_source = "cgroup memory peak"
    if resident is None and "maxrss_kb" in rusage:
        # maxrss is no bound of what the run held: memory in files (a memfd, the private
        # /tmp and /dev/shm) is in no resident set, and descendants running side by side
        # are not summed. Only the memory controller charges all of it.
        seen = int(rusage["maxrss_kb"]) * 1024
        resident_source = (
            f"unavailable: no cgroup memory peak; the workload's rusage maxrss ({seen}) sees "
            "neither memory held in files (memfd, tmpfs, /dev/shm) nor descendants side by side"
        )
    elif resident is None:
        resident_source = "unavailable: no cgroup memory peak and no rusage reported"
    peak_pids, pids_source = _pids_witness(usage, ran, with_init)
    if usage.peak_pids is not None:
        run.fact("process_count_witnessed", f"peak={usage.peak_pids} refused_forks={pids_refusals}")
    observed: dict[BudgetDimension, tuple[int | None, str]] = {
        BudgetDimension.WALL_MICROS: (wall_micros, "host monotonic clock"),
        BudgetDimension.CPU_MICROS: (cpu, cpu_source),
        BudgetDimension.RESIDENT_BYTES: (resident, resident_source),
        BudgetDimension.PROCESS_COUNT: (peak_pids, pids_source),
        BudgetDimension.HANDLE_COUNT: (None, "not witnessed by this backend"),
        BudgetDimension.STORAGE_BYTES: storage,
        BudgetDimension.NETWORK_BYTES: _network_witness(run),
    }
    # Every dimension the host could observe is witnessed, asked for or not (usage is
    # evidence); an asked-for dimension is witnessed even when nothing could be observed.
    for dimension in BudgetDimension:
        budget = plan.spec.budgets.get(dimension)
        value, source = observed[dimension]
        if budget is None and value is None:
            continue
        exceeded = budget is not None and value is not None and value > budget.limit
        if budget is not None and dimension is BudgetDimension.RESIDENT_BYTES and oom_kills:
            exceeded = True
        run.witnesses.append(
            BudgetWitness(
                dimension=dimension,
                limit=None if budget is None else budget.limit,
                guarantee="unrequested" if budget is None else _guarantee_text(budget),
                observed=value,
                exceeded=exceeded,
                source=source,
            )
        )
        if (
            budget is not None
            and budget.guarantee is MinGuarantee.MEDIATED
            and dimension in _KERNEL_CAPPED
        ):
            # A limit the kernel could cap elsewhere, asked only Mediated here (the default
            # spec on a host without the controller): say plainly it was not enforced.
            run.fact(
                "budget_not_enforced",
                f"{dimension.value}: limit {budget.limit} witnessed, not capped",
            )
        if exceeded and budget is not None and budget.guarantee is MinGuarantee.MEDIATED:
            run.findings.append(mediated_finding(dimension.value, value, budget.limit))
        elif (
            budget is not None
            and budget.guarantee is MinGuarantee.ENFORCED
            and dimension in _KERNEL_CAPPED
            and value is not None
            and value > budget.limit
        ):
            # The kernel caps these: a peak above the cap means the mechanism did not hold.
            run.findings.append(
                f"ENFORCED budget {dimension.value} breached: observed {value} > limit "
                f"{budget.limit} — the kernel mechanism did not hold"
            )


def _cpu_witness(
    usage: _CgroupUsage, rusage: dict[str, int], no_new_tasks: bool
) -> tuple[int | None, str]:
    if usage.cpu_usec is not None:
        return usage.cpu_usec, "cgroup v2 cpu.stat usage_usec (every task of the run)"
    if "utime_us" in rusage and no_new_tasks:
        cpu = int(rusage["utime_us"]) + int(rusage.get("stime_us", 0))
        return cpu, "rusage utime+stime (the workload could create no other task)"
    if "utime_us" in rusage:
        return None, (
            "unavailable: no cgroup v2 leaf to count descendants the workload never waited "
            "for (its own rusage alone would read low)"
        )
    return None, "unavailable: the workload's usage was not reported"


def _pids_witness(usage: _CgroupUsage, ran: bool, with_init: bool) -> tuple[int | None, str]:
    counted = usage.peak_pids
    if counted is not None and with_init:
        counted = max(counted - 1, 0)  # init, pid 1 of the run's PID namespace, is bvisor's
    if usage.kernel_peak and counted is not None:
        peak = max(counted, 1) if ran else counted
        source = "kernel pids.peak of the run's leaf (tasks, threads included"
        return peak, source + (", less the PID namespace's init)" if with_init else ")")
    if usage.in_cgroup:
        seen = max(counted or 0, 1 if ran else 0)
        return None, (
            "unavailable: no kernel pids.peak for the run's leaf; sampling its tasks every "
            f"10 ms saw at least {seen} (a sample can miss a burst)"
        )
    return None, "unavailable: the run has no cgroup to count its tasks in"


def _network_witness(run: Execution) -> tuple[int | None, str]:
    if run.network is not None:
        from bvisor.launcher.host.proxy.facts import PROXY_BYTES_SOURCE

        return run.network.total_bytes, PROXY_BYTES_SOURCE
    if any(f.kind == "network_lowered" for f in run.observed):
        return 0, "empty network namespace"
    return None, "not witnessed by this backend"


def _guarantee_text(budget: Budget) -> str:
    return budget.guarantee.value
