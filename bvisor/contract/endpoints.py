"""Network allow-list entries: their grammar, canonical spelling, and what each one names.

One entry is ``HOST:PORT`` with an optional ``/PROTOCOL``::

    example.org:443        one host name (matched by name, never by an address it resolves to)
    *.example.org:443      every name strictly below example.org (not example.org itself)
    *:443                  any destination on that port (refused ranges stay refused)
    192.0.2.7:443          one IPv4 address;   [2001:db8::7]:443   one IPv6 address
    10.0.0.0/8:5432        an IPv4 network;    [fd00::/8]:5432     an IPv6 network
    dns.example:53/udp     a protocol other than the default ``tcp``

Canonical spelling (what a spec stores, so equal meanings encode identically): lower
case; IPv6 compressed inside brackets; a network with host bits set is an error, and a
network of one address is written as that address; ``/tcp`` is left out. Every spelling
the grammar accepted before networks, wildcards and protocols existed (``host:port``,
``a.b.c.d:port``, ``[v6]:port``) keeps exactly its old canonical text. Whether an entry
can be *enforced* is admission's question (a ``udp`` entry, or an IPv6 address with a zone,
which the grammar always accepted, is valid here and refused there, naming it); this
module only says what the entry means.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Final, TypeAlias

from bvisor.contract.errors import ContractError

__all__ = [
    "ADDRESS",
    "ANY",
    "NAME",
    "NETWORK",
    "PROTOCOLS",
    "SUFFIX",
    "Address",
    "Endpoint",
    "is_host_name",
    "normalize_endpoint",
    "parse_address",
    "parse_endpoint",
]

Address: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
Network: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network

NAME: Final = "name"
SUFFIX: Final = "suffix"
ANY: Final = "any"
ADDRESS: Final = "address"
NETWORK: Final = "network"
PROTOCOLS: Final = ("tcp", "udp")
_DEFAULT_PROTOCOL: Final = "tcp"

_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\Z")
# The grammar as it always read entries: ``$`` also matches before a final newline, so an
# entry such as "a.org:1\n" was accepted (and kept its newline). It still is, with the
# same text, so no spec written before changes its bytes; such an entry names no host a
# destination can have (destinations are checked with the strict pattern above).
_ENTRY_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_PORT = re.compile(r"^[1-9][0-9]{0,4}$")


def is_host_name(host: str) -> bool:
    """A lower-case DNS host name of at most 253 characters, every label well formed."""
    return len(host) <= 253 and all(_LABEL.match(label) for label in host.split("."))


def _entry_name(host: str) -> bool:
    return len(host) <= 253 and all(_ENTRY_LABEL.match(label) for label in host.split("."))


def parse_address(text: str) -> Address | None:
    """An IP address literal (IPv6 without brackets), or None when ``text`` is not one.

    An IPv4-mapped IPv6 address (``::ffff:a.b.c.d``) is the IPv4 address it maps: it
    reaches exactly that host, so it must be judged as that host. An IPv6 address with a
    zone (``fe80::1%eth0``) is not an address here: a zone names a host interface.
    """
    if "%" in text:
        return None
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One parsed allow-list entry; ``text`` is its canonical spelling."""

    kind: str  # NAME, SUFFIX, ANY, ADDRESS or NETWORK
    host: str  # the name, the suffix's domain, "*", or the address/network text
    port: int
    protocol: str
    text: str
    network: Network | None = None  # ADDRESS and NETWORK entries: what they contain

    @property
    def zoned(self) -> bool:
        """An IPv6 address with a zone (``[fe80::1%eth0]``): it contains no destination."""
        return self.kind == ADDRESS and self.network is None

    def matches_name(self, name: str) -> bool:
        """Does this entry name the host ``name`` (lower case, no trailing dot)?"""
        if self.kind == NAME:
            return name == self.host
        if self.kind == SUFFIX:
            return name.endswith("." + self.host)
        return self.kind == ANY

    def contains(self, address: Address) -> bool:
        """Does this ADDRESS or NETWORK entry name ``address`` explicitly?"""
        if self.network is None or address.version != self.network.version:
            return False
        return address in self.network


