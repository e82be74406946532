"""Whether the host would take a connection itself (launcher/host/proxy/route.py), asked of
the kernel's routing table: every loopback address is the host's own, an address it
holds on no interface is not."""

from __future__ import annotations

import pytest

from bvisor.launcher.host.proxy.route import host_own


@pytest.mark.parametrize("address", ["127.0.0.1", "127.3.4.5", "::1"])
def test_the_hosts_own_addresses_are_its_own(address: str) -> None:
    assert host_own(address)


@pytest.mark.parametrize("address", ["8.8.8.8", "2001:4860:4860::8888"])
def test_a_remote_address_is_not(address: str) -> None:
    # With a default route: a unicast route elsewhere; without one: no route. Neither is
    # the host's own.
    assert not host_own(address)


def test_what_is_not_an_address_counts_as_the_hosts_own() -> None:
    assert host_own("not-an-address")
