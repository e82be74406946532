"""Network decisions under forgery: every edit that makes the record disagree with itself or
with the allow list is caught, even with the hash chain rewritten (see test_tamper.py).

The source is one real run through the proxy — an allowed request to a test server on the
host's loopback and a refused one — plus a synthetic deny-all run. A forger who rewrites a
verdict, an address, a byte count, the witness or where a decision stands in the run fails
replay; so does one who adds a decision to a run that had no proxy.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from bvisor.contract.events import NETWORK_DECISION as DECISION_EVENT
from bvisor.contract.netpolicy import NetworkDecision, activity_fact
from bvisor.ledger import Ledger, verify
from bvisor.replay import FAILED, VERIFIED, RunAudit, audit
from tests.e2e.netkit import CURL, allow_spec, run_allowed, serving
from tests.features import require_feature
from tests.replay.helpers import Copied, first, forge, record_synthetic, renumber, reseal


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ledger]:
    for feature in ("seccomp", "landlock", "userns", "netns", "pidns", "netns-loopback"):
        require_feature(feature)
    base = tmp_path_factory.mktemp("network")
    work = base / "work"
    work.mkdir()
    with serving("allowed") as server:
        script = (
            f"{CURL} -sS -m 10 http://127.0.0.1:{server.port}/ok; "
            f"{CURL} -sS -m 10 http://127.0.0.1:{server.port + 1}/no"
        )
        spec = allow_spec(["/bin/sh", "-c", script], [f"127.0.0.1:{server.port}"], work)
        run = run_allowed(spec, base / "ledger")
    assert run.audit_ok and sorted(d.verdict for d in run.decisions) == ["allow", "deny"], run
    ledger = Ledger.open(base / "ledger")
    record_synthetic(ledger)
    yield ledger
    ledger.close()


def _audit(source: Ledger, tmp_path: Path, edit: object) -> list[RunAudit]:
    forged = forge(source, tmp_path / "forged", edit)  # type: ignore[arg-type]
    try:
        assert verify(forged).ok, "the forger rewrites the chain; ledger verify must pass"
        return audit(forged).runs
    finally:
        forged.close()


def _failed(runs: list[RunAudit], check: str, says: str, index: int = 0) -> None:
    run = runs[index]
    assert run.verdict == FAILED, [(c.name, c.detail) for c in run.checks]
    found = next(c for c in run.checks if c.name == check)
    assert not found.ok and found.status == "checked", found
    assert says in found.detail, found.detail


def _decisions(events: list[Copied]) -> list[Copied]:
    return [e for e in events if e.kind == DECISION_EVENT]


def _the(events: list[Copied], verdict: str) -> Copied:
    return next(e for e in _decisions(events) if e.payload["decision"]["verdict"] == verdict)


def _rewrite(events: list[Copied], which: str, **changes: object) -> None:
    """Change the first ``which`` decision in its event *and* in the report's fact, reseal."""
    event = _the(events, which)
    old = NetworkDecision.from_value(event.payload["decision"])
    new = dataclasses.replace(old, **changes)  # type: ignore[arg-type]
    event.payload["decision"] = new.to_value()
    sealed = first(events, "report.sealed")
    for fact in sealed.payload["body"]["observed"]:
        if fact["kind"] == "network_activity" and fact["detail"] == activity_fact(old).detail:
            fact["detail"] = activity_fact(new).detail
            break
    else:
        raise AssertionError("the fact of that decision is not in the report")
    reseal(events)


def test_an_untouched_copy_is_verified(source: Ledger, tmp_path: Path) -> None:
    assert [run.verdict for run in _audit(source, tmp_path, lambda e: None)] == [VERIFIED] * 2


def test_a_denial_rewritten_as_allowed_is_caught_by_the_re_judgement(
    source: Ledger, tmp_path: Path
) -> None:
    runs = _audit(source, tmp_path, lambda e: _rewrite(e, "deny", verdict="allow", reason="listed"))
    _failed(runs, "report", "the allow list gives deny/not-listed")


def test_an_allowed_entry_swapped_is_caught(source: Ledger, tmp_path: Path) -> None:
    runs = _audit(source, tmp_path, lambda e: _rewrite(e, "allow", entry="*:1"))
    _failed(runs, "report", "the allow list gives allow/listed/127.0.0.1:")


def test_a_pinned_address_rewritten_is_caught(source: Ledger, tmp_path: Path) -> None:
    runs = _audit(source, tmp_path, lambda e: _rewrite(e, "allow", address="10.1.2.3"))
    _failed(runs, "report", "asked for address 127.0.0.1 but recorded address '10.1.2.3'")


def test_bytes_hidden_from_the_witness_are_caught(source: Ledger, tmp_path: Path) -> None:
    runs = _audit(source, tmp_path, lambda e: _rewrite(e, "allow", received=1))
    _failed(runs, "report", "network_bytes witness observed")


def test_a_decision_dropped_from_the_events_is_caught(source: Ledger, tmp_path: Path) -> None:
    def drop(events: list[Copied]) -> list[Copied]:
        gone = _the(events, "deny")
        kept = [e for e in events if e is not gone]
        renumber(kept, DECISION_EVENT)
        return kept

    _failed(_audit(source, tmp_path, drop), "report", "are not the recorded network decisions")


def test_a_decision_after_the_terminal_is_a_grammar_failure(source: Ledger, tmp_path: Path) -> None:
    def move(events: list[Copied]) -> list[Copied]:
        moved = _decisions(events)[-1]
        kept = [e for e in events if e is not moved]
        where = kept.index(first(kept, "run.terminal"))
        return [*kept[: where + 1], moved, *kept[where + 1 :]]

    _failed(_audit(source, tmp_path, move), "grammar", "after run.terminal")


def test_a_decision_index_gap_is_a_grammar_failure(source: Ledger, tmp_path: Path) -> None:
    def skip(events: list[Copied]) -> None:
        _decisions(events)[-1].payload["index"] = 7

    _failed(_audit(source, tmp_path, skip), "grammar", "decisions count 0, 1, 2")


def test_a_decision_added_to_a_run_without_a_proxy_is_caught(
    source: Ledger, tmp_path: Path
) -> None:
    def add(events: list[Copied]) -> None:
        template = _decisions(events)[0]
        other = [e for e in events if e.run_id != template.run_id]
        target = first(other, "run.terminal")
        extra = Copied(DECISION_EVENT, target.run_id, copy.deepcopy(template.payload))
        events.insert(events.index(target), extra)

    _failed(_audit(source, tmp_path, add), "report", "in a run without a proxy", index=1)
