"""Typed, strict views over the payloads a run records, and the run grammar.

Replay trusts nothing it did not recompute, and that starts with the shape of what it
reads: every payload is decoded here into a frozen view with *exactly* the keys the runner
writes (an extra or missing key is an error naming it), every contract value is rebuilt
through its strict ``from_value`` and must re-encode to the very value recorded (a
non-canonical spec, profile, admission record or report body would let two readers
disagree about what was digested), and the events must follow the run grammar of
:mod:`bvisor.contract.events` (the one definition of the kinds, their payload keys and
their order, which the runner's payload builders also use)

    plan.admitted -> lowering.entry* -> launcher.phase* -> run.terminal
                  -> run.denied* -> run.streams* -> report.sealed
    plan.refused                      (alone)

with ``index`` fields counting 0, 1, 2, ... and ``attempt_id`` equal to the run id.
``note.*`` events (external evidence appended with ``bvisor-ledger append``) may be
attached to a run anywhere after its ``plan.admitted`` / ``plan.refused``; they are not
part of the grammar and are set aside before it is checked (a note *before* the plan is
still an error: a run starts with its plan). ``network.decision`` events (the allow
list's proxy, appended while the run goes on) are set aside the same way, under rules of
their own (:mod:`bvisor.replay.network`), and kept decoded in :attr:`ParsedRun.network`. A
well-formed prefix that stops before ``run.terminal`` is *incomplete* (the host crashed or
is still running) — :attr:`ParsedRun.complete` says so; it is never treated as valid.
A ``run.terminal`` that is not followed by ``report.sealed`` is an error, not an incomplete
run: the runner writes terminal, streams and report in one ledger transaction, so the
ledger can never legitimately hold one without the other.

Errors are :class:`GrammarError` naming the event (seq and kind) and the bad field.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import cbor2

from bvisor import canonical
from bvisor.contract._wire import (
    expect_array,
    expect_bool,
    expect_bytes,
    expect_int,
    expect_map,
    expect_text,
)
from bvisor.contract.admission import AdmissionRecord
from bvisor.contract.denials import DeniedAttempt
from bvisor.contract.errors import ContractError
from bvisor.contract.events import (
    AFTER_ADMITTED,
    LAUNCHER_PHASE,
    LOWERING_ENTRY,
    PLAN_ADMITTED,
    PLAN_REFUSED,
    REFUSAL_SHAPE,
    REPEATABLE,
    REPORT_SEALED,
    RUN_DENIED,
    RUN_STREAMS,
    RUN_TERMINAL,
    SHAPES,
    is_note,
)
from bvisor.contract.lowering import LoweringEntry, LoweringError
from bvisor.contract.netpolicy import NetworkDecision
from bvisor.contract.outcome import Outcome
from bvisor.contract.plan import PLAN_SCHEMA_VERSION
from bvisor.contract.profile import ProfileSnapshot
from bvisor.contract.report import BoundaryReportBody, BudgetWitness, ExitStatus
from bvisor.contract.rerun import RERUN_FIELD, RerunLink
from bvisor.contract.spec import BoundarySpec
from bvisor.digest import DIGEST_SIZE
from bvisor.ledger import Event
from bvisor.replay.memo import Memo
from bvisor.replay.network import split_decisions

__all__ = [
    "DECODE_ERRORS",
    "FROM_BYTES",
    "Admitted",
    "GrammarError",
    "LoweringRecord",
    "ParsedRun",
    "RefusalView",
    "Refused",
    "Sealed",
    "StreamChunk",
    "Terminal",
    "check_order",
    "expect_digest",
    "parse_run",
]

T = TypeVar("T")

# The values the planner and runner may raise on hostile input; anything else is a bug
# and is allowed to surface.
DECODE_ERRORS = (ContractError, LoweringError, canonical.CanonicalError, ValueError, TypeError)


class GrammarError(ValueError):
    """The run's events are not a well-formed recording; ``str()`` names where."""


