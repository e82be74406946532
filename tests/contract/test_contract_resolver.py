"""The allow list's resolver judgements (rules v3): which names are answered, and which
addresses an answer opens (pure functions; the e2e oracle is tests/e2e/test_network_names)."""

from __future__ import annotations

import pytest

from bvisor.contract.errors import ContractError
from bvisor.contract.netpolicy import (
    Answers,
    NetworkDecision,
    judge,
    judge_answered,
    judge_name,
    parse_entries,
)

ENTRIES = parse_entries(["*.example.test:80", "api.example.test:443", "10.9.0.0/16:5432"])


def test_a_name_listed_on_any_port_is_answered_citing_its_most_specific_entry() -> None:
    judged = judge_name(ENTRIES, "api.example.test", "93.184.216.35")
    assert (judged.verdict, judged.reason, judged.entry) == (
        "allow",
        "listed",
        "api.example.test:443",
    )


@pytest.mark.parametrize("name", ["example.test", "other.test", "93.184.216.34", "evil.test"])
def test_an_unlisted_name_or_an_address_is_refused(name: str) -> None:
    judged = judge_name(ENTRIES, name, "93.184.216.34")
    assert (judged.verdict, judged.reason, judged.entry) == ("deny", "not-listed", None)


def test_a_listed_name_without_an_address_is_unresolved() -> None:
    judged = judge_name(ENTRIES, "www.example.test", None)
    assert (judged.verdict, judged.reason) == ("deny", "unresolved")


@pytest.mark.parametrize("address", ["127.0.0.1", "169.254.169.254", "10.1.2.3", "fd00::1"])
def test_a_refused_range_is_not_answered(address: str) -> None:
    assert judge_name(ENTRIES, "www.example.test", address).reason == "refused-range"


def test_a_refused_range_an_entry_names_is_answered() -> None:
    assert judge_name(ENTRIES, "www.example.test", "10.9.1.1").allowed


def test_an_answer_opens_its_address_on_the_name_s_ports_only() -> None:
    assert not judge(ENTRIES, "93.184.216.35", 443, "93.184.216.35").allowed
    opened = judge_answered(ENTRIES, "93.184.216.35", 443, ["api.example.test"])
    assert opened is not None
    assert (opened.verdict, opened.reason, opened.entry) == (
        "allow",
        "answered",
        "api.example.test:443",
    )
    assert judge_answered(ENTRIES, "93.184.216.35", 22, ["api.example.test"]) is None
    assert judge_answered(ENTRIES, "93.184.216.35", 443, []) is None


def test_the_first_answered_name_that_allows_decides() -> None:
    opened = judge_answered(ENTRIES, "93.184.216.35", 80, ["api.example.test", "www.example.test"])
    assert opened is not None and opened.entry == "*.example.test:80"


def test_a_dns_decision_carries_no_bytes() -> None:
    with pytest.raises(ContractError, match="no bytes"):
        NetworkDecision(
            "dns", "www.example.test", 53, "1.2.3.4", "allow", "listed", None, 1, 0, None
        )


def test_answers_open_an_address_by_the_first_name_that_allows_it() -> None:
    answers = Answers()
    address = "93.184.216.35"
    assert answers.opens(ENTRIES, address, 443) is None
    answers.add("www.example.test", address)  # listed on 80, not on 443
    assert answers.opens(ENTRIES, address, 443) is None
    answers.add("api.example.test", address)  # a later name that does allow 443
    opened = answers.opens(ENTRIES, address, 443)
    assert opened is not None and opened.entry == "api.example.test:443"
    answers.add("www.example.test", address)  # a repeat changes nothing
    first = answers.opens(ENTRIES, address, 80)
    assert first is not None and first.entry == "*.example.test:80"
    assert answers.opens(ENTRIES, "93.184.216.34", 80) is None  # never answered


def test_answers_judge_a_full_run_in_linear_time() -> None:
    answers = Answers()
    address = "93.184.216.34"
    for i in range(1365):
        answers.add(f"x{i}.example.test", address)
    answers.add("api.example.test", address)
    for _ in range(2730):
        opened = answers.opens(ENTRIES, address, 443)
        assert opened is not None and opened.entry == "api.example.test:443"
