"""The boundary report: what happened in one run, sealed so it cannot be quietly edited.

The body carries the identities the run was admitted under (plan_id, h_a, h_p, h_l), the
fresh ``attempt_id``, what was admitted and by which mechanism, what was observed (in
order), the workload's real exit status, captured stream digests, budget witnesses,
artifacts and findings. ``denied_attempts`` are structured entries
(:class:`~bvisor.contract.denials.DeniedAttempt`); every report recorded before they
existed carries an empty list there, so its bytes, seal and meaning are unchanged. The
seal is the ``bvisor.report.v1`` digest of the body's
canonical value; ``SealedReport.from_value`` re-checks it, so a report read back from
anywhere is either exactly what was sealed or an error.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from bvisor import canonical
from bvisor.contract._wire import (
    U64_MAX,
    as_tuple,
    expect_array,
    expect_bool,
    expect_bytes,
    expect_enum,
    expect_int,
    expect_map,
    expect_text,
)
from bvisor.contract.budgets import BudgetDimension
from bvisor.contract.denials import DeniedAttempt
from bvisor.contract.enforcement import Enforcement
from bvisor.contract.errors import ContractError
from bvisor.contract.outcome import Outcome
from bvisor.contract.requirements import RequirementKind
from bvisor.digest import DIGEST_SIZE, Purpose, digest_bytes, digest_value

__all__ = [
    "BODY_FIELDS",
    "REPORT_SCHEMA_VERSION",
    "AdmittedRequirement",
    "BodyField",
    "BoundaryReportBody",
    "BudgetWitness",
    "ExitStatus",
    "ObservedFact",
    "SealedReport",
    "StreamRecord",
    "seal_report",
    "stream_digest",
]

REPORT_SCHEMA_VERSION = 1


def stream_digest(captured: bytes) -> bytes:
    """The ``bvisor.stream.v1`` digest of captured stream bytes."""
    return digest_bytes(Purpose.STREAM, captured)


def _texts(items: object, path: str) -> tuple[str, ...]:
    values = as_tuple(items, path)
    return tuple(expect_text(v, f"{path}[{i}]") for i, v in enumerate(values))


@dataclass(frozen=True, slots=True)
class ExitStatus:
    """The workload's real status: exactly one of ``code`` (0-255) or ``signal`` (1-127)."""

    code: int | None
    signal: int | None

    def __post_init__(self) -> None:
        if (self.code is None) == (self.signal is None):
            raise ContractError("exit", "exactly one of code or signal must be set", "bad-exit")
        if self.code is not None:
            expect_int(self.code, "code", minimum=0, maximum=255)
        if self.signal is not None:
            expect_int(self.signal, "signal", minimum=1, maximum=127)

    @classmethod
    def exited(cls, code: int) -> ExitStatus:
        return cls(code, None)

    @classmethod
    def signaled(cls, signal: int) -> ExitStatus:
        return cls(None, signal)

    def to_value(self) -> dict[str, canonical.Value]:
        return {"code": self.code, "signal": self.signal}

    @classmethod
    def from_value(cls, value: object, path: str = "exit") -> ExitStatus:
        body = expect_map(value, path, required=("code", "signal"))
        code = None if body["code"] is None else expect_int(body["code"], f"{path}.code")
        signal = None if body["signal"] is None else expect_int(body["signal"], f"{path}.signal")
        try:
            return cls(code, signal)
        except ContractError as exc:
            where = path if exc.path == "exit" else f"{path}.{exc.path}"
            raise ContractError(where, exc.message, exc.code) from None


@dataclass(frozen=True, slots=True)
class ObservedFact:
    """Something the supervisor saw, e.g. ``kind="cgroup_leaf_prepared"``."""

    kind: str
    detail: str

    def __post_init__(self) -> None:
        expect_text(self.kind, "kind", nonempty=True)
        expect_text(self.detail, "detail")

    def to_value(self) -> dict[str, canonical.Value]:
        return {"kind": self.kind, "detail": self.detail}

    @classmethod
    def from_value(cls, value: object, path: str = "fact") -> ObservedFact:
        body = expect_map(value, path, required=("kind", "detail"))
        return cls(
            expect_text(body["kind"], f"{path}.kind", nonempty=True),
            expect_text(body["detail"], f"{path}.detail"),
        )


