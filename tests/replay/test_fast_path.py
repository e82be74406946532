"""The audit's fast path: runs read by their payloads' bytes, verdicts remembered by them.

``bvisor.replay.records`` reads a run from its proven records without decoding what it has
seen before, and ``bvisor.replay.plancache`` remembers the plan checks of runs that share a
plan. Neither may change a verdict or a detail: every audit here is compared, as its whole
JSON, with the audit of the same ledger with both turned off (every run decoded and parsed
by ``parse_run``, every plan check computed). And neither may carry a verdict from one run
to another that does not share *all* of its inputs: a run whose plan matches an honest
run's but for one forged part is caught exactly as if it were audited alone.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bvisor.contract import BoundarySpec, Filesystem, FsAccess
from bvisor.contract.lowering import param_digest
from bvisor.ledger import Ledger, ProvenRecord, verify, verify_runs
from bvisor.replay import FAILED, VERIFIED, RunAudit, audit, plancache, records
from bvisor.replay.events import parse_run
from bvisor.replay.memo import Memo
from tests.compat.test_compat_ledgers import RECORDED, _copy
from tests.replay.helpers import (
    Copied,
    FakeRun,
    forge,
    observed,
    record_refusal,
    record_synthetic,
    reseal,
)

_AUDIT = importlib.import_module(
    "bvisor.replay.audit"
)  # the module (the package names the function)
_RUNS = 4  # the same spec each time, on this host's one profile: one plan for all


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ledger]:
    """Four runs of one spec (so one plan), a refusal, and one run of another spec."""
    ledger = Ledger.open(tmp_path_factory.mktemp("shared") / "ledger", create=True)
    for index in range(_RUNS):
        record_synthetic(ledger, fake=FakeRun(stdout=f"run {index}\n".encode()))
    record_refusal(ledger)
    record_synthetic(ledger, spec=_other_spec())
    yield ledger
    ledger.close()


def _other_spec() -> BoundarySpec:
    from tests.replay.helpers import base_spec

    spec = base_spec(("-c", "true"))
    return BoundarySpec(
        spec.workload,
        (Filesystem(access=FsAccess.READ, roots=("/etc",)), *spec.capabilities[1:]),
        spec.controls,
        spec.budgets,
        spec.evidence,
    )


def _slow_audit(ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The audit with the fast path and the plan memo off (the reference)."""
    with monkeypatch.context() as patch:
        patch.setattr(_AUDIT, "parse_records", lambda run_id, found: None)
        patch.setattr(plancache, "_PLANS", Memo(1, -1))  # keeps nothing
        patch.setattr(plancache, "_LOWERINGS", Memo(1, -1))
        return audit(ledger)


