"""Allow-list names, wildcards and public addresses, in a test network namespace.

The servers need addresses the proxy must treat as public, and names that resolve to
them: ``netns_harness`` makes both inside a network (and mount) namespace of its own —
addresses one veth hop away in a neighbour namespace, its own ``/etc/hosts`` — and runs
real bvisor runs there (see
its docstring). The oracle is what each server saw; the ledger and replay must agree.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.features import require_feature

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def harness() -> dict[str, Any]:
    for feature in ("seccomp", "landlock", "userns", "netns", "pidns", "netns-loopback"):
        require_feature(feature)
    for tool in ("unshare", "ip", "mount"):
        if shutil.which(tool, path="/usr/sbin:/usr/bin:/sbin:/bin") is None:
            pytest.skip(f"LOUD SKIP: no {tool}(8) to make the test network namespace with")
    userns = [] if os.geteuid() == 0 else ["--user", "--map-root-user"]
    env = {**os.environ, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    done = subprocess.run(
        ["unshare", *userns, "--mount", "--net", sys.executable, "-m", "tests.e2e.netns_harness"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    assert "setup_failed" not in result, result
    return result


def _codes(scenario: dict[str, Any]) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in scenario["out"].splitlines() if "=" in line)
    return dict(pairs)  # type: ignore[arg-type]


def _decision(scenario: dict[str, Any], host: str) -> tuple[str, str | None, str, str | None]:
    found = next(d for d in scenario["decisions"] if d["host"] == host)
    return found["verdict"], found["address"], found["reason"], found["entry"]


def test_names_and_wildcards_reach_their_public_addresses(harness: dict[str, Any]) -> None:
    names = harness["names"]
    codes = _codes(names)
    assert (codes["www"], codes["api"], codes["multi"]) == ("200", "200", "200"), names["out"]
    assert names["hits"]["www"] == ["/w"] and names["hits"]["api"] == ["/a"]
    wildcard = "*.example.test:80"
    assert _decision(names, "www.example.test") == ("allow", "93.184.216.34", "listed", wildcard)
    assert _decision(names, "api.example.test") == ("allow", "93.184.216.35", "listed", wildcard)
    assert names["audit_ok"], names["audit_detail"]


def test_the_apex_another_port_and_a_bare_address_are_not_listed(
    harness: dict[str, Any],
) -> None:
    names = harness["names"]
    codes = _codes(names)
    assert (codes["apex"], codes["port"], codes["by-address"]) == ("403",) * 3, names["out"]
    assert "/apex" not in names["hits"]["www"] and "/by-address" not in names["hits"]["www"]
    # Unlisted names are refused before resolution: no address was looked up for them.
    assert _decision(names, "example.test") == ("deny", None, "not-listed", None)
    assert _decision(names, "other.test") == ("deny", None, "not-listed", None)
    assert _decision(names, "93.184.216.34") == ("deny", "93.184.216.34", "not-listed", None)


def test_a_listed_name_on_a_private_address_is_refused_unless_the_range_is_named(
    harness: dict[str, Any],
) -> None:
    names, named = harness["names"], harness["named_range"]
    assert _codes(names)["internal"] == "403" and names["hits"]["private"] == []
    assert _decision(names, "internal.test") == (
        "deny",
        "10.9.9.9",
        "refused-range",
        "internal.test:80",
    )
    assert _codes(named)["internal"] == "200" and named["hits"]["private"] == ["/i"]
    assert _decision(named, "internal.test")[0] == "allow"
    assert named["audit_ok"], named["audit_detail"]


def test_a_name_with_a_private_and_a_public_address_is_pinned_to_the_public_one(
    harness: dict[str, Any],
) -> None:
    names = harness["names"]
    assert names["hits"]["multi"] == ["/m"] and names["hits"]["private"] == []
    assert _decision(names, "multi.example.test")[:2] == ("allow", "93.184.216.36")


def test_going_around_the_proxy_has_no_route(harness: dict[str, Any]) -> None:
    for name in ("names", "named_range"):
        scenario = harness[name]
        assert _codes(scenario)["direct"] == "no-route", scenario["out"]
        assert "/direct" not in scenario["hits"]["www"]


def _dns(scenario: dict[str, Any], host: str) -> list[tuple[str, str | None, str, str | None]]:
    return [
        (d["verdict"], d["address"], d["reason"], d["entry"])
        for d in scenario["decisions"]
        if d["via"] == "dns" and d["host"] == host
    ]


def test_the_resolver_answers_listed_names_only(harness: dict[str, Any]) -> None:
    dns = harness["dns"]
    codes = _codes(dns)
    assert codes["resolv"] == "ours", dns["out"]
    assert codes["www"] == "93.184.216.34", dns["out"]
    # other.test is in the host's hosts file but on no entry: refused, never looked up.
    assert codes["unlisted"] == "rcode5" and _dns(dns, "other.test") == [
        ("deny", None, "not-listed", None)
    ]
    # A listed name on a private address is refused like a connection to it would be.
    assert codes["private"] == "rcode5"
    assert _dns(dns, "internal.test") == [("deny", "10.9.9.9", "refused-range", "internal.test:80")]
    assert codes["txt"] == "rcode5"
    wildcard = "*.example.test:80"
    assert ("allow", "93.184.216.34", "listed", wildcard) in _dns(dns, "www.example.test")
    assert dns["audit_ok"], dns["audit_detail"]


def test_an_answered_address_is_reachable_and_an_unanswered_one_is_not(
    harness: dict[str, Any],
) -> None:
    dns = harness["dns"]
    codes = _codes(dns)
    assert (codes["by-answer"], codes["not-answered"]) == ("200", "403"), dns["out"]
    # The oracle: what each server saw.
    assert dns["hits"]["www"] == ["/dns"] and dns["hits"]["api"] == []
    assert _decision(dns, "93.184.216.34") == (
        "allow",
        "93.184.216.34",
        "answered",
        "*.example.test:80",
    )
    assert _decision(dns, "93.184.216.35") == ("deny", "93.184.216.35", "not-listed", None)


def test_a_resolver_that_answers_everything_turns_the_oracles_red(
    harness: dict[str, Any],
) -> None:
    """The planted lie (``proxy_allow_all``): the same oracles must catch it."""
    lie = harness["dns_lie"]
    codes = _codes(lie)
    assert codes["unlisted"] != "rcode5", lie["out"]  # an unlisted name was answered
    assert codes["not-answered"] == "200" and lie["hits"]["api"] == ["/na"]
    assert not lie["audit_ok"]  # replay re-judges every decision against the list


def test_name_lookups_are_paid_for_from_an_enforced_network_budget(
    harness: dict[str, Any],
) -> None:
    """Found by attack: a lookup never charged the budget, so a workload could write a
    secret into names below a listed wildcard and have the host send them to its
    resolver, under an Enforced budget that then reported 0 bytes moved. Each lookup
    now costs the name's bytes before it is made; one the budget cannot pay for is not
    made. Oracles: the resolver's answers and the decisions, against the budget."""
    run = harness["dns_budget"]
    codes = _codes(run)
    paid = 100 // len("www.example.test")  # six lookups of 16 bytes fit in 100
    answered = [codes[f"ask{i}"] for i in range(10)]
    assert answered == ["93.184.216.34"] * paid + ["rcode5"] * (10 - paid), run["out"]
    asked = [d for d in run["decisions"] if d["host"] == "www.example.test"]
    assert [(d["verdict"], d["sent"]) for d in asked[:paid]] == [("allow", 16)] * paid
    assert {(d["verdict"], d["reason"], d["sent"]) for d in asked[paid:]} == {
        ("deny", "budget-exhausted", 0)
    }
    assert run["network_bytes"] == 16 * paid <= 100
    assert run["audit_ok"], run["audit_detail"]
