"""Ledgers recorded by released versions keep verifying and replaying, forever.

Each folder of ``tests/compat/ledgers`` (see its README for the commit that wrote it) is
copied to a scratch directory (the checked-in bytes are never opened for writing), its
chain is verified against the head recorded with it, and every run must replay as
``verified`` under the rules version it names. Then a run is appended today, and the old
runs and the new one must all verify together.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import Any

import pytest

from bvisor import replay
from bvisor.contract import (
    BoundarySpec,
    BudgetRequirements,
    CaptureStreams,
    EvidenceRequirements,
    LaunchWorkload,
    ProcessWorkload,
    StdStreams,
)
from bvisor.front.api import run_confined
from bvisor.ledger import Ledger, verify
from bvisor.planner.errors import PlanRefusal
from bvisor.planner.rules import RELEASED

LEDGERS = Path(__file__).resolve().parent / "ledgers"
RECORDED = sorted(p for p in LEDGERS.iterdir() if (p / "data.mdb").is_file())


def _copy(recorded: Path, tmp_path: Path) -> Path:
    target = tmp_path / "ledger"
    target.mkdir()
    shutil.copyfile(recorded / "data.mdb", target / "data.mdb")
    (target / "data.mdb").chmod(0o600)
    return target


def _head(recorded: Path) -> str:
    return (recorded / "HEAD").read_text().strip()


def test_there_is_a_ledger_of_the_first_released_rules() -> None:
    assert any(p.name.startswith("v1-") for p in RECORDED), RECORDED


def test_every_released_rules_version_has_a_ledger() -> None:
    # A version recorded in no folder would have nothing proving its runs keep replaying.
    versions = {int(p.name.split("-")[0].removeprefix("v")) for p in RECORDED}
    assert versions >= set(RELEASED), (sorted(versions), sorted(RELEASED))


def _events(recorded: Path, tmp_path: Path) -> list[tuple[str, Any]]:
    """(kind, payload) of every recorded event; payloads as plain values, read in tests."""
    with Ledger.open(_copy(recorded, tmp_path), readonly=True) as ledger:
        return [(e.kind, e.payload) for e in ledger.events()]


def _rules_versions(events: list[tuple[str, Any]]) -> list[int]:
    """The rules version of every recorded plan, admitted or refused."""
    return [
        payload["admission"]["rules_version"] if kind == "plan.admitted"
        else payload.get("rules_version", 1)
        for kind, payload in events
        if kind in ("plan.admitted", "plan.refused")
    ]  # fmt: skip


@pytest.mark.parametrize("recorded", RECORDED, ids=[p.name for p in RECORDED])
def test_each_ledger_holds_plans_of_its_own_rules(recorded: Path, tmp_path: Path) -> None:
    versions = _rules_versions(_events(recorded, tmp_path))
    assert versions and set(versions) == {int(recorded.name.split("-")[0][1:])}, versions


def test_the_v2_ledger_exercises_what_v2_added(tmp_path: Path) -> None:
    # The kinds the v2 rules brought must be in the test data, or its replay proves little.
    (v2,) = [p for p in RECORDED if p.name.startswith("v2-")]
    events = _events(v2, tmp_path)
    kinds = {kind for kind, _ in events}
    assert {"network.decision", "run.denied", "plan.refused", "note.external"} <= kinds, kinds
    sealed = [payload["body"] for kind, payload in events if kind == "report.sealed"]
    facts = {fact["kind"] for body in sealed for fact in body["observed"]}
    outcomes = {body["outcome"] for body in sealed}
    assert {"output_listed", "network_activity"} <= facts, facts
    assert {"completed", "failed", "timeout"} <= outcomes, outcomes


def test_the_v3_ledger_exercises_what_v3_added(tmp_path: Path) -> None:
    (v3,) = [p for p in RECORDED if p.name.startswith("v3-")]
    events = _events(v3, tmp_path)
    vias = {p["decision"]["via"] for kind, p in events if kind == "network.decision"}
    assert {"dns", "http"} <= vias, vias
    entries = {p["entry"]["id"] for kind, p in events if kind == "lowering.entry"}
    assert "linux.netdns.v1" in entries, entries


def test_the_v4_ledger_exercises_what_v4_added(tmp_path: Path) -> None:
    (v4,) = [p for p in RECORDED if p.name.startswith("v4-")]
    events = _events(v4, tmp_path)
    admitted = [kind for kind, _ in events if kind == "plan.admitted"]
    entries = [p["entry"]["id"] for kind, p in events if kind == "lowering.entry"]
    assert entries.count("linux.utsns.v1") == len(admitted) > 0, entries
    noted = "# uts namespace created: hostname=sandbox domainname=(none)"
    lines = [p["line"] for kind, p in events if kind == "launcher.phase"]
    assert lines.count(noted) == len(admitted), [line for line in lines if "uts" in line]
    streams = [p["data"] for kind, p in events if kind == "run.streams"]
    seen = b"hostname=sandbox domainname=(none)\nrename=refused\nuname-n=sandbox\n"
    assert any(seen in (data if isinstance(data, bytes) else data.encode()) for data in streams)


@pytest.mark.parametrize("recorded", RECORDED, ids=[p.name for p in RECORDED])
def test_an_old_ledger_verifies_and_every_run_replays(recorded: Path, tmp_path: Path) -> None:
    path = _copy(recorded, tmp_path)
    with Ledger.open(path, readonly=True) as ledger:
        result = verify(ledger)
        assert result.ok, result.findings
        head = ledger.head()
        assert head is not None and f"{head.seq}:{head.hash.hex()}" == _head(recorded)
        report = replay.audit(ledger)
    assert report.ok, report.to_json()
    assert report.runs and all(run.verdict == replay.VERIFIED for run in report.runs)


def _today_spec() -> BoundarySpec:
    return BoundarySpec(
        workload=ProcessWorkload("/bin/sh", ("-c", "echo appended-today")),
        capabilities=(),
        controls=(LaunchWorkload(), CaptureStreams(StdStreams(stdout=True, stderr=True))),
        budgets=BudgetRequirements(),
        evidence=EvidenceRequirements(),
    )


@pytest.mark.parametrize("recorded", RECORDED, ids=[p.name for p in RECORDED])
def test_a_run_appended_today_verifies_with_the_old_ones(recorded: Path, tmp_path: Path) -> None:
    path = _copy(recorded, tmp_path)
    with Ledger.open(path, readonly=True) as ledger:
        before = len(replay.audit(ledger).runs)
    # Refused on a host without the features: the refusal is recorded too.
    with contextlib.suppress(PlanRefusal):
        run_confined(_today_spec(), ledger=str(path))
    with Ledger.open(path, readonly=True) as ledger:
        assert verify(ledger).ok
        report = replay.audit(ledger)
    assert len(report.runs) == before + 1
    assert report.ok, report.to_json()
