"""Report seal: verify, tamper detection on every field, re-check on read."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from bvisor import canonical
from bvisor.contract import (
    BoundaryReportBody,
    BudgetDimension,
    BudgetWitness,
    ContractError,
    ExitStatus,
    ObservedFact,
    Outcome,
    SealedReport,
    StreamRecord,
    seal_report,
    stream_digest,
)
from bvisor.digest import Purpose, digest_bytes, digest_value

from .contract_vector_cases import REPORT_BODY


def test_seal_is_the_report_digest_of_the_body_value() -> None:
    sealed = seal_report(REPORT_BODY)
    assert sealed.seal == digest_value(Purpose.REPORT, REPORT_BODY.to_value())
    assert sealed.verify()


def test_round_trip_through_bytes() -> None:
    sealed = seal_report(REPORT_BODY)
    data = canonical.encode(sealed.to_value())
    assert SealedReport.from_value(canonical.decode(data)) == sealed


TAMPERS: dict[str, Any] = {
    "outcome": Outcome.FAILED,
    "exit": ExitStatus(1, None),
    "plan_id": bytes(32),
    "attempt_id": bytes(32),
    "h_a": bytes(32),
    "h_p": bytes(32),
    "h_l": bytes(32),
    "backend": "other",
    "profile": "other",
    "observed": (),
    "denied_attempts": (),
    "streams": (),
    "budget_witnesses": (),
    "artifacts": (),
    "findings": ("injected",),
    "admitted": (),
}


@pytest.mark.parametrize("field", sorted(TAMPERS))
def test_any_body_change_breaks_the_seal(field: str) -> None:
    sealed = seal_report(REPORT_BODY)
    forged = SealedReport(dataclasses.replace(REPORT_BODY, **{field: TAMPERS[field]}), sealed.seal)
    assert not forged.verify()
    with pytest.raises(ContractError) as info:
        SealedReport.from_value(forged.to_value())
    assert info.value.code == "bad-seal"
    assert info.value.path == "report.seal"


def test_flipped_seal_bit_is_detected() -> None:
    sealed = seal_report(REPORT_BODY)
    value = sealed.to_value()
    value["seal"] = bytes([sealed.seal[0] ^ 1]) + sealed.seal[1:]
    with pytest.raises(ContractError):
        SealedReport.from_value(value)


def test_seal_uses_its_own_purpose() -> None:
    data = canonical.encode(REPORT_BODY.to_value())
    assert seal_report(REPORT_BODY).seal != digest_bytes(Purpose.PLAN, data)


def test_exit_status_exactly_one() -> None:
    with pytest.raises(ContractError):
        ExitStatus(None, None)
    with pytest.raises(ContractError):
        ExitStatus(0, 9)
    with pytest.raises(ContractError):
        ExitStatus(256, None)
    assert ExitStatus.signaled(9) == ExitStatus(None, 9)
    assert ExitStatus.exited(3).to_value() == {"code": 3, "signal": None}


def test_stream_record_digest_and_truncation() -> None:
    record = StreamRecord.of("stdout", b"hello", 8)
    assert record.digest == stream_digest(b"hello") == digest_bytes(Purpose.STREAM, b"hello")
    assert record.truncated and record.captured == 5 and record.length == 8
    assert record.matches(b"hello") and not record.matches(b"hellO")
    with pytest.raises(ContractError) as info:
        StreamRecord("stdout", 8, 5, record.digest, False)
    assert info.value.path == "truncated"
    with pytest.raises(ContractError):
        StreamRecord("stdout", 4, 5, record.digest, False)


def test_body_validation_names_fields() -> None:
    with pytest.raises(ContractError) as info:
        dataclasses.replace(REPORT_BODY, h_l=b"short")
    assert info.value.path == "h_l"
    with pytest.raises(ContractError) as info:
        dataclasses.replace(REPORT_BODY, observed=("not a fact",))  # type: ignore[arg-type]
    assert info.value.path == "observed[0]"


def test_unknown_schema_version_is_refused_on_read() -> None:
    value = dataclasses.replace(REPORT_BODY, schema_version=2).to_value()
    with pytest.raises(ContractError) as info:
        BoundaryReportBody.from_value(value)
    assert info.value.code == "unsupported-schema"


def test_lists_keep_their_order() -> None:
    facts = (ObservedFact("b", ""), ObservedFact("a", ""))
    body = dataclasses.replace(REPORT_BODY, observed=facts)
    assert BoundaryReportBody.from_value(body.to_value()).observed == facts
    assert (
        seal_report(body).seal != seal_report(dataclasses.replace(body, observed=facts[::-1])).seal
    )


def test_budget_witness_round_trip() -> None:
    witness = BudgetWitness(BudgetDimension.RESIDENT_BYTES, None, "mediated", 5, True, "peak")
    assert BudgetWitness.from_value(witness.to_value()) == witness