@dataclass(frozen=True, slots=True)
class AdmittedRequirement:
    """A requirement as admitted: how strongly it is held, and by which mechanism."""

    kind: RequirementKind
    enforcement: Enforcement
    mechanism: str

    def __post_init__(self) -> None:
        if not isinstance(self.kind, RequirementKind):
            raise ContractError("kind", f"{self.kind!r} is not a RequirementKind", "wrong-type")
        if not isinstance(self.enforcement, Enforcement):
            raise ContractError("enforcement", f"{self.enforcement!r} is not an Enforcement")
        expect_text(self.mechanism, "mechanism", nonempty=True)

    def to_value(self) -> dict[str, canonical.Value]:
        return {
            "kind": self.kind.value,
            "enforcement": self.enforcement.value,
            "mechanism": self.mechanism,
        }

    @classmethod
    def from_value(cls, value: object, path: str = "admitted") -> AdmittedRequirement:
        body = expect_map(value, path, required=("kind", "enforcement", "mechanism"))
        return cls(
            expect_enum(RequirementKind, body["kind"], f"{path}.kind"),
            expect_enum(Enforcement, body["enforcement"], f"{path}.enforcement"),
            expect_text(body["mechanism"], f"{path}.mechanism", nonempty=True),
        )


@dataclass(frozen=True, slots=True)
class StreamRecord:
    """One captured stream: total length, how much was kept, and the digest of what was kept.

    ``truncated`` must equal ``captured < length``: a record cannot claim completeness
    it does not have.
    """

    name: str
    length: int
    captured: int
    digest: bytes
    truncated: bool

    def __post_init__(self) -> None:
        expect_text(self.name, "name", nonempty=True)
        expect_int(self.length, "length", minimum=0, maximum=U64_MAX)
        expect_int(self.captured, "captured", minimum=0, maximum=self.length)
        expect_bytes(self.digest, "digest", size=DIGEST_SIZE)
        expect_bool(self.truncated, "truncated")
        if self.truncated != (self.captured < self.length):
            raise ContractError(
                "truncated", "must be true exactly when captured < length", "inconsistent"
            )

    @classmethod
    def of(cls, name: str, captured: bytes, length: int | None = None) -> StreamRecord:
        """Record ``captured`` bytes out of ``length`` produced (default: all of them)."""
        total = len(captured) if length is None else length
        return cls(name, total, len(captured), stream_digest(captured), len(captured) < total)

    def matches(self, captured: bytes) -> bool:
        """Whether ``captured`` is exactly the bytes this record digests."""
        import hmac  # not at the top: it loads OpenSSL, which a run need not (bvisor.sha256)

        return len(captured) == self.captured and hmac.compare_digest(
            stream_digest(captured), self.digest
        )

    def to_value(self) -> dict[str, canonical.Value]:
        return {
            "name": self.name,
            "length": self.length,
            "captured": self.captured,
            "digest": self.digest,
            "truncated": self.truncated,
        }

    @classmethod
    def from_value(cls, value: object, path: str = "stream") -> StreamRecord:
        body = expect_map(
            value, path, required=("name", "length", "captured", "digest", "truncated")
        )
        name = expect_text(body["name"], f"{path}.name")
        length = expect_int(body["length"], f"{path}.length")
        captured = expect_int(body["captured"], f"{path}.captured")
        digest = expect_bytes(body["digest"], f"{path}.digest")
        truncated = expect_bool(body["truncated"], f"{path}.truncated")
        try:
            return cls(name, length, captured, digest, truncated)
        except ContractError as exc:
            raise exc.under(path) from None