def _bad(path: str, message: str) -> ContractError:
    return ContractError(path, message, "bad-endpoint")


def _split_protocol(text: str, path: str) -> tuple[str, str]:
    head, sep, tail = text.rpartition("/")
    if sep and tail.lower() in PROTOCOLS:
        return head, tail.lower()
    if sep and tail.isalpha():
        raise _bad(path, f"protocol must be one of {', '.join(PROTOCOLS)} (got {tail!r})")
    return text, _DEFAULT_PROTOCOL


def _network(text: str, path: str, bracketed: bool) -> Network:
    try:
        network = ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        raise _bad(path, f"bad network {text!r}: {exc}") from None
    if (network.version == 6) != bracketed:
        raise _bad(path, "an IPv6 network is written in brackets, [fd00::/8]; IPv4 is not")
    return network


def parse_endpoint(text: str, path: str = "endpoint") -> Endpoint:
    """Parse one allow-list entry (see the module docstring) or raise ContractError."""
    if not isinstance(text, str):
        raise _bad(path, f"expected text, got {type(text).__name__}")
    body, protocol = _split_protocol(text, path)
    host, sep, port_text = body.rpartition(":")
    if not sep or not host:
        raise _bad(path, f"expected host:port (got {text!r})")
    if not _PORT.match(port_text) or not 1 <= int(port_text) <= 65535:
        raise _bad(path, f"port must be 1-65535 (got {port_text!r})")
    port = int(port_text)
    suffix = "" if protocol == _DEFAULT_PROTOCOL else f"/{protocol}"

    def made(kind: str, shown: str, canonical_host: str, net: Network | None = None) -> Endpoint:
        # The port as written (the old grammar kept it so; see _ENTRY_LABEL).
        return Endpoint(kind, canonical_host, port, protocol, f"{shown}:{port_text}{suffix}", net)

    if host.startswith("[") and host.endswith("]"):
        inner = host[1:-1]
        if "/" in inner:
            network = _network(inner, path, bracketed=True)
            if network.prefixlen == network.max_prefixlen:
                address = network.network_address.compressed
                return made(ADDRESS, f"[{address}]", address, network)
            return made(NETWORK, f"[{network.compressed}]", network.compressed, network)
        try:
            v6 = ipaddress.IPv6Address(inner)
        except ValueError:
            raise _bad(path, f"bad IPv6 address {host!r}") from None
        mapped = parse_address(v6.compressed)
        if mapped is None:  # a zone (fe80::1%eth0): valid as ever, names no destination
            return made(ADDRESS, f"[{v6.compressed}]", v6.compressed)
        return made(ADDRESS, f"[{v6.compressed}]", v6.compressed, ipaddress.ip_network(mapped))
    host = host.lower()
    if "/" in host:
        network = _network(host, path, bracketed=False)
        if network.prefixlen == network.max_prefixlen:
            address = network.network_address.compressed
            return made(ADDRESS, address, address, network)
        return made(NETWORK, network.compressed, network.compressed, network)
    if host == "*":
        return made(ANY, "*", "*")
    if host.startswith("*."):
        domain = host[2:]
        if not is_host_name(domain):
            raise _bad(path, f"bad wildcard {host!r}: expected *.<host name>")
        return made(SUFFIX, host, domain)
    if not _entry_name(host):
        raise _bad(path, f"bad host name {host!r}")
    if host.replace(".", "").isdigit():
        try:
            v4 = ipaddress.IPv4Address(host)
        except ValueError:
            raise _bad(path, f"bad IPv4 address {host!r}") from None
        return made(ADDRESS, host, host, ipaddress.ip_network(v4))
    return made(NAME, host, host)


def normalize_endpoint(text: str, path: str) -> str:
    """Check one entry and return its canonical spelling."""
    return parse_endpoint(text, path).text
