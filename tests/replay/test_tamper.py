"""The tamper catalogue: edits at the level of meaning, each caught by the check that owns it.

Every forged ledger here is rebuilt from scratch through ``Ledger.append``, so all event
hashes and the chain are recomputed: ``chain`` passes (and the test asserts it does — the
forgery is a good one), and only the meaning checks stand between the forger and a
``verified`` verdict.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bvisor.contract import BoundarySpec, Filesystem, FsAccess
from bvisor.ledger import Ledger, verify
from bvisor.replay import FAILED, INCOMPLETE, VERIFIED, RunAudit, audit
from tests.replay.helpers import (
    Copied,
    FakeRun,
    first,
    forge,
    record_refusal,
    record_synthetic,
    renumber,
    reseal,
)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ledger]:
    """One failed run (exit 3, 'hi' on stdout) and one refusal, recorded honestly."""
    ledger = Ledger.open(tmp_path_factory.mktemp("source") / "ledger", create=True)
    record_synthetic(ledger, fake=FakeRun())
    record_refusal(ledger)
    yield ledger
    ledger.close()


def _audit_forged(source: Ledger, tmp_path: Path, edit: object) -> list[RunAudit]:
    forged = forge(source, tmp_path / "forged", edit)  # type: ignore[arg-type]
    try:
        assert verify(forged).ok, "the forger rewrites the chain; ledger verify must pass"
        report = audit(forged)
    finally:
        forged.close()
    for run in report.runs:
        assert run.checks[0].name == "chain" and run.checks[0].ok, run.checks[0]
    return report.runs


def _caught_by(runs: list[RunAudit], name: str, index: int = 0) -> str:
    run = runs[index]
    assert run.verdict == FAILED, [(c.name, c.detail) for c in run.checks]
    check = next(c for c in run.checks if c.name == name)
    assert not check.ok and check.status == "checked", check
    return check.detail


def _admitted(events: list[Copied]) -> Copied:
    return first(events, "plan.admitted")


def test_an_untouched_copy_is_verified(source: Ledger, tmp_path: Path) -> None:
    runs = _audit_forged(source, tmp_path, lambda events: None)
    assert [run.verdict for run in runs] == [VERIFIED, VERIFIED]


def test_spec_widened_after_admission_is_caught_by_h_a(source: Ledger, tmp_path: Path) -> None:
    def widen(events: list[Copied]) -> None:
        payload = _admitted(events).payload
        spec = BoundarySpec.from_value(payload["spec"])
        capabilities = tuple(
            Filesystem(access=FsAccess.READ_WRITE, roots=("/",)) if isinstance(c, Filesystem) else c
            for c in spec.capabilities
        )
        widened = BoundarySpec(
            spec.workload, capabilities, spec.controls, spec.budgets, spec.evidence
        )
        payload["spec"] = widened.to_value()

    detail = _caught_by(_audit_forged(source, tmp_path, widen), "h_a")
    assert "filesystem" in detail or "requirements" in detail, detail


def test_profile_fact_changed_is_caught_by_h_p(source: Ledger, tmp_path: Path) -> None:
    def change_fact(events: list[Copied]) -> None:
        _admitted(events).payload["profile"]["facts"]["kernel_release"] = "9.99.0-forged"

    _caught_by(_audit_forged(source, tmp_path, change_fact), "h_p")


def test_profile_fact_changed_on_a_refusal_is_caught_by_h_p(source: Ledger, tmp_path: Path) -> None:
    def change_fact(events: list[Copied]) -> None:
        first(events, "plan.refused").payload["profile"]["facts"]["arch"] = "forged"

    runs = _audit_forged(source, tmp_path, change_fact)
    _caught_by(runs, "h_p", index=1)


def test_refusal_code_changed_is_caught_by_h_a(source: Ledger, tmp_path: Path) -> None:
    def change_code(events: list[Copied]) -> None:
        first(events, "plan.refused").payload["refusal"]["code"] = "budget-refused"

    detail = _caught_by(_audit_forged(source, tmp_path, change_code), "h_a", index=1)
    assert "budget-refused" in detail


def test_lowering_entry_dropped_is_caught_by_h_l(source: Ledger, tmp_path: Path) -> None:
    def drop(events: list[Copied]) -> list[Copied]:
        entries = [e for e in events if e.kind == "lowering.entry"]
        kept = [e for e in events if e is not entries[1]]
        renumber(kept, "lowering.entry")
        return kept

    detail = _caught_by(_audit_forged(source, tmp_path, drop), "h_l")
    assert "lowering" in detail


def test_lowering_entries_reordered_are_caught_by_h_l(source: Ledger, tmp_path: Path) -> None:
    def swap(events: list[Copied]) -> list[Copied]:
        positions = [i for i, e in enumerate(events) if e.kind == "lowering.entry"]
        a, b = positions[0], positions[-1]
        events[a], events[b] = events[b], events[a]
        renumber(events, "lowering.entry")
        return events

    _caught_by(_audit_forged(source, tmp_path, swap), "h_l")


def test_launcher_state_removed_is_caught_by_transcript(source: Ledger, tmp_path: Path) -> None:
    def remove(events: list[Copied]) -> list[Copied]:
        kept = [
            e
            for e in events
            if not (e.kind == "launcher.phase" and e.payload["line"] == "PlanVerified")
        ]
        renumber(kept, "launcher.phase")
        return kept

    detail = _caught_by(_audit_forged(source, tmp_path, remove), "transcript")
    assert "PlanVerified" in detail or "HandlesVerified" in detail


def test_outcome_failed_to_completed_is_caught_by_report_and_seal(
    source: Ledger, tmp_path: Path
) -> None:
    def complete(events: list[Copied]) -> None:
        first(events, "run.terminal").payload["outcome"] = "completed"
        first(events, "report.sealed").payload["body"]["outcome"] = "completed"

    runs = _audit_forged(source, tmp_path, complete)
    _caught_by(runs, "seal")
    assert "exit code 0" in _caught_by(runs, "report")


def test_captured_output_altered_is_caught_by_streams(source: Ledger, tmp_path: Path) -> None:
    def alter(events: list[Copied]) -> None:
        chunk = next(
            e for e in events if e.kind == "run.streams" and e.payload["stream"] == "stdout"
        )
        chunk.payload["data"] = b"ok\n"

    detail = _caught_by(_audit_forged(source, tmp_path, alter), "streams")
    assert "stdout" in detail


def test_report_resealed_after_editing_is_caught_by_report(source: Ledger, tmp_path: Path) -> None:
    def edit_and_reseal(events: list[Copied]) -> None:
        body = first(events, "report.sealed").payload["body"]
        body["outcome"] = "completed"
        body["exit"] = {"code": 0, "signal": None}
        reseal(events)

    runs = _audit_forged(source, tmp_path, edit_and_reseal)
    detail = _caught_by(runs, "report")
    assert "outcome" in detail and "exit" in detail
    assert next(c for c in runs[0].checks if c.name == "seal").ok


def test_launcher_note_dropped_from_a_resealed_report_is_caught_by_report(
    source: Ledger, tmp_path: Path
) -> None:
    def drop_note(events: list[Copied]) -> None:
        body = first(events, "report.sealed").payload["body"]
        body["observed"] = [f for f in body["observed"] if f["kind"] != "launcher_note"]
        reseal(events)

    assert "launcher_note" in _caught_by(_audit_forged(source, tmp_path, drop_note), "report")


def test_run_terminal_without_report_is_a_grammar_failure(source: Ledger, tmp_path: Path) -> None:
    def cut(events: list[Copied]) -> list[Copied]:
        return [e for e in events if e.kind != "report.sealed"]

    runs = _audit_forged(source, tmp_path, cut)
    _caught_by(runs, "grammar")
    assert all(c.status == "skipped" for c in runs[0].checks[2:])


def test_foreign_event_in_a_run_is_a_grammar_failure(source: Ledger, tmp_path: Path) -> None:
    def insert(events: list[Copied]) -> list[Copied]:
        admitted = _admitted(events)
        position = events.index(first(events, "run.terminal"))
        events.insert(position, Copied("audit.remark", admitted.run_id, {"text": "hello"}))
        return events

    # (note.* events are external evidence and may be attached to a run; other kinds not)
    assert "audit.remark" in _caught_by(_audit_forged(source, tmp_path, insert), "grammar")


def test_duplicated_terminal_is_a_grammar_failure(source: Ledger, tmp_path: Path) -> None:
    def duplicate(events: list[Copied]) -> list[Copied]:
        terminal = first(events, "run.terminal")
        events.insert(
            events.index(terminal), Copied(terminal.kind, terminal.run_id, terminal.payload)
        )
        return events

    _caught_by(_audit_forged(source, tmp_path, duplicate), "grammar")


def test_extra_payload_key_is_a_grammar_failure(source: Ledger, tmp_path: Path) -> None:
    def extra(events: list[Copied]) -> None:
        first(events, "run.terminal").payload["note"] = "trust me"

    assert "note" in _caught_by(_audit_forged(source, tmp_path, extra), "grammar")


def test_admitted_run_cut_after_admission_is_incomplete_and_a_tampered_one_failed(
    source: Ledger, tmp_path: Path
) -> None:
    def cut(events: list[Copied]) -> list[Copied]:
        return [e for e in events if e.kind in ("plan.admitted", "lowering.entry", "plan.refused")]

    runs = _audit_forged(source, tmp_path, cut)
    assert runs[0].verdict == INCOMPLETE
    assert [c.ok for c in runs[0].checks[:6]] == [True, False, True, True, True, True]

    def cut_and_widen(events: list[Copied]) -> list[Copied]:
        kept = cut(events)
        _admitted(kept).payload["profile"]["facts"]["kernel_release"] = "forged"
        return kept

    runs = _audit_forged(source, tmp_path / "second", cut_and_widen)
    assert runs[0].verdict == FAILED