@dataclass(frozen=True, slots=True)
class BudgetWitness:
    """What the run shows about one budget: the limit applied, the observation, the source."""

    dimension: BudgetDimension
    limit: int | None
    guarantee: str
    observed: int | None
    exceeded: bool
    source: str

    def __post_init__(self) -> None:
        if not isinstance(self.dimension, BudgetDimension):
            raise ContractError("dimension", f"{self.dimension!r} is not a BudgetDimension")
        if self.limit is not None:
            expect_int(self.limit, "limit", minimum=0, maximum=U64_MAX)
        expect_text(self.guarantee, "guarantee", nonempty=True)
        if self.observed is not None:
            expect_int(self.observed, "observed", minimum=0, maximum=U64_MAX)
        expect_bool(self.exceeded, "exceeded")
        expect_text(self.source, "source", nonempty=True)

    def to_value(self) -> dict[str, canonical.Value]:
        return {
            "dimension": self.dimension.value,
            "limit": self.limit,
            "guarantee": self.guarantee,
            "observed": self.observed,
            "exceeded": self.exceeded,
            "source": self.source,
        }

    @classmethod
    def from_value(cls, value: object, path: str = "witness") -> BudgetWitness:
        keys = ("dimension", "limit", "guarantee", "observed", "exceeded", "source")
        body = expect_map(value, path, required=keys)
        limit, observed = body["limit"], body["observed"]
        return cls(
            expect_enum(BudgetDimension, body["dimension"], f"{path}.dimension"),
            None if limit is None else expect_int(limit, f"{path}.limit", minimum=0),
            expect_text(body["guarantee"], f"{path}.guarantee", nonempty=True),
            None if observed is None else expect_int(observed, f"{path}.observed", minimum=0),
            expect_bool(body["exceeded"], f"{path}.exceeded"),
            expect_text(body["source"], f"{path}.source", nonempty=True),
        )


_ID_FIELDS = ("plan_id", "attempt_id", "h_a", "h_p", "h_l")


@dataclass(frozen=True, slots=True)
class BodyField:
    """How one body field is read back from its canonical value and written to it.

    ``read(value, path)`` is strict (a ContractError names the path); for a list field
    (``each``) it reads, and ``write`` writes, one item. One table, :data:`BODY_FIELDS`,
    is both :meth:`BoundaryReportBody.from_value` and ``to_value``, so a reader that takes
    the body apart by its fields' bytes (replay) reads each exactly as they do.
    """

    read: Callable[[object, str], Any]
    write: Callable[[Any], canonical.Value]
    each: bool = False

    def read_field(self, value: object, path: str) -> Any:
        if not self.each:
            return self.read(value, path)
        read = self.read
        return tuple(read(item, f"{path}[{i}]") for i, item in enumerate(expect_array(value, path)))

    def write_field(self, value: Any) -> canonical.Value:
        if not self.each:
            return self.write(value)
        write = self.write
        return [write(item) for item in value]


def _schema(value: object, path: str) -> int:
    schema = expect_int(value, path, minimum=1)
    if schema != REPORT_SCHEMA_VERSION:
        raise ContractError(
            path,
            f"unsupported report schema {schema} (this reader knows {REPORT_SCHEMA_VERSION})",
            "unsupported-schema",
        )
    return schema


def _id(value: object, path: str) -> bytes:
    return expect_bytes(value, path, size=DIGEST_SIZE)


def _same(value: Any) -> canonical.Value:
    return value  # type: ignore[no-any-return]


def _item(value: Any) -> canonical.Value:
    return value.to_value()  # type: ignore[no-any-return]


def _exit(value: object, path: str) -> ExitStatus | None:
    return None if value is None else ExitStatus.from_value(value, path)


# Every body field, in the order they are read (which field's error is reported first).
BODY_FIELDS: Final[Mapping[str, BodyField]] = {
    "schema_version": BodyField(_schema, _same),
    **{name: BodyField(_id, _same) for name in _ID_FIELDS},
    "backend": BodyField(lambda v, p: expect_text(v, p, nonempty=True), _same),
    "profile": BodyField(expect_text, _same),
    "outcome": BodyField(Outcome.from_value, lambda o: o.value),
    "admitted": BodyField(AdmittedRequirement.from_value, _item, each=True),
    "observed": BodyField(ObservedFact.from_value, _item, each=True),
    "denied_attempts": BodyField(DeniedAttempt.from_value, _item, each=True),
    "exit": BodyField(_exit, lambda e: None if e is None else e.to_value()),
    "streams": BodyField(StreamRecord.from_value, _item, each=True),
    "budget_witnesses": BodyField(BudgetWitness.from_value, _item, each=True),
    "artifacts": BodyField(expect_text, _same, each=True),
    "findings": BodyField(expect_text, _same, each=True),
}
_BODY_KEYS = tuple(BODY_FIELDS)


