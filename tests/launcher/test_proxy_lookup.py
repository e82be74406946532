"""The proxy's lookups ask for exactly the listed name (launcher/host/proxy/lookup.py).

The hosts-file half is read from a real file; the resolver half is the C library's, whose
search list a test cannot configure without a resolver of its own (the red-team repro
used one): what is checked there is the name handed to it, absolute, so no search domain
or ``ndots`` can apply.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from bvisor.launcher.host.proxy import lookup as lookup_module
from bvisor.launcher.host.proxy.lookup import lookup

HOSTS = """# a comment
127.0.0.1 localhost
93.184.216.34 www.example.test   WWW2.example.test  # trailing comment
10.9.9.9 multi.example.test
93.184.216.36 multi.example.test
2001:db8::5 multi.example.test
::ffff:93.184.216.40 mapped.example.test
not-an-address bad.example.test
"""


@pytest.fixture
def hosts(tmp_path: Path) -> str:
    path = tmp_path / "hosts"
    path.write_text(HOSTS)
    return str(path)


def test_a_name_in_the_hosts_file_gets_its_addresses_in_file_order(hosts: str) -> None:
    assert lookup("multi.example.test", hosts=hosts) == ["10.9.9.9", "93.184.216.36", "2001:db8::5"]
    assert lookup("multi.example.test", family=socket.AF_INET6, hosts=hosts) == ["2001:db8::5"]
    assert lookup("multi.example.test", family=socket.AF_INET, hosts=hosts) == [
        "10.9.9.9",
        "93.184.216.36",
    ]


def test_names_match_without_case_and_mapped_addresses_are_ipv4(hosts: str) -> None:
    assert lookup("www2.example.test", hosts=hosts) == ["93.184.216.34"]
    assert lookup("mapped.example.test", hosts=hosts) == ["93.184.216.40"]


def test_otherwise_the_resolver_is_asked_for_the_absolute_name(
    hosts: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[object] = []

    def fake(name: object, *args: object, **kwargs: object) -> list[object]:
        asked.append(name)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.50", 0))]

    monkeypatch.setattr(lookup_module.socket, "getaddrinfo", fake)
    assert lookup("api.example.test", hosts=hosts) == ["93.184.216.50"]
    assert lookup("bad.example.test", hosts=hosts) == ["93.184.216.50"]
    assert asked == ["api.example.test.", "bad.example.test."]


def test_a_name_nobody_knows_has_no_address(hosts: str) -> None:
    assert lookup("nothing.invalid", hosts=hosts) == []
