"""The runner: execute an admitted plan, seal the report, and record every step.

Recording order is the evidence grammar replay checks (DESIGN.md §6/§7):

    plan.admitted            durable before the workload can start
    lowering.entry  x N      one per schedule entry, with its parameters
    launcher.phase  x M      one per control-channel line, appended as it arrives
    network.decision x D     one per connection the allow list's proxy judged, appended as
                             it ends (interleaved with the phases; all before the terminal)
    run.terminal             outcome, exit status, budget witnesses
    run.streams     x K      captured bytes in chunks (so stream digests can be re-checked)
    report.sealed            body + seal, durable before ``run`` returns

The sink is anything with ``append(kind, payload, run_id)`` and ``append_many(items)`` —
the ledger in production — so this module never imports the ledger (the dependency rules
keep ``ledger`` ignorant of launchers, and the launcher need not know storage).
A secret lease value never reaches a payload: the environment table with resolved values
lives only in the sealed launch memfd.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from bvisor import canonical
from bvisor.contract import BoundarySpec, Outcome
from bvisor.contract.netpolicy import DECISION_EVENT, NetworkDecision
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
from bvisor.digest import Purpose, digest_bytes, digest_value
from bvisor.launcher.host.backend import Execution, LinuxBackend
from bvisor.launcher.host.interrupts import interrupt_for
from bvisor.launcher.host.reach import refuse_if_plan_reaches
from bvisor.launcher.host.secrets import SecretResolver
from bvisor.planner.errors import PlanRefusal
from bvisor.planner.registry import BackendRegistry
from bvisor.planner.rules import CURRENT

__all__ = ["STREAM_CHUNK_BYTES", "BoundaryRunner", "EventSink", "build_report_body"]

STREAM_CHUNK_BYTES = 1024 * 1024


class EventSink(Protocol):
    def append(self, kind: str, payload: Any, run_id: bytes | None = None) -> object: ...

    def append_many(self, items: Iterable[tuple[str, Any, bytes | None]]) -> object: ...


def admitted_payload(plan: BoundaryPlan, attempt_id: bytes) -> dict[str, canonical.Value]:
    return {
        "attempt_id": attempt_id,
        "backend": plan.backend,
        "schema_version": plan.schema_version,
        "spec": plan.spec.to_value(),
        "profile": plan.profile.to_value(),
        "admission": plan.admission.to_value(),
        "h_p": plan.h_p,
        "h_a": plan.h_a,
        "h_l": plan.h_l,
        "plan_id": plan.plan_id,
    }


def refused_payload(
    spec: BoundarySpec, profile: ProfileSnapshot, refusal: PlanRefusal, attempt_id: bytes
) -> dict[str, canonical.Value]:
    """The ``plan.refused`` payload: enough for replay to re-derive the same refusal.

    Plans are always made with the newest rules, so that is the version a refusal names.
    """
    profile_value = profile.to_value()
    return {
        "attempt_id": attempt_id,
        "backend": profile.backend,
        "spec": spec.to_value(),
        "profile": profile_value,
        "h_p": digest_value(Purpose.PROFILE, profile_value),
        "refusal": refusal.to_value(),
        "rules_version": CURRENT.version,
    }


def lowering_payloads(plan: BoundaryPlan) -> list[dict[str, canonical.Value]]:
    return [
        {"index": index, "entry": primitive.entry.to_value(), "params": primitive.params}
        for index, primitive in enumerate(plan.lowering)
    ]


def stream_chunks(
    name: str, data: bytes, total: int, truncated: bool
) -> list[dict[str, canonical.Value]]:
    """Split captured bytes into ledger-sized chunks; always at least one (final) chunk."""
    chunks: list[dict[str, canonical.Value]] = []
    offsets = list(range(0, len(data), STREAM_CHUNK_BYTES)) or [0]
    for position, offset in enumerate(offsets):
        chunks.append(
            {
                "stream": name,
                "offset": offset,
                "data": data[offset : offset + STREAM_CHUNK_BYTES],
                "final": position == len(offsets) - 1,
                "total": total,
                "truncated": truncated,
            }
        )
    return chunks


def terminal_payload(run: Execution) -> dict[str, canonical.Value]:
    exit_value: canonical.Value = None if run.exit is None else run.exit.to_value()
    return {
        "outcome": run.outcome.value,
        "exit": exit_value,
        "budget_witnesses": [w.to_value() for w in run.witnesses],
    }


def build_report_body(plan: BoundaryPlan, run: Execution) -> BoundaryReportBody:
    """The report body: pure function of the plan and what the execution observed."""
    streams = tuple(
        StreamRecord(
            name=name,
            length=total,
            captured=len(data),
            digest=digest_bytes(Purpose.STREAM, data),
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
        denied_attempts=(),
        exit=run.exit,
        streams=streams,
        budget_witnesses=tuple(run.witnesses),
        artifacts=(),
        findings=tuple(run.findings),
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
    ) -> SealedReport:
        backend = self._registry.get(plan.backend)
        if not isinstance(backend, LinuxBackend):
            raise TypeError(f"backend {plan.backend!r} cannot execute here")
        attempt = attempt_id if attempt_id is not None else os.urandom(32)
        sink = self._sink
        phase_index = 0

        def record_line(line: str) -> None:
            nonlocal phase_index
            if sink is not None:
                sink.append("launcher.phase", {"index": phase_index, "line": line}, attempt)
            phase_index += 1

        def record_decision(index: int, decision: NetworkDecision) -> None:
            if sink is not None:
                payload = {"index": index, "decision": decision.to_value()}
                sink.append(DECISION_EVENT, payload, attempt)

        ledger_path = getattr(sink, "path", None)
        if isinstance(ledger_path, str):
            refuse_if_plan_reaches(ledger_path, plan)
        if sink is not None:
            sink.append_many(
                [("plan.admitted", admitted_payload(plan, attempt), attempt)]
                + [("lowering.entry", payload, attempt) for payload in lowering_payloads(plan)]
            )
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
            on_network_decision=record_decision,
        )
        if execution.stop_signal is not None:
            raise interrupt_for(execution.stop_signal)
        if len(sealed) != 1:
            raise RuntimeError(f"the backend sealed {len(sealed)} reports for one run")
        return sealed[0]

    def _seal_and_record(
        self, plan: BoundaryPlan, execution: Execution, attempt: bytes
    ) -> SealedReport:
        sink = self._sink
        report = seal_report(build_report_body(plan, execution))
        if sink is not None:
            items: list[tuple[str, Any, bytes | None]] = [
                ("run.terminal", terminal_payload(execution), attempt)
            ]
            for name, data, total, truncated in (
                ("stdout", execution.stdout, execution.stdout_total, execution.stdout_truncated),
                ("stderr", execution.stderr, execution.stderr_total, execution.stderr_truncated),
            ):
                items += [
                    ("run.streams", chunk, attempt)
                    for chunk in stream_chunks(name, data, total, truncated)
                ]
            items.append(
                ("report.sealed", {"body": report.body.to_value(), "seal": report.seal}, attempt)
            )
            sink.append_many(items)
        return report
