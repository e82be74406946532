"""The runner: execute an admitted plan, seal the report, and record every step.

Recording order is the evidence grammar replay checks (DESIGN.md §6/§7):

    commit 1, durable before the run's first child is created:
    plan.admitted
    lowering.entry  x N      one per schedule entry, with its parameters
    commit 2, at the end:
    launcher.phase  x M      one per control-channel line
    network.decision x D     one per connection the allow list's proxy judged, in order
    run.terminal             outcome, exit status, budget witnesses
    run.denied      x D      one per denied-attempt entry of the report (none for most runs)
    run.streams     x K      captured bytes in chunks (so stream digests can be re-checked)
    report.sealed            body + seal, durable before ``run`` returns

Two durable commits per run, whatever the run does: a commit costs an fsync (15 ms at
best, over 100 ms under disk contention), and one per launcher line made recording the
largest part of a short run. The first is written while the launcher verifies the plan
and assembles the child's program, which waits at its gate for the record
(:mod:`bvisor.launcher.wire.channel`): the workload still never starts before its plan is
durable, and the first commit no longer adds its fsync to the run. The launcher's lines
are kept in memory until the report is sealed and then written with it in one transaction.
What a host crash mid-run leaves is therefore an *incomplete run*: its ``plan.admitted``
and lowering entries and nothing else (replay names it incomplete) — never a damaged
ledger, because each commit is one LMDB transaction. The lines lost with the crash are
the launcher's own account of a run that never reached a report; nothing sealed is ever
lost.

The sink is anything with ``append(kind, payload, run_id)`` and ``append_many(items)`` —
the ledger in production — so this module never imports the ledger (the dependency rules
keep ``ledger`` ignorant of launchers, and the launcher need not know storage).
A secret lease value never reaches a payload: the environment table with resolved values
lives only in the sealed launch memfd.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

from bvisor import canonical
from bvisor.contract import BoundarySpec, Outcome, denials, events
from bvisor.contract.plan import BoundaryPlan
from bvisor.contract.profile import ProfileSnapshot
from bvisor.contract.report import (
    REPORT_SCHEMA_VERSION,
    BoundaryReportBody,
    SealedReport,
    StreamRecord,
    seal_report,
)
from bvisor.contract.report_inputs import admitted_requirements, profile_label
from bvisor.contract.rerun import RerunLink
from bvisor.contract.transcript import split_lines
from bvisor.launcher.host.artifacts import default_artifacts_path
from bvisor.launcher.host.backend import Execution, LinuxBackend
from bvisor.launcher.host.capture import Captured, as_captured
from bvisor.launcher.host.interrupts import interrupt_for
from bvisor.launcher.host.reach import (
    refuse_if_artifacts_reachable,
    refuse_if_code_reachable,
    refuse_if_plan_reaches,
)
from bvisor.launcher.host.relay import HostStdio
from bvisor.launcher.host.secrets import SecretResolver
from bvisor.planner.errors import PlanRefusal
from bvisor.planner.registry import BackendRegistry
from bvisor.planner.rules import CURRENT

__all__ = ["STREAM_CHUNK_BYTES", "BoundaryRunner", "EventSink", "build_report_body"]

STREAM_CHUNK_BYTES = 1024 * 1024


class EventSink(Protocol):
    def append(self, kind: str, payload: Any, run_id: bytes | None = None) -> object: ...

    def append_many(self, items: Iterable[tuple[str, Any, bytes | None]]) -> object: ...


def refused_payload(
    spec: BoundarySpec, profile: ProfileSnapshot, refusal: PlanRefusal, attempt_id: bytes
) -> dict[str, canonical.Value]:
    """The ``plan.refused`` payload: enough for replay to re-derive the same refusal.

    Plans are always made with the newest rules, so that is the version a refusal names.
    """
    return events.refused_payload(spec, profile, refusal.to_value(), CURRENT.version, attempt_id)


def lowering_payloads(plan: BoundaryPlan) -> list[dict[str, canonical.Value]]:
    return [
        events.lowering_payload(index, primitive.entry.to_value(), primitive.params)
        for index, primitive in enumerate(plan.lowering)
    ]


def stream_chunks(
    name: str, data: bytes | Captured, total: int, truncated: bool
) -> list[dict[str, canonical.Value]]:
    """Split captured bytes into ledger-sized chunks; always at least one (final) chunk."""
    return list(iter_stream_chunks(name, as_captured(data), total, truncated))


def iter_stream_chunks(
    name: str, captured: Captured, total: int, truncated: bool
) -> Iterator[dict[str, canonical.Value]]:
    """The chunks one at a time, read back from the capture as they are asked for.

    The ledger encodes each payload as it takes it, so the raw bytes of a large capture
    are never all in the host's memory at once.
    """
    count = max(1, -(-captured.length // STREAM_CHUNK_BYTES))
    pieces = captured.pieces(STREAM_CHUNK_BYTES)
    for position in range(count):
        yield events.stream_payload(
            name,
            position * STREAM_CHUNK_BYTES,
            next(pieces, b""),
            final=position == count - 1,
            total=total,
            truncated=truncated,
        )


def terminal_payload(run: Execution) -> dict[str, canonical.Value]:
    return events.terminal_payload(run.outcome, run.exit, run.witnesses)


def build_report_body(plan: BoundaryPlan, run: Execution) -> BoundaryReportBody:
    """The report body: pure function of the plan and what the execution observed.

    The denied attempts (and the findings about them) are what the launcher's notes say
    (:func:`bvisor.contract.denials.derive`), which replay re-derives the same way.
    """
    evidence = denials.derive(split_lines(run.lines)[1])
    streams = tuple(
        StreamRecord(
            name=name,
            length=total,
            captured=as_captured(data).length,
            digest=as_captured(data).digest,
            truncated=truncated,
        )
        for name, data, total, truncated in (
            ("stdout", run.stdout, run.stdout_total, run.stdout_truncated),
            ("stderr", run.stderr, run.stderr_total, run.stderr_truncated),
        )
    )
    return BoundaryReportBody(
        schema_version=REPORT_SCHEMA_VERSION,
        plan_id=plan.plan_id,
        attempt_id=run.attempt_id,
        h_a=plan.h_a,
        h_p=plan.h_p,
        h_l=plan.h_l,
        backend=plan.backend,
        profile=profile_label(plan.profile),
        outcome=run.outcome,
        admitted=admitted_requirements(plan.admission),
        observed=tuple(run.observed),
        denied_attempts=evidence.attempts,
        exit=run.exit,
        streams=streams,
        budget_witnesses=tuple(run.witnesses),
        artifacts=tuple(run.artifacts),
        findings=(*run.findings, *evidence.findings),
    )


class BoundaryRunner:
    """Runs admitted plans on their backend; records to ``sink`` when one is given."""

    def __init__(self, registry: BackendRegistry, sink: EventSink | None = None) -> None:
        self._registry = registry
        self._sink = sink

    def run(
        self,
        plan: BoundaryPlan,
        *,
        secrets: SecretResolver | None = None,
        on_stdout: Callable[[bytes], None] | None = None,
        on_stderr: Callable[[bytes], None] | None = None,
        stdin_fd: int | None = None,
        stream_cap: int | None = None,  # None: the cap the plan records (cap_bytes)
        attempt_id: bytes | None = None,
        on_phase: Callable[[int, str], None] | None = None,
        stdio: HostStdio | None = None,
        artifact_dir: str | os.PathLike[str] | None = None,
        rerun_of: RerunLink | None = None,
        reach_checked: bool = False,
    ) -> SealedReport:
        """Run ``plan`` and return its sealed report.

        ``rerun_of``: the recorded run this one re-executes (``bvisor-replay --rerun``).

        ``reach_checked``: the caller has just made the refusals this method makes first
        (code, ledger and artifacts out of the plan's reach, :mod:`.reach`) against this
        plan, this backend's launcher, the sink's ledger as it is now and ``artifact_dir``,
        so they are not made twice. ``run_confined`` makes them before it opens the
        ledger, and says so only when opening created nothing: a ledger made by that
        open has an identity (inode, mount) the earlier check could not judge, so it is
        judged again here.

        ``on_phase`` sees each launcher line as it arrives (index, line), for progress;
        ``artifact_dir``: where a plan that commits its outputs puts them (see
        :mod:`bvisor.launcher.host.artifacts`).
        """
        backend = self._registry.get(plan.backend)
        if not isinstance(backend, LinuxBackend):
            raise TypeError(f"backend {plan.backend!r} cannot execute here")
        attempt = attempt_id if attempt_id is not None else os.urandom(32)
        sink = self._sink
        arrived = 0

        def record_line(line: str) -> None:
            nonlocal arrived
            if on_phase is not None:
                on_phase(arrived, line)
            arrived += 1

        if not reach_checked:
            refuse_if_code_reachable(plan, backend.launcher_path)
            ledger_path = getattr(sink, "path", None)
            if isinstance(ledger_path, str):
                refuse_if_plan_reaches(ledger_path, plan)
            refuse_if_artifacts_reachable(artifact_dir or default_artifacts_path(), plan)
        record_plan: Callable[[], None] | None = None
        if sink is not None:
            admitted = [
                (events.PLAN_ADMITTED, events.admitted_payload(plan, attempt, rerun_of), attempt)
            ] + [(events.LOWERING_ENTRY, payload, attempt) for payload in lowering_payloads(plan)]
            recording = sink

            def record_plan() -> None:
                recording.append_many(admitted)

        sealed: list[SealedReport] = []

        def seal(execution: Execution) -> None:
            # Called by the backend right after teardown, with stop signals still held, so
            # a Ctrl-C (or a second one) cannot cost the record of the run.
            if execution.outcome is Outcome.SUPERVISOR_FAULT and not execution.lines:
                execution.findings.append("the launcher produced no transcript")
            sealed.append(self._seal_and_record(plan, execution, attempt))

        execution = backend.execute(
            plan,
            attempt_id=attempt,
            secrets=secrets,
            on_control_line=record_line,
            on_stdout=on_stdout,
            on_stderr=on_stderr,
            stdin_fd=stdin_fd,
            stream_cap=stream_cap,
            on_finished=seal,
            stdio=stdio,
            artifact_dir=artifact_dir,
            before_child=record_plan,
        )
        if execution.stop_signal is not None:
            raise interrupt_for(execution.stop_signal, sealed[0] if len(sealed) == 1 else None)
        if len(sealed) != 1:
            raise RuntimeError(f"the backend sealed {len(sealed)} reports for one run")
        return sealed[0]

    def _seal_and_record(
        self, plan: BoundaryPlan, execution: Execution, attempt: bytes
    ) -> SealedReport:
        sink = self._sink
        report = seal_report(build_report_body(plan, execution))
        try:
            if sink is not None:
                # One transaction (replay's grammar: terminal, streams and report belong
                # together), fed lazily so the chunks are read from the capture one by one.
                sink.append_many(_record_items(execution, report, attempt))
        finally:
            for data in (execution.stdout, execution.stderr):
                if isinstance(data, Captured):
                    data.close()
        return report


def _record_items(
    execution: Execution, report: SealedReport, attempt: bytes
) -> Iterator[tuple[str, Any, bytes | None]]:
    """The launcher's lines, the proxy's decisions, run.terminal, the denied attempts, each
    stream's chunks (read as they are taken), report.sealed — the grammar of
    :mod:`bvisor.contract.events`, whose builders make every payload."""
    for index, line in enumerate(execution.lines):
        yield (events.LAUNCHER_PHASE, events.phase_payload(index, line), attempt)
    decisions = execution.network.decisions if execution.network is not None else ()
    for index, decision in enumerate(decisions):
        yield (events.NETWORK_DECISION, events.decision_payload(index, decision), attempt)
    yield (events.RUN_TERMINAL, terminal_payload(execution), attempt)
    for index, entry in enumerate(report.body.denied_attempts):
        yield (events.RUN_DENIED, events.denied_payload(index, entry), attempt)
    for name, data, total, truncated in (
        ("stdout", execution.stdout, execution.stdout_total, execution.stdout_truncated),
        ("stderr", execution.stderr, execution.stderr_total, execution.stderr_truncated),
    ):
        for chunk in iter_stream_chunks(name, as_captured(data), total, truncated):
            yield (events.RUN_STREAMS, chunk, attempt)
    yield (events.REPORT_SEALED, events.sealed_payload(report), attempt)
