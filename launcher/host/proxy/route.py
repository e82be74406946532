"""Whether the host itself would take a connection to an address: ask its routing table.

The proxy connects from the host's own network namespace, so an address the host holds
(any interface's, not only loopback's) is delivered to the host's own listeners: a
service bound to ``0.0.0.0`` answers on the host's public address too, past any firewall
rule that only filters what arrives on an interface. The refused ranges cannot name such
an address (it is public, and every host's is different), so the proxy asks the kernel,
for each address it is about to open, how it would route it: ``RTM_GETROUTE`` over
``NETLINK_ROUTE`` (unprivileged; the same lookup the connect makes) answers a route
*type*, and ``local`` or ``anycast`` means the host itself (every address assigned to an
interface, a whole ``local`` route's range, the host's anycast addresses). A reply that
cannot be read counts as the host's own: the caller then does not connect (fail closed).
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
from typing import Final

__all__ = ["host_own"]

_RTM_NEWROUTE: Final = 24
_RTM_GETROUTE: Final = 26
_NLMSG_ERROR: Final = 2
_NLM_F_REQUEST: Final = 1
_RTA_DST: Final = 1
_RTN_LOCAL: Final = 2
_RTN_ANYCAST: Final = 4
_HEADER: Final = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid
_RTMSG: Final = struct.Struct("=BBBBBBBBI")  # rtmsg: family, dst_len, ..., type, flags
_TYPE_AT: Final = _HEADER.size + 7  # rtmsg.rtm_type
_SEQ: Final = 1


def _route_type(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> int | None:
    """The kernel's route type for ``address`` (``RTN_*``), or None when it has no route
    (a connect to it fails: nothing is reached)."""
    family = socket.AF_INET if address.version == 4 else socket.AF_INET6
    packed = address.packed
    body = _RTMSG.pack(family, len(packed) * 8, 0, 0, 0, 0, 0, 0, 0)
    body += struct.pack("=HH", 4 + len(packed), _RTA_DST) + packed
    request = _HEADER.pack(_HEADER.size + len(body), _RTM_GETROUTE, _NLM_F_REQUEST, _SEQ, 0)
    with socket.socket(
        socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE
    ) as sock:
        sock.settimeout(5.0)
        sock.sendall(request + body)
        reply = sock.recv(65536)
    if len(reply) < _HEADER.size + 4:
        raise OSError(errno.EPROTO, "a short route reply")
    _length, kind, _flags, seq, _pid = _HEADER.unpack_from(reply)
    if seq != _SEQ:
        raise OSError(errno.EPROTO, "a route reply to another request")
    if kind == _NLMSG_ERROR:
        (code,) = struct.unpack_from("=i", reply, _HEADER.size)
        if code in (-errno.ENETUNREACH, -errno.EHOSTUNREACH, -errno.EINVAL):
            return None
        raise OSError(-code, os.strerror(-code))
    if kind != _RTM_NEWROUTE or len(reply) < _HEADER.size + _RTMSG.size:
        raise OSError(errno.EPROTO, f"route reply of type {kind}")
    return reply[_TYPE_AT]


def host_own(address: str) -> bool:
    """Would the host deliver a connection to ``address`` (an address literal) to itself?

    True also when the kernel's answer cannot be had or read (fail closed)."""
    try:
        return _route_type(ipaddress.ip_address(address)) in (_RTN_LOCAL, _RTN_ANYCAST)
    except (OSError, ValueError):
        return True