@dataclass(frozen=True, slots=True)
class BoundaryReportBody:
    """Everything the seal covers. Ids and digests are 32 bytes; lists keep their order."""

    schema_version: int
    plan_id: bytes
    attempt_id: bytes
    h_a: bytes
    h_p: bytes
    h_l: bytes
    backend: str
    profile: str
    outcome: Outcome
    admitted: tuple[AdmittedRequirement, ...]
    observed: tuple[ObservedFact, ...]
    denied_attempts: tuple[DeniedAttempt, ...]
    exit: ExitStatus | None
    streams: tuple[StreamRecord, ...]
    budget_witnesses: tuple[BudgetWitness, ...]
    artifacts: tuple[str, ...]
    findings: tuple[str, ...]

    def __post_init__(self) -> None:
        expect_int(self.schema_version, "schema_version", minimum=1, maximum=U64_MAX)
        for name in _ID_FIELDS:
            expect_bytes(getattr(self, name), name, size=DIGEST_SIZE)
        expect_text(self.backend, "backend", nonempty=True)
        expect_text(self.profile, "profile")
        if not isinstance(self.outcome, Outcome):
            raise ContractError("outcome", f"{self.outcome!r} is not an Outcome", "wrong-type")
        if self.exit is not None and not isinstance(self.exit, ExitStatus):
            raise ContractError("exit", "expected an ExitStatus or None", "wrong-type")
        typed: tuple[tuple[str, type], ...] = (
            ("admitted", AdmittedRequirement),
            ("observed", ObservedFact),
            ("denied_attempts", DeniedAttempt),
            ("streams", StreamRecord),
            ("budget_witnesses", BudgetWitness),
        )
        for name, cls in typed:
            items = as_tuple(getattr(self, name), name)
            for index, item in enumerate(items):
                if not isinstance(item, cls):
                    raise ContractError(f"{name}[{index}]", f"expected {cls.__name__}")
            object.__setattr__(self, name, items)
        for name in ("artifacts", "findings"):
            object.__setattr__(self, name, _texts(getattr(self, name), name))

    def to_value(self) -> dict[str, canonical.Value]:
        return {name: field.write_field(getattr(self, name)) for name, field in BODY_FIELDS.items()}

    def seal(self) -> bytes:
        """The ``bvisor.report.v1`` digest of this body."""
        return digest_value(Purpose.REPORT, self.to_value())

    @classmethod
    def from_value(cls, value: object, path: str = "body") -> BoundaryReportBody:
        body = expect_map(value, path, required=_BODY_KEYS)
        fields = {
            name: field.read_field(body[name], f"{path}.{name}")
            for name, field in BODY_FIELDS.items()
        }
        return cls(**fields)


@dataclass(frozen=True, slots=True)
class SealedReport:
    """A report body with its seal. Build with :func:`seal_report`; read with ``from_value``."""

    body: BoundaryReportBody
    seal: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.body, BoundaryReportBody):
            raise ContractError("body", "expected a BoundaryReportBody", "wrong-type")
        expect_bytes(self.seal, "seal", size=DIGEST_SIZE)

    def verify(self) -> bool:
        """Whether the seal is the digest of the body (constant-time comparison)."""
        import hmac  # not at the top: it loads OpenSSL, which a run need not (bvisor.sha256)

        return hmac.compare_digest(self.body.seal(), self.seal)

    def to_value(self) -> dict[str, canonical.Value]:
        return {"body": self.body.to_value(), "seal": self.seal}

    @classmethod
    def from_value(cls, value: object, path: str = "report") -> SealedReport:
        """Decode and re-check the seal; a mismatch is a ContractError, never a report."""
        body_map = expect_map(value, path, required=("body", "seal"))
        report = cls(
            BoundaryReportBody.from_value(body_map["body"], f"{path}.body"),
            expect_bytes(body_map["seal"], f"{path}.seal", size=DIGEST_SIZE),
        )
        if not report.verify():
            raise ContractError(
                f"{path}.seal", "seal does not match the report body (tampered?)", "bad-seal"
            )
        return report


def seal_report(body: BoundaryReportBody) -> SealedReport:
    """Seal ``body``: the seal is the ``bvisor.report.v1`` digest of its canonical value."""
    return SealedReport(body, body.seal())
