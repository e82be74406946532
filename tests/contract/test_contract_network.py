"""Allow-list entries, the judgement, and the decision record (pure; bvisor.contract)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bvisor import canonical
from bvisor.contract import Network, NetworkAllowList
from bvisor.contract.capabilities import capability_from_value
from bvisor.contract.endpoints import parse_address, parse_endpoint
from bvisor.contract.errors import ContractError
from bvisor.contract.netpolicy import (
    NetworkDecision,
    activity_fact,
    judge,
    normal_host,
    parse_entries,
    refused_range,
)

# Spellings the grammar accepted before networks, wildcards and protocols: their canonical
# text (and so every spec's bytes) must never change.
OLD_SPELLINGS = {
    "example.org:443": "example.org:443",
    "Example.ORG:443": "example.org:443",
    "a-b.c9.example:1": "a-b.c9.example:1",
    "192.0.2.7:80": "192.0.2.7:80",
    "[0:0::1]:80": "[::1]:80",
    "[2001:DB8::1]:65535": "[2001:db8::1]:65535",
    "[::ffff:1.2.3.4]:443": "[::ffff:102:304]:443",
    "[fe80::1%eth0]:80": "[fe80::1%eth0]:80",  # valid as ever; admission refuses it
}


@pytest.mark.parametrize(("given", "canonical_text"), sorted(OLD_SPELLINGS.items()))
def test_spellings_accepted_before_keep_their_canonical_text(
    given: str, canonical_text: str
) -> None:
    assert parse_endpoint(given).text == canonical_text
    value = Network(NetworkAllowList((given,))).to_value()
    assert value == {"network": {"policy": {"allow_list": [canonical_text]}}}
    assert capability_from_value(canonical.decode(canonical.encode(value))) == Network(
        NetworkAllowList((given,))
    )


@pytest.mark.parametrize(
    ("given", "kind", "text"),
    [
        ("*.Example.org:443", "suffix", "*.example.org:443"),
        ("*:443", "any", "*:443"),
        ("10.0.0.0/8:5432", "network", "10.0.0.0/8:5432"),
        ("10.1.2.3/32:5432", "address", "10.1.2.3:5432"),
        ("[FD00::/8]:80", "network", "[fd00::/8]:80"),
        ("[2001:db8::1/128]:80", "address", "[2001:db8::1]:80"),
        ("example.org:443/tcp", "name", "example.org:443"),
        ("example.org:443/TCP", "name", "example.org:443"),
        ("dns.example:53/udp", "name", "dns.example:53/udp"),
        ("10.0.0.0/8:53/udp", "network", "10.0.0.0/8:53/udp"),
    ],
)
def test_new_forms_have_one_canonical_spelling(given: str, kind: str, text: str) -> None:
    endpoint = parse_endpoint(given)
    assert (endpoint.kind, endpoint.text) == (kind, text)
    assert parse_endpoint(text) == endpoint


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ("10.0.0.1/8:80", "host bits set"),
        ("[10.0.0.0/8]:80", "IPv4 is not"),
        ("fd00::/8:80", "IPv6 network is written in brackets"),
        ("example.org:443/sctp", "protocol must be one of tcp, udp"),
        ("*.:443", "bad wildcard"),
        ("a.*.example:443", "bad host name"),
        ("**.example:443", "bad host name"),
        ("*:0", "port must be 1-65535"),
        ("example.org", "expected host:port"),
    ],
)
def test_bad_entries_name_the_field(given: str, says: str) -> None:
    with pytest.raises(ContractError) as info:
        NetworkAllowList(("ok.example:1", given))
    assert info.value.path == "endpoints[1]" and info.value.code == "bad-endpoint"
    assert says in info.value.message


def test_equal_meanings_are_one_entry() -> None:
    with pytest.raises(ContractError) as info:
        NetworkAllowList(("10.1.2.3/32:80", "10.1.2.3:80"))
    assert info.value.code == "duplicate"


ENTRIES = parse_entries(
    [
        "pypi.org:443",
        "*.example.org:443",
        "*:8443",
        "127.0.0.1:8080",
        "10.0.0.0/8:5432",
        "db.internal:5432",
        "[fd00::/8]:80",
        "metadata.example:80",
        "dns.example:53/udp",
    ]
)


@pytest.mark.parametrize(
    ("host", "port", "address", "expected"),
    [
        # names: matched by name, resolved, pinned address judged
        ("pypi.org", 443, None, ("deny", "unresolved", "pypi.org:443")),
        ("pypi.org", 443, "151.101.0.223", ("allow", "listed", "pypi.org:443")),
        ("pypi.org", 80, "151.101.0.223", ("deny", "not-listed", None)),
        ("files.pypi.org", 443, "151.101.0.223", ("deny", "not-listed", None)),
        ("a.example.org", 443, "93.184.216.34", ("allow", "listed", "*.example.org:443")),
        ("a.b.example.org", 443, "93.184.216.34", ("allow", "listed", "*.example.org:443")),
        ("example.org", 443, "93.184.216.34", ("deny", "not-listed", None)),
        ("anything.test", 8443, "93.184.216.34", ("allow", "listed", "*:8443")),
        # a listed name that resolves into a refused range (DNS rebinding) stays refused ...
        ("pypi.org", 443, "127.0.0.1", ("deny", "refused-range", "pypi.org:443")),
        (
            "metadata.example",
            80,
            "169.254.169.254",
            ("deny", "refused-range", "metadata.example:80"),
        ),
        ("a.example.org", 443, "10.1.2.3", ("deny", "refused-range", "*.example.org:443")),
        ("a.example.org", 443, "::ffff:10.1.2.3", ("deny", "refused-range", "*.example.org:443")),
        ("anything.test", 8443, "fd00:ec2::254", ("deny", "refused-range", "*:8443")),
        # ... unless an address or network entry on that port names the address
        ("db.internal", 5432, "10.9.8.7", ("allow", "listed", "db.internal:5432")),
        ("db.internal", 5432, "192.168.1.1", ("deny", "refused-range", "db.internal:5432")),
        # addresses: matched by address (a name entry never matches an address)
        ("127.0.0.1", 8080, "127.0.0.1", ("allow", "listed", "127.0.0.1:8080")),
        ("127.0.0.2", 8080, "127.0.0.2", ("deny", "not-listed", None)),
        ("10.200.0.1", 5432, "10.200.0.1", ("allow", "listed", "10.0.0.0/8:5432")),
        ("151.101.0.223", 443, "151.101.0.223", ("deny", "not-listed", None)),
        ("fd12::1", 80, "fd12::1", ("allow", "listed", "[fd00::/8]:80")),
        ("93.184.216.34", 8443, "93.184.216.34", ("allow", "listed", "*:8443")),
        ("169.254.169.254", 8443, "169.254.169.254", ("deny", "refused-range", "*:8443")),
        # a UDP entry matches no TCP destination
        ("dns.example", 53, "93.184.216.34", ("deny", "not-listed", None)),
    ],
)
def test_the_judgement(
    host: str, port: int, address: str | None, expected: tuple[str, str, str | None]
) -> None:
    got = judge(ENTRIES, normal_host(host) or host, port, address)
    assert (got.verdict, got.reason, got.entry) == expected


def test_metadata_entry_by_name_is_not_naming_the_address() -> None:
    entries = parse_entries(["metadata.example:80", "169.254.169.254:80"])
    got = judge(entries, "metadata.example", 80, "169.254.169.254")
    assert (got.verdict, got.entry) == ("allow", "metadata.example:80")


@pytest.mark.parametrize(
    ("address", "label"),
    [
        ("127.0.0.1", "loopback"),
        ("10.0.0.1", "private"),
        ("172.31.255.255", "private"),
        ("192.168.0.1", "private"),
        ("169.254.169.254", "link-local"),
        ("100.100.100.200", "shared-address-space"),
        ("168.63.129.16", "metadata"),
        ("192.0.0.192", "protocol-assignments"),
        ("0.0.0.0", "this-network"),
        ("255.255.255.255", "reserved"),
        ("224.0.0.1", "multicast"),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fd00:ec2::254", "unique-local"),
        ("fe80::1", "link-local"),
        ("64:ff9b::a00:1", "nat64"),
        ("2002:a00:1::", "6to4"),
        ("2001::1", "protocol-assignments"),
        ("93.184.216.34", None),
        ("151.101.0.223", None),
        ("2606:4700:4700::1111", None),
    ],
)
def test_refused_ranges(address: str, label: str | None) -> None:
    parsed = parse_address(address)
    assert parsed is not None and refused_range(parsed) == label


@pytest.mark.parametrize(
    ("given", "normal"),
    [
        ("Example.ORG.", "example.org"),
        ("[::1]", "::1"),
        ("::ffff:127.0.0.1", "127.0.0.1"),
        ("0:0::1", "::1"),
        ("1.2.3", None),
        ("", None),
        ("bad_name", None),
        ("a" * 64 + ".example", None),
        ("fe80::1%eth0", None),
    ],
)
def test_normal_host(given: str, normal: str | None) -> None:
    assert normal_host(given) == normal


def _decision(**changes: object) -> NetworkDecision:
    fields: dict[str, object] = {
        "via": "http-connect",
        "host": "pypi.org",
        "port": 443,
        "address": "151.101.0.223",
        "verdict": "allow",
        "reason": "listed",
        "entry": "pypi.org:443",
        "sent": 517,
        "received": 4096,
        "error": None,
    }
    fields.update(changes)
    return NetworkDecision(**fields)  # type: ignore[arg-type]


def test_a_decision_round_trips_strictly_and_states_its_fact() -> None:
    decision = _decision()
    value = canonical.decode(canonical.encode(decision.to_value()))
    assert NetworkDecision.from_value(value) == decision
    assert activity_fact(decision).detail == (
        "allow http-connect pypi.org:443 address=151.101.0.223 entry=pypi.org:443 "
        "reason=listed sent=517 received=4096"
    )
    v6 = _decision(host="2001:db8::1", address="2001:db8::1", error="connect: ECONNREFUSED")
    assert "2001:db8::1]:443" in activity_fact(v6).detail
    assert activity_fact(v6).detail.endswith("error=connect: ECONNREFUSED")


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ({**_decision().to_value(), "via": "ftp"}, "decision.via"),
        ({**_decision().to_value(), "verdict": "maybe"}, "decision.verdict"),
        ({**_decision().to_value(), "reason": "because"}, "decision.reason"),
        ({**_decision().to_value(), "port": 70000}, "decision.port"),
        ({**_decision().to_value(), "sent": -1}, "decision.sent"),
        ({**_decision().to_value(), "extra": 1}, "decision.extra"),
        ({**_decision().to_value(), "verdict": "deny", "reason": "not-listed"}, "decision.sent"),
    ],
)
def test_a_bad_decision_names_its_field(value: dict[str, object], path: str) -> None:
    with pytest.raises(ContractError) as info:
        NetworkDecision.from_value(value)
    assert info.value.path == path, info.value


def _grammar_as_released(text: str) -> str:
    """The entry check as released before this grammar (kept here as the compatibility
    oracle: every text it accepted must keep exactly the text it gave)."""
    import ipaddress
    import re

    label = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise ValueError("host:port")
    if not re.match(r"^[1-9][0-9]{0,4}$", port) or not 1 <= int(port) <= 65535:
        raise ValueError("port")
    if host.startswith("[") and host.endswith("]"):
        return f"[{ipaddress.IPv6Address(host[1:-1]).compressed}]:{port}"
    host = host.lower()
    if len(host) > 253 or not all(label.match(part) for part in host.split(".")):
        raise ValueError("name")
    if host.replace(".", "").isdigit():
        ipaddress.IPv4Address(host)
    return f"{host}:{port}"


_HOSTS = st.one_of(
    st.from_regex(r"\A[a-zA-Z0-9-]{1,8}(\.[a-zA-Z0-9-]{1,8}){0,3}\n?\Z"),
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(lambda a: f"[{a.exploded if a.version == 6 else a}]"),
    st.sampled_from(["[::ffff:1.2.3.4]", "[fe80::1%eth0]", "1.2.3", "01.2.3.4", "[::g]"]),
)
_PORTS = st.one_of(st.integers(0, 70000).map(str), st.sampled_from(["080", "1\n", "", "x"]))


@given(host=_HOSTS, port=_PORTS)
@settings(max_examples=400, deadline=None)
def test_every_entry_accepted_before_keeps_its_text(host: str, port: str) -> None:
    text = f"{host}:{port}"
    try:
        before = _grammar_as_released(text)
    except ValueError:
        return
    assert parse_endpoint(text).text == before