def _both(ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> list[RunAudit]:
    """Audit twice (fast, then fast again with warm memos) and compare with the slow one."""
    slow = json.dumps(_slow_audit(ledger, monkeypatch).to_json(), sort_keys=True)
    for _ in range(2):
        fast = audit(ledger)
        assert json.dumps(fast.to_json(), sort_keys=True) == slow
    return fast.runs


def _forged(
    source: Ledger, tmp_path: Path, edit: Any, monkeypatch: pytest.MonkeyPatch
) -> list[RunAudit]:
    forged = forge(source, tmp_path / "forged", edit)
    try:
        assert verify(forged).ok, "the forger rewrites the chain"
        runs = _both(forged, monkeypatch)
    finally:
        forged.close()
    assert all(run.checks[0].ok for run in runs)
    return runs


def _of_run(events: list[Copied], number: int, kind: str) -> list[Copied]:
    """The events of ``kind`` of the ``number``-th recorded run."""
    run_ids = list(dict.fromkeys(e.run_id for e in events))
    return [e for e in events if e.run_id == run_ids[number] and e.kind == kind]


def _caught(runs: list[RunAudit], number: int, name: str) -> str:
    run = runs[number]
    assert run.verdict == FAILED, [(c.name, c.detail) for c in run.checks]
    check = next(c for c in run.checks if c.name == name)
    assert not check.ok, check
    # the runs before it, sharing its plan, are unaffected
    assert [r.verdict for r in runs[:number]] == [VERIFIED] * number
    return check.detail


def test_every_run_is_read_by_its_bytes_as_parse_run_reads_it(source: Ledger) -> None:
    grouped: dict[bytes, list[ProvenRecord]] = {}
    verify_runs(source, on_record=lambda r: grouped.setdefault(r.run_id or b"", []).append(r))
    read = 0
    for run_id, found in grouped.items():
        events = [record.event() for record in found]
        assert events == [source.get(record.seq) for record in found]
        fast = records.parse_records(run_id, found)
        if events[0].kind == "plan.refused":
            assert fast is None  # not read this way: parse_run does
            continue
        assert fast == parse_run(run_id, events)
        read += 1
    assert read == _RUNS + 1


def test_an_honest_ledger_audits_alike_either_way(
    source: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = _both(source, monkeypatch)
    assert [run.verdict for run in runs] == [VERIFIED] * (_RUNS + 2)


def test_a_tampered_lowering_of_a_run_sharing_a_plan_is_caught(
    source: Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The brief's case: the same spec and profile as the runs before it (whose h_l passed
    and was remembered), one lowering entry's parameters edited and re-digested."""

    def edit(events: list[Copied]) -> None:
        entry = next(e for e in _of_run(events, 2, "lowering.entry") if e.payload["params"] != {})
        params = entry.payload["params"]
        key = sorted(params)[0]
        params[key] = "forged" if not isinstance(params[key], str) else params[key] + "x"
        entry.payload["entry"]["param_digest"] = param_digest(params)

    runs = _forged(source, tmp_path, edit, monkeypatch)
    detail = _caught(runs, 2, "h_l")
    assert "params" in detail or "param_digest" in detail or "h_l" in detail
    assert runs[3].verdict == VERIFIED


def test_a_stated_h_l_changed_on_a_run_sharing_a_plan_is_caught(
    source: Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its lowering entries are byte for byte the remembered ones; its stated h_l is not."""

    def edit(events: list[Copied]) -> None:
        admitted = _of_run(events, 1, "plan.admitted")[0]
        admitted.payload["h_l"] = bytes(32)

    runs = _forged(source, tmp_path, edit, monkeypatch)
    assert "h_l" in _caught(runs, 1, "h_l")
    assert not next(c for c in runs[1].checks if c.name == "plan_id").ok


def test_a_widened_spec_on_a_run_sharing_a_profile_is_caught(
    source: Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def edit(events: list[Copied]) -> None:
        payload = _of_run(events, 3, "plan.admitted")[0].payload
        spec = BoundarySpec.from_value(payload["spec"])
        capabilities = tuple(
            Filesystem(access=FsAccess.READ_WRITE, roots=("/",)) if isinstance(c, Filesystem) else c
            for c in spec.capabilities
        )
        payload["spec"] = BoundarySpec(
            spec.workload, capabilities, spec.controls, spec.budgets, spec.evidence
        ).to_value()

    runs = _forged(source, tmp_path, edit, monkeypatch)
    _caught(runs, 3, "h_a")


def test_an_edited_admission_record_on_a_run_sharing_a_plan_is_caught(
    source: Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def edit(events: list[Copied]) -> None:
        admission = _of_run(events, 1, "plan.admitted")[0].payload["admission"]
        decision = admission["requirements"][0]
        decision["mechanism"] = decision["mechanism"] + ".forged"

    runs = _forged(source, tmp_path, edit, monkeypatch)
    _caught(runs, 1, "h_a")


def test_a_forged_fact_in_a_resealed_report_of_a_later_run_is_caught(
    source: Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Report facts are remembered one by one: a forged one is read (and judged) afresh."""

    def edit(events: list[Copied]) -> None:
        body = _of_run(events, 2, "report.sealed")[0].payload["body"]
        body["observed"] = [
            observed("workload_launched", "pid=1") if f["kind"] == "workload_launched" else f
            for f in body["observed"]
        ]
        reseal(events)

    runs = _forged(source, tmp_path, edit, monkeypatch)
    assert "workload_launched" in _caught(runs, 2, "report")


def test_a_launcher_line_changed_in_a_later_run_is_caught(
    source: Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def edit(events: list[Copied]) -> None:
        line = next(
            e for e in _of_run(events, 3, "launcher.phase") if e.payload["line"].startswith("# ")
        )
        line.payload["line"] = "# forged note"

    runs = _forged(source, tmp_path, edit, monkeypatch)
    _caught(runs, 3, "report")


def test_a_line_moved_to_another_index_is_read_at_its_new_place(
    source: Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A remembered line is the line *at its index*: the same bytes elsewhere are refused
    by the grammar (the index it holds is not the one expected there)."""

    def edit(events: list[Copied]) -> None:
        lines = _of_run(events, 2, "launcher.phase")
        lines[1].payload = dict(lines[0].payload)  # index 0's line, with its index 0

    runs = _forged(source, tmp_path, edit, monkeypatch)
    assert "index" in _caught(runs, 2, "grammar")


def test_the_memo_is_bounded() -> None:
    memo: Memo[bytes, int] = Memo(2, 4)
    memo.put(b"a", 1, 1)
    memo.put(b"b", 2, 1)
    assert memo.get(b"a") == 1 and memo.get(b"b") == 2
    memo.put(b"c", 3, 1)  # full: cleared, then kept
    assert memo.get(b"a") is None and memo.get(b"c") == 3
    assert memo.put(b"large", 4, 5) == 4 and memo.get(b"large") is None


@pytest.mark.parametrize("recorded", RECORDED, ids=[p.name for p in RECORDED])
def test_ledgers_of_released_versions_audit_alike_either_way(
    recorded: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Runs of every released rules version (network decisions, outputs, denials, reruns
    among them): the fast path reads the ones it can, and no verdict or detail moves."""
    read: list[bool] = []
    parse = records.parse_records

    def counted(run_id: bytes, found: Any) -> Any:
        parsed = parse(run_id, found)
        read.append(parsed is not None)
        return parsed

    with Ledger.open(_copy(recorded, tmp_path), readonly=True) as ledger:
        slow = _slow_audit(ledger, monkeypatch)
        monkeypatch.setattr(_AUDIT, "parse_records", counted)
        fast = audit(ledger)
    assert json.dumps(fast.to_json(), sort_keys=True) == json.dumps(slow.to_json(), sort_keys=True)
    assert any(read), "no run of the ledger was read by its bytes"


def test_a_plan_differing_after_its_attempt_id_is_read_afresh(
    source: Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``plan.admitted`` of a run sharing a plan is the one read before but for its attempt
    id; a byte after the attempt id (the schema version sorts last) is not the same plan."""

    def edit(events: list[Copied]) -> None:
        _of_run(events, 2, "plan.admitted")[0].payload["schema_version"] = 2  # one byte, too

    runs = _forged(source, tmp_path, edit, monkeypatch)
    assert "schema" in _caught(runs, 2, "grammar")


def test_the_memo_holds_at_most_its_budget_of_key_bytes() -> None:
    memo: Memo[bytes, int] = Memo(100, 8, budget=10)
    memo.put(b"a" * 6, 1, 6)
    memo.put(b"b" * 3, 2, 3)
    assert memo.held == 9 and len(memo.table) == 2
    memo.put(b"c" * 4, 3, 4)  # 13 bytes would pass the budget: cleared, then kept
    assert memo.held == 4 and list(memo.table.values()) == [3]
