"""The wire facts of a recorded run: its event kinds, their payload shapes, the run grammar.

The runner writes these events, the ledger stores them, ``bvisor-ledger`` refuses to let a
caller forge them, the API's recording sink knows which batch closes a run, and replay
decodes and checks them. Each of those used to spell the kinds (and the keys of their
payloads) on its own; a kind renamed in one place would have left the others reading a
vocabulary nobody writes any more. This module is the one definition, in the pure bottom
layer so that every one of them — ledger, launcher host, replay, front — can import it
without an arrow running back up (``tests/house/test_layers.py``).

The grammar of one run, in the order the runner writes it (two durable commits, see
:mod:`bvisor.launcher.host.runner`)::

    plan.admitted -> lowering.entry* -> launcher.phase* -> network.decision*
                  -> run.terminal -> run.denied* -> run.streams* -> report.sealed
    plan.refused                      (alone)

``note.*`` events (external evidence, ``bvisor-ledger append``) may follow a run's plan
anywhere and are not part of the grammar; ``network.decision`` events are set aside and
checked under rules of their own (every one before ``run.terminal``, indices counting up).

Payloads are canonical maps with exactly the keys of :data:`SHAPES`; the builders below are
the only code that makes them, and each checks its keys against the shape, so the writer
and replay's strict decoders (which ask the same shapes) cannot drift apart. The values
inside (a spec, a report body, a decision) are the contract types' own ``to_value``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from bvisor import canonical
from bvisor.contract.denials import DeniedAttempt
from bvisor.contract.netpolicy import NetworkDecision
from bvisor.contract.outcome import Outcome
from bvisor.contract.plan import BoundaryPlan
from bvisor.contract.profile import ProfileSnapshot
from bvisor.contract.report import BudgetWitness, ExitStatus, SealedReport
from bvisor.contract.rerun import RERUN_FIELD, RerunLink
from bvisor.contract.spec import BoundarySpec
from bvisor.digest import Purpose, digest_value

__all__ = [
    "AFTER_ADMITTED",
    "CLOSING_KINDS",
    "LAUNCHER_PHASE",
    "LOWERING_ENTRY",
    "NETWORK_DECISION",
    "NOTE_EXTERNAL",
    "NOTE_KIND_PREFIX",
    "OPENING_KINDS",
    "PLAN_ADMITTED",
    "PLAN_REFUSED",
    "REFUSAL_SHAPE",
    "REPEATABLE",
    "REPORT_SEALED",
    "RUN_DENIED",
    "RUN_KINDS",
    "RUN_STREAMS",
    "RUN_TERMINAL",
    "SHAPES",
    "Shape",
    "admitted_payload",
    "decision_payload",
    "denied_payload",
    "is_note",
    "lowering_payload",
    "phase_payload",
    "refused_payload",
    "sealed_payload",
    "stream_payload",
    "terminal_outcome",
    "terminal_payload",
]

PLAN_ADMITTED: Final = "plan.admitted"
PLAN_REFUSED: Final = "plan.refused"
LOWERING_ENTRY: Final = "lowering.entry"
LAUNCHER_PHASE: Final = "launcher.phase"
NETWORK_DECISION: Final = "network.decision"
RUN_TERMINAL: Final = "run.terminal"
RUN_DENIED: Final = "run.denied"
RUN_STREAMS: Final = "run.streams"
REPORT_SEALED: Final = "report.sealed"

# External evidence: any kind under ``note.``; ``note.external`` is the one the docs show.
NOTE_KIND_PREFIX: Final = "note."
NOTE_EXTERNAL: Final = "note.external"

# Every kind the runner writes, in the order a run writes them; reserved for bvisor itself.
RUN_KINDS: Final = (
    PLAN_ADMITTED,
    PLAN_REFUSED,
    LOWERING_ENTRY,
    LAUNCHER_PHASE,
    NETWORK_DECISION,
    RUN_TERMINAL,
    RUN_DENIED,
    RUN_STREAMS,
    REPORT_SEALED,
)
# A run's first event is one of these; the last event of its own recording one of these.
OPENING_KINDS: Final = frozenset({PLAN_ADMITTED, PLAN_REFUSED})
CLOSING_KINDS: Final = frozenset({REPORT_SEALED, PLAN_REFUSED})
# What follows ``plan.admitted`` (decisions and notes set aside), in order; which repeat.
AFTER_ADMITTED: Final = (
    LOWERING_ENTRY,
    LAUNCHER_PHASE,
    RUN_TERMINAL,
    RUN_DENIED,
    RUN_STREAMS,
    REPORT_SEALED,
)
REPEATABLE: Final = frozenset({LOWERING_ENTRY, LAUNCHER_PHASE, RUN_DENIED, RUN_STREAMS})


def is_note(kind: str) -> bool:
    """External evidence (``note.*``): outside the run grammar, never written by a run."""
    return kind.startswith(NOTE_KIND_PREFIX)


@dataclass(frozen=True, slots=True)
class Shape:
    """The keys of one payload map: all of ``required``, any of ``optional``, nothing else."""

    required: tuple[str, ...]
    optional: tuple[str, ...] = ()

    def check(self, kind: str, payload: Mapping[str, object]) -> None:
        """Raise AssertionError if a builder made a payload this shape does not allow."""
        keys = set(payload)
        missing = set(self.required) - keys
        extra = keys - set(self.required) - set(self.optional)
        if missing or extra:
            raise AssertionError(
                f"{kind} payload: missing {missing or '{}'}, extra {extra or '{}'}"
            )


SHAPES: Final[Mapping[str, Shape]] = {
    PLAN_ADMITTED: Shape(
        (
            "attempt_id",
            "backend",
            "schema_version",
            "spec",
            "profile",
            "admission",
            "h_p",
            "h_a",
            "h_l",
            "plan_id",
        ),
        (RERUN_FIELD,),  # a rerun's link to the run it re-executes (bvisor.contract.rerun)
    ),
    # rules_version is absent from refusals recorded before rules were versioned.
    PLAN_REFUSED: Shape(
        ("attempt_id", "backend", "spec", "profile", "h_p", "refusal"), ("rules_version",)
    ),
    LOWERING_ENTRY: Shape(("index", "entry", "params")),
    LAUNCHER_PHASE: Shape(("index", "line")),
    NETWORK_DECISION: Shape(("index", "decision")),
    RUN_TERMINAL: Shape(("outcome", "exit", "budget_witnesses")),
    RUN_DENIED: Shape(("index", "attempt")),
    RUN_STREAMS: Shape(("stream", "offset", "data", "final", "total", "truncated")),
    REPORT_SEALED: Shape(("body", "seal")),
}
# The ``refusal`` map inside ``plan.refused`` (a PlanRefusal's ``to_value``).
REFUSAL_SHAPE: Final = Shape(("code", "requirement", "detail", "missing_fact"))

Payload = dict[str, canonical.Value]


def _shaped(kind: str, payload: Payload) -> Payload:
    SHAPES[kind].check(kind, payload)
    return payload


def admitted_payload(
    plan: BoundaryPlan, attempt_id: bytes, rerun_of: RerunLink | None = None
) -> Payload:
    """``plan.admitted``: the inputs of admission and the digests claimed for them; a
    rerun adds ``rerun_of`` (outside every digest)."""
    payload: Payload = {
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
    if rerun_of is not None:
        payload[RERUN_FIELD] = rerun_of.to_value()
    return _shaped(PLAN_ADMITTED, payload)


def refused_payload(
    spec: BoundarySpec,
    profile: ProfileSnapshot,
    refusal: canonical.Value,
    rules_version: int,
    attempt_id: bytes,
) -> Payload:
    """``plan.refused``: enough for replay to re-derive the same refusal with those rules."""
    profile_value = profile.to_value()
    if not isinstance(refusal, dict):
        raise TypeError("refusal: expected a PlanRefusal's to_value() map")
    REFUSAL_SHAPE.check("plan.refused refusal", refusal)
    return _shaped(
        PLAN_REFUSED,
        {
            "attempt_id": attempt_id,
            "backend": profile.backend,
            "spec": spec.to_value(),
            "profile": profile_value,
            "h_p": digest_value(Purpose.PROFILE, profile_value),
            "refusal": refusal,
            "rules_version": rules_version,
        },
    )


def lowering_payload(index: int, entry: canonical.Value, params: canonical.Value) -> Payload:
    """One ``lowering.entry``: the wire entry and the parameters its digest covers."""
    return _shaped(LOWERING_ENTRY, {"index": index, "entry": entry, "params": params})


def phase_payload(index: int, line: str) -> Payload:
    """One ``launcher.phase``: the ``index``-th control-channel line (a state or a note)."""
    return _shaped(LAUNCHER_PHASE, {"index": index, "line": line})


def decision_payload(index: int, decision: NetworkDecision) -> Payload:
    """One ``network.decision``: the allow list's proxy's ``index``-th judgement."""
    return _shaped(NETWORK_DECISION, {"index": index, "decision": decision.to_value()})


def terminal_payload(
    outcome: Outcome, exit_status: ExitStatus | None, witnesses: Iterable[BudgetWitness]
) -> Payload:
    """``run.terminal``: the outcome, the workload's exit status, the budget witnesses."""
    exit_value: canonical.Value = None if exit_status is None else exit_status.to_value()
    return _shaped(
        RUN_TERMINAL,
        {
            "outcome": outcome.value,
            "exit": exit_value,
            "budget_witnesses": [w.to_value() for w in witnesses],
        },
    )


