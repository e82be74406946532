"""Each run is re-derived with the rules version it recorded; an unknown one is a verdict.

A run naming planner rules this build lacks (written by a newer bvisor, say) is neither a
crash nor a failure: its verdict is ``unknown-rules``, everything that needs no rules is
still checked (a forged digest still fails), and ``bvisor-replay`` exits 3.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bvisor.contract import BoundarySpec
from bvisor.contract.admission import AdmissionRecord, admission_digest
from bvisor.contract.plan import plan_identity
from bvisor.front.cli.replay_cmd import main as replay_main
from bvisor.ledger import Ledger
from bvisor.planner.rules import CURRENT, RELEASED, UnknownRulesVersion, rules_for
from bvisor.replay import FAILED, UNKNOWN_RULES, VERIFIED, audit
from tests.replay.helpers import Copied, first, forge, record_refusal, record_synthetic, reseal


def _renamed(events: list[Copied], version: int, *, fix_digests: bool) -> None:
    admitted = first(events, "plan.admitted").payload
    admitted["admission"]["rules_version"] = version
    if fix_digests:
        record = AdmissionRecord.from_value(admitted["admission"])
        admitted["h_a"] = admission_digest(record)
        plan_id = plan_identity(
            admitted["schema_version"],
            admitted["backend"],
            BoundarySpec.from_value(admitted["spec"]),
            admitted["h_p"],
            admitted["h_a"],
            admitted["h_l"],
            record,
        )
        admitted["plan_id"] = plan_id
        sealed = first(events, "report.sealed").payload
        sealed["body"]["h_a"] = admitted["h_a"]
        sealed["body"]["plan_id"] = plan_id
    reseal(events)


@pytest.fixture
def source(tmp_path: Path) -> Any:
    ledger = Ledger.open(tmp_path / "source", create=True)
    record_synthetic(ledger)
    yield ledger
    ledger.close()


def test_rules_are_looked_up_by_version() -> None:
    assert rules_for(CURRENT.version) is CURRENT
    assert 1 in RELEASED
    for bad in (0, 999, "1", True, None):
        with pytest.raises(UnknownRulesVersion):
            rules_for(bad)


def test_a_run_under_unknown_rules_is_reported_as_such(source: Ledger, tmp_path: Path) -> None:
    forged = forge(source, tmp_path / "f", lambda ev: _renamed(ev, 999, fix_digests=True))
    try:
        (run,) = audit(forged).runs
    finally:
        forged.close()
    assert run.verdict == UNKNOWN_RULES, run.to_json()
    by_name = {c.name: c for c in run.checks}
    assert "999" in by_name["h_a"].detail and "not known" in by_name["h_a"].detail
    # What needs no rules still ran and held.
    for name in ("chain", "grammar", "h_p", "transcript", "streams", "report", "seal"):
        assert by_name[name].ok, by_name[name]
    assert replay_main(["--ledger", str(tmp_path / "f")]) == 3


def test_unknown_rules_do_not_hide_a_forged_digest(source: Ledger, tmp_path: Path) -> None:
    # The version is renamed but h_a left as it was: the recorded h_a no longer is the
    # digest of the recorded admission record, which needs no rules to see.
    forged = forge(source, tmp_path / "f", lambda ev: _renamed(ev, 999, fix_digests=False))
    try:
        (run,) = audit(forged).runs
    finally:
        forged.close()
    assert run.verdict == FAILED
    assert replay_main(["--ledger", str(tmp_path / "f")]) == 1


def test_a_refusal_names_its_rules_version(tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "l", create=True) as ledger:
        record_refusal(ledger)
        (event,) = list(ledger.events())
        assert event.payload["rules_version"] == CURRENT.version
        (run,) = audit(ledger).runs
    assert run.verdict == VERIFIED

    def rename(events: list[Copied]) -> None:
        first(events, "plan.refused").payload["rules_version"] = 999

    with Ledger.open(tmp_path / "l", readonly=True) as ledger:
        forged = forge(ledger, tmp_path / "f", rename)
    try:
        (run,) = audit(forged).runs
    finally:
        forged.close()
    assert run.verdict == UNKNOWN_RULES, run.to_json()