@dataclass(frozen=True, slots=True)
class Admitted:
    """``plan.admitted``: the recorded inputs of admission and the digests claimed for them."""

    attempt_id: bytes
    backend: str
    schema_version: int
    spec: BoundarySpec
    profile: ProfileSnapshot
    admission: AdmissionRecord
    h_p: bytes
    h_a: bytes
    h_l: bytes
    plan_id: bytes
    admission_value: canonical.Value
    spec_bytes: bytes
    profile_bytes: bytes
    admission_bytes: bytes
    # A rerun names the run it re-executes (optional: only reruns carry it; checked
    # against the ledger by ``check_rerun_of``).
    rerun_of: RerunLink | None = None


@dataclass(frozen=True, slots=True)
class RefusalView:
    """The recorded ``PlanRefusal``: code, requirement, detail and missing fact."""

    code: str
    requirement: str | None
    detail: str
    missing_fact: str | None


@dataclass(frozen=True, slots=True)
class Refused:
    """``plan.refused``: the spec and profile admission refused, and how it refused."""

    attempt_id: bytes
    backend: str
    spec: BoundarySpec
    profile: ProfileSnapshot
    h_p: bytes
    refusal: RefusalView
    spec_bytes: bytes
    profile_bytes: bytes
    rules_version: int = 1  # absent in refusals recorded before rules were versioned


@dataclass(frozen=True, slots=True)
class LoweringRecord:
    """One ``lowering.entry``: the wire entry and the parameters it claims to digest."""

    entry: LoweringEntry
    params: canonical.Value


@dataclass(frozen=True, slots=True)
class Terminal:
    """``run.terminal``: the outcome, the workload's exit status and the budget witnesses."""

    outcome: Outcome
    exit: ExitStatus | None
    budget_witnesses: tuple[BudgetWitness, ...]


@dataclass(frozen=True, slots=True)
class StreamChunk:
    """One ``run.streams`` chunk of captured bytes."""

    seq: int
    stream: str
    offset: int
    data: bytes
    final: bool
    total: int
    truncated: bool


@dataclass(frozen=True, slots=True)
class Sealed:
    """``report.sealed``: the decoded body, its exact canonical bytes, and the seal."""

    body: BoundaryReportBody
    body_bytes: bytes
    seal: bytes


@dataclass(frozen=True, slots=True)
class ParsedRun:
    """A run's events, decoded and in grammar order."""

    run_id: bytes
    admitted: Admitted | None
    refused: Refused | None
    lowering: tuple[LoweringRecord, ...]
    lines: tuple[str, ...]
    terminal: Terminal | None
    streams: tuple[StreamChunk, ...]
    sealed: Sealed | None
    denied: tuple[DeniedAttempt, ...] = ()  # run.denied, in index order (none before them)
    network: tuple[NetworkDecision, ...] = ()
    # The lowering entries' payloads, exactly as recorded, when the reader had them (a key
    # for remembering the h_l check: bvisor.replay.plancache); not part of what was read.
    lowering_bytes: tuple[bytes, ...] | None = field(default=None, compare=False)

    @property
    def complete(self) -> bool:
        """A refusal, or an admitted run that reached ``report.sealed``."""
        return self.refused is not None or self.sealed is not None


# -- payload decoders ------------------------------------------------------------------


def _encoded(value: object, path: str) -> bytes:
    """The canonical bytes of a payload part. Payloads reach replay strictly decoded from
    canonical records (every type already checked there), so the encoder runs without
    ``canonical.encode``'s second walk of the value; anything else it cannot encode, or
    encodes differently from what a strict decoder would accept, fails the comparison or
    the strict contract decoder that follows."""
    try:
        data: bytes = cbor2.dumps(value, canonical=True)
    except Exception as exc:  # cbor2 raises several types for what it cannot encode
        raise ContractError(path, f"has no canonical encoding ({exc})") from None
    return data


def _canonical(value: object, rebuilt: canonical.Value, path: str) -> bytes:
    """The recorded value's encoding; refused unless the rebuilt value encodes identically."""
    data = _encoded(value, path)
    if _encoded(rebuilt, path) != data:
        raise ContractError(path, "not in canonical form (re-encoding changes it)")
    return data


# Decoded contract values by their exact canonical bytes (bvisor.replay.memo): a ledger
# from one host repeats the same profile (and often the same spec) in every run. Each
# entry holds the built value and the decoded one it was built from. Only small values are
# kept (a real profile is a few KiB).
_PARTS: Memo[tuple[str, bytes], tuple[object, canonical.Value]] = Memo(256, 64 * 1024)


