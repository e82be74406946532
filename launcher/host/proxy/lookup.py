"""How the proxy looks up a listed name: exactly that name, never one the host makes of it.

The host's stub resolver would otherwise apply its search list: with ``search corp.test``
(and ``ndots`` above the name's dots, as Kubernetes sets it) a question for
``www.example.test`` also — or only — asks for ``www.example.test.corp.test``, so the host
looks up a name no entry lists and the answer is credited to one that is. So a name is
first found in the hosts file (``/etc/hosts``, as the C library's ``files`` source reads
it: an address, then names, ``#`` comments; case ignored), and otherwise asked of the
host's resolver as an absolute name (a trailing dot: no search list, no ``ndots``). The
hosts file comes first as in the usual ``hosts: files dns``; a host whose ``nsswitch.conf``
puts DNS first gets its hosts file's answer first here.
"""

from __future__ import annotations

import socket
from typing import Final

from bvisor.contract.endpoints import parse_address

__all__ = ["HOSTS", "lookup"]

HOSTS: Final = "/etc/hosts"
_MAX_HOSTS_BYTES: Final = 4 << 20


def _wanted(version: int, family: int) -> bool:
    return family == 0 or (family, version) in ((socket.AF_INET, 4), (socket.AF_INET6, 6))


def _from_hosts(name: str, family: int, hosts: str) -> list[str]:
    try:
        with open(hosts, "rb") as file:
            data = file.read(_MAX_HOSTS_BYTES)
    except OSError:
        return []
    wanted = name.lower()
    found: list[str] = []
    for raw in data.decode("utf-8", "replace").splitlines():
        fields = raw.split("#", 1)[0].split()
        if len(fields) < 2 or wanted not in (f.lower() for f in fields[1:]):
            continue
        address = parse_address(fields[0])
        wanted_here = address is not None and _wanted(address.version, family)
        if wanted_here and address is not None and address.compressed not in found:
            found.append(address.compressed)
    return found


def _absolute(name: str, port: int, family: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(
            name + ".", port, family, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
    except (OSError, UnicodeError):
        return []
    found: list[str] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = parse_address(str(sockaddr[0]))
        wanted_here = address is not None and _wanted(address.version, family)
        if wanted_here and address is not None and address.compressed not in found:
            found.append(address.compressed)
    return found


def lookup(name: str, port: int = 0, family: int = 0, hosts: str = HOSTS) -> list[str]:
    """The addresses of exactly ``name`` (a host name without a trailing dot, as
    :func:`bvisor.contract.netpolicy.normal_host` gives it), canonical and without repeats,
    of ``family`` (0 for any): the hosts file's if it names it, else the resolver's."""
    return _from_hosts(name, family, hosts) or _absolute(name, port, family)