def denied_payload(index: int, attempt: DeniedAttempt) -> Payload:
    """One ``run.denied``: the report's ``index``-th denied-attempt entry."""
    return _shaped(RUN_DENIED, {"index": index, "attempt": attempt.to_value()})


def stream_payload(
    stream: str, offset: int, data: bytes, *, final: bool, total: int, truncated: bool
) -> Payload:
    """One ``run.streams`` chunk of captured bytes (``total``: the stream's whole length)."""
    return _shaped(
        RUN_STREAMS,
        {
            "stream": stream,
            "offset": offset,
            "data": data,
            "final": final,
            "total": total,
            "truncated": truncated,
        },
    )


def sealed_payload(report: SealedReport) -> Payload:
    """``report.sealed``: the report body and its seal."""
    return _shaped(REPORT_SEALED, {"body": report.body.to_value(), "seal": report.seal})


def terminal_outcome(kind: str, payload: object) -> str | None:
    """The outcome a ``run.terminal`` event names, read leniently (None for anything else).

    For listings (``bvisor-ledger runs``), which show what a run recorded without judging
    it; replay's strict decoder is what checks that it is a real outcome.
    """
    if kind != RUN_TERMINAL or not isinstance(payload, dict):
        return None
    value = payload.get("outcome")
    return value if isinstance(value, str) else None