def _memoized(
    path: str, value: object, build: Callable[[object, str], T], data: bytes | None = None
) -> tuple[T, canonical.Value, bytes]:
    """``build(value, path)`` (strict, canonical-checked), the decoded value and its bytes.

    ``data``, when the caller has it, is the value's exact canonical encoding (then
    ``value`` is not read: it is decoded from ``data`` unless the memo holds it)."""
    if data is None:
        data = _encoded(value, path)
    key = (path, data)
    hit = _PARTS.table.get(key)
    if hit is not None:
        return hit[0], hit[1], data  # type: ignore[return-value]
    decoded: canonical.Value = value if value is not FROM_BYTES else cbor2.loads(data)  # type: ignore[assignment]
    built = build(decoded, path)
    if canonical.encode(built.to_value()) != data:  # type: ignore[attr-defined]
        raise ContractError(path, "not in canonical form (re-encoding changes it)")
    _PARTS.put(key, (built, decoded), len(data))
    return built, decoded, data


# A payload part that is to be decoded from its bytes (``parts``), not read from the map.
FROM_BYTES = object()


def _body(payload: object, kind: str) -> Mapping[str, object]:
    """The payload map of ``kind``, with exactly the keys its shape allows."""
    shape = SHAPES[kind]
    return expect_map(payload, "", required=shape.required, optional=shape.optional)


def expect_digest(value: object, path: str) -> bytes:
    return expect_bytes(value, path, size=DIGEST_SIZE)


def _opt_text(value: object, path: str) -> str | None:
    return None if value is None else expect_text(value, path)


def decode_admitted(payload: object, parts: Mapping[str, bytes] | None = None) -> Admitted:
    """``parts``: the exact encodings of the payload's ``spec``, ``profile`` and
    ``admission``, when the caller has them (their values in ``payload`` are then
    :data:`FROM_BYTES`, decoded only when the memo does not hold them)."""
    body = _body(payload, PLAN_ADMITTED)
    schema = expect_int(body["schema_version"], "schema_version", minimum=1)
    if schema != PLAN_SCHEMA_VERSION:
        raise ContractError(
            "schema_version", f"unknown plan schema {schema} (replay knows {PLAN_SCHEMA_VERSION})"
        )
    given = parts or {}
    spec, _, spec_bytes = _memoized(
        "spec", body["spec"], BoundarySpec.from_value, given.get("spec")
    )
    profile, _, profile_bytes = _memoized(
        "profile", body["profile"], ProfileSnapshot.from_value, given.get("profile")
    )
    admission, admission_value, admission_bytes = _memoized(
        "admission", body["admission"], AdmissionRecord.from_value, given.get("admission")
    )
    return Admitted(
        attempt_id=expect_digest(body["attempt_id"], "attempt_id"),
        backend=expect_text(body["backend"], "backend", nonempty=True),
        schema_version=schema,
        spec=spec,
        profile=profile,
        admission=admission,
        h_p=expect_digest(body["h_p"], "h_p"),
        h_a=expect_digest(body["h_a"], "h_a"),
        h_l=expect_digest(body["h_l"], "h_l"),
        plan_id=expect_digest(body["plan_id"], "plan_id"),
        admission_value=admission_value,
        spec_bytes=spec_bytes,
        profile_bytes=profile_bytes,
        admission_bytes=admission_bytes,
        rerun_of=_rerun_link(body),
    )


def _rerun_link(body: Mapping[str, object]) -> RerunLink | None:
    if RERUN_FIELD not in body:
        return None
    link = RerunLink.from_value(body[RERUN_FIELD])
    _canonical(body[RERUN_FIELD], link.to_value(), RERUN_FIELD)
    return link


