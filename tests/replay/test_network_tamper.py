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


def _insert_dns(events: list[Copied], decision: NetworkDecision) -> None:
    """Put ``decision`` first among the proxied run's decisions, its fact first among the
    report's network_activity facts, renumber and reseal (a forger's whole job)."""
    template = _decisions(events)[0]
    extra = Copied(DECISION_EVENT, template.run_id, {"index": 0, "decision": decision.to_value()})
    events.insert(events.index(template), extra)
    renumber(events, DECISION_EVENT)
    sealed = next(e for e in events if e.kind == "report.sealed" and e.run_id == template.run_id)
    observed = sealed.payload["body"]["observed"]
    at = next(i for i, f in enumerate(observed) if f["kind"] == "network_activity")
    observed.insert(at, activity_fact(decision).to_value())
    reseal(events)


def _dns(
    host: str, address: str | None, reason: str, entry: str | None, port: int = 53
) -> NetworkDecision:
    verdict = "allow" if reason in ("listed",) else "deny"
    return NetworkDecision("dns", host, port, address, verdict, reason, entry, 0, 0, None)


def test_the_source_run_has_the_resolver(source: Ledger, tmp_path: Path) -> None:
    runs = _audit(
        source, tmp_path, lambda e: _insert_dns(e, _dns("evil.test", None, "not-listed", None))
    )
    assert runs[0].verdict == VERIFIED, [(c.name, c.detail) for c in runs[0].checks]


def test_an_unlisted_name_recorded_as_answered_is_caught(source: Ledger, tmp_path: Path) -> None:
    forged = _dns("evil.test", "93.184.216.34", "listed", "127.0.0.1:80")
    _failed(_audit(source, tmp_path, lambda e: _insert_dns(e, forged)), "report", "deny/not-listed")


def test_a_dns_decision_on_another_port_is_caught(source: Ledger, tmp_path: Path) -> None:
    forged = _dns("evil.test", None, "not-listed", None, port=54)
    runs = _audit(source, tmp_path, lambda e: _insert_dns(e, forged))
    _failed(runs, "report", "the plan's resolver is on 53")


def test_a_denial_rewritten_as_answered_without_an_answer_is_caught(
    source: Ledger, tmp_path: Path
) -> None:
    runs = _audit(
        source, tmp_path, lambda e: _rewrite(e, "deny", verdict="allow", reason="answered")
    )
    _failed(runs, "report", "the allow list gives deny/not-listed")


def test_a_dns_decision_in_a_run_without_a_proxy_is_caught(source: Ledger, tmp_path: Path) -> None:
    def add(events: list[Copied]) -> None:
        template = _decisions(events)[0]
        other = [e for e in events if e.run_id != template.run_id]
        target = first(other, "run.terminal")
        payload = {"index": 0, "decision": _dns("evil.test", None, "not-listed", None).to_value()}
        events.insert(events.index(target), Copied(DECISION_EVENT, target.run_id, payload))

    _failed(_audit(source, tmp_path, add), "report", "in a run without a proxy", index=1)


def test_a_dns_question_refused_for_a_budget_the_plan_lacks_is_caught(
    source: Ledger, tmp_path: Path
) -> None:
    forged = _dns("evil.test", None, "budget-exhausted", None)
    runs = _audit(source, tmp_path, lambda e: _insert_dns(e, forged))
    _failed(runs, "report", "budget-exhausted without an Enforced network budget")