def decode_refused(payload: object) -> Refused:
    body = _body(payload, PLAN_REFUSED)
    raw = expect_map(body["refusal"], "refusal", required=REFUSAL_SHAPE.required)
    refusal = RefusalView(
        code=expect_text(raw["code"], "refusal.code", nonempty=True),
        requirement=_opt_text(raw["requirement"], "refusal.requirement"),
        detail=expect_text(raw["detail"], "refusal.detail"),
        missing_fact=_opt_text(raw["missing_fact"], "refusal.missing_fact"),
    )
    spec, _, spec_bytes = _memoized("spec", body["spec"], BoundarySpec.from_value)
    profile, _, profile_bytes = _memoized("profile", body["profile"], ProfileSnapshot.from_value)
    return Refused(
        attempt_id=expect_digest(body["attempt_id"], "attempt_id"),
        backend=expect_text(body["backend"], "backend", nonempty=True),
        spec=spec,
        profile=profile,
        h_p=expect_digest(body["h_p"], "h_p"),
        refusal=refusal,
        spec_bytes=spec_bytes,
        profile_bytes=profile_bytes,
        rules_version=expect_int(body.get("rules_version", 1), "rules_version", minimum=1),
    )


def decode_lowering(payload: object, index: int) -> LoweringRecord:
    body = _body(payload, LOWERING_ENTRY)
    _expect_index(body["index"], index)
    try:
        entry = LoweringEntry.from_value(body["entry"])
    except LoweringError as exc:
        raise ContractError("entry", str(exc)) from None
    _canonical(body["entry"], entry.to_value(), "entry")
    params = body["params"]
    canonical.encode(params)  # must be encodable at all
    return LoweringRecord(entry=entry, params=params)  # type: ignore[arg-type]


def decode_phase(payload: object, index: int) -> str:
    body = _body(payload, LAUNCHER_PHASE)
    _expect_index(body["index"], index)
    return expect_text(body["line"], "line", nonempty=True)


def decode_terminal(
    payload: object, witnesses: tuple[BudgetWitness, ...] | None = None
) -> Terminal:
    """``witnesses``: the budget witnesses already read from their bytes, when the caller
    has them (their value in ``payload`` is then :data:`FROM_BYTES`)."""
    body = _body(payload, RUN_TERMINAL)
    raw_exit = body["exit"]
    if witnesses is None:
        raw = expect_array(body["budget_witnesses"], "budget_witnesses")
        witnesses = tuple(
            BudgetWitness.from_value(w, f"budget_witnesses[{i}]") for i, w in enumerate(raw)
        )
    return Terminal(
        outcome=Outcome.from_value(body["outcome"], "outcome"),
        exit=None if raw_exit is None else ExitStatus.from_value(raw_exit, "exit"),
        budget_witnesses=witnesses,
    )


def decode_denied(payload: object, index: int) -> DeniedAttempt:
    body = _body(payload, RUN_DENIED)
    _expect_index(body["index"], index)
    attempt = DeniedAttempt.from_value(body["attempt"], "attempt")
    _canonical(body["attempt"], attempt.to_value(), "attempt")
    return attempt


def decode_chunk(payload: object, seq: int) -> StreamChunk:
    body = _body(payload, RUN_STREAMS)
    return StreamChunk(
        seq=seq,
        stream=expect_text(body["stream"], "stream", nonempty=True),
        offset=expect_int(body["offset"], "offset", minimum=0),
        data=expect_bytes(body["data"], "data"),
        final=expect_bool(body["final"], "final"),
        total=expect_int(body["total"], "total", minimum=0),
        truncated=expect_bool(body["truncated"], "truncated"),
    )


def decode_sealed(payload: object) -> Sealed:
    body = _body(payload, REPORT_SEALED)
    report = BoundaryReportBody.from_value(body["body"], "body")
    return Sealed(
        body=report,
        body_bytes=_canonical(body["body"], report.to_value(), "body"),
        seal=expect_digest(body["seal"], "seal"),
    )


def _expect_index(value: object, index: int) -> None:
    got = expect_int(value, "index", minimum=0)
    if got != index:
        raise ContractError(
            "index", f"expected {index} (events must count 0, 1, 2, ...), got {got}"
        )


# -- the grammar -----------------------------------------------------------------------


def _decode(event: Event, decoder: Callable[..., T], *args: int) -> T:
    try:
        return decoder(event.payload, *args)
    except DECODE_ERRORS as exc:
        raise GrammarError(f"event {event.seq} ({event.kind}): {_message(exc)}") from None


def _message(exc: BaseException) -> str:
    text = str(exc)
    return text[2:] if text.startswith(": ") else text


class Kinded(Protocol):
    """What the order check reads of an event (an :class:`Event` or a proven record)."""

    @property
    def seq(self) -> int: ...

    @property
    def kind(self) -> str: ...


def check_order(events: Sequence[Kinded]) -> None:
    """Kinds after ``plan.admitted`` follow ``AFTER_ADMITTED``, repeating only where allowed."""
    position = -1
    for event in events[1:]:
        if event.kind not in AFTER_ADMITTED:
            raise GrammarError(
                f"event {event.seq}: kind {event.kind!r} does not belong in a run "
                f"after plan.admitted"
            )
        rank = AFTER_ADMITTED.index(event.kind)
        if rank < position or (rank == position and event.kind not in REPEATABLE):
            raise GrammarError(
                f"event {event.seq}: {event.kind} after {AFTER_ADMITTED[position]} is out of order "
                "(admitted -> entries -> phases -> terminal -> denied -> streams -> sealed)"
            )
        if rank > position + 1 and any(
            AFTER_ADMITTED[skipped] not in REPEATABLE for skipped in range(position + 1, rank)
        ):
            missing = next(
                AFTER_ADMITTED[s]
                for s in range(position + 1, rank)
                if AFTER_ADMITTED[s] not in REPEATABLE
            )
            raise GrammarError(f"event {event.seq}: {event.kind} without a preceding {missing}")
        position = rank
    if position >= AFTER_ADMITTED.index(RUN_TERMINAL) and position != AFTER_ADMITTED.index(
        REPORT_SEALED
    ):
        raise GrammarError(
            "run.terminal is not followed by report.sealed (they are recorded in one "
            "transaction, so one without the other means events were removed)"
        )


def _check_run_ids(events: Sequence[Event], run_id: bytes) -> None:
    for event in events:
        if event.run_id != run_id:
            raise GrammarError(f"event {event.seq} belongs to another run")


def parse_run(run_id: bytes, events: Sequence[Event]) -> ParsedRun:
    """Decode ``events`` (one run's, in append order) or raise :class:`GrammarError`."""
    if not events:
        raise GrammarError("the run has no events")
    _check_run_ids(events, run_id)
    first = events[0]
    events = [first, *(e for e in events[1:] if not is_note(e.kind))]
    if first.kind == PLAN_REFUSED:
        if len(events) > 1:
            raise GrammarError(
                f"event {events[1].seq}: {events[1].kind} after plan.refused "
                "(a refused plan is recorded alone)"
            )
        refused = _decode(first, decode_refused)
        _same_attempt(first, refused.attempt_id, run_id)
        return ParsedRun(run_id, None, refused, (), (), None, (), None)
    if first.kind != PLAN_ADMITTED:
        raise GrammarError(
            f"event {first.seq}: a run starts with plan.admitted or plan.refused, "
            f"not {first.kind!r}"
        )
    events, network, misplaced = split_decisions(events)
    if misplaced is not None:
        raise GrammarError(misplaced)
    check_order(events)
    admitted = _decode(first, decode_admitted)
    _same_attempt(first, admitted.attempt_id, run_id)
    lowering: list[LoweringRecord] = []
    lines: list[str] = []
    terminal: Terminal | None = None
    chunks: list[StreamChunk] = []
    denied: list[DeniedAttempt] = []
    sealed: Sealed | None = None
    for event in events[1:]:
        if event.kind == LOWERING_ENTRY:
            lowering.append(_decode(event, decode_lowering, len(lowering)))
        elif event.kind == LAUNCHER_PHASE:
            lines.append(_decode(event, decode_phase, len(lines)))
        elif event.kind == RUN_TERMINAL:
            terminal = _decode(event, decode_terminal)
        elif event.kind == RUN_DENIED:
            denied.append(_decode(event, decode_denied, len(denied)))
        elif event.kind == RUN_STREAMS:
            chunks.append(_decode(event, decode_chunk, event.seq))
        else:
            sealed = _decode(event, decode_sealed)
    return ParsedRun(
        run_id,
        admitted,
        None,
        tuple(lowering),
        tuple(lines),
        terminal,
        tuple(chunks),
        sealed,
        tuple(denied),
        network,
    )


def _same_attempt(event: Event, attempt_id: bytes, run_id: bytes) -> None:
    if attempt_id != run_id:
        raise GrammarError(f"event {event.seq} ({event.kind}): attempt_id is not the run id")
