"""What a workload asks the proxy for: one HTTP request head or one SOCKS5 handshake.

The first byte tells them apart (SOCKS5 starts with 0x05). Three ways to ask:

* ``CONNECT host:port HTTP/1.x`` — a tunnel to ``host:port``;
* a plain HTTP request in absolute form (``GET http://host[:port]/path``) or, failing that,
  by its ``Host`` header — forwarded in origin form with ``Host`` set to what was judged,
  the proxy's own headers dropped and ``Connection: close`` (one request per connection,
  so a kept-alive client cannot reach a second host through the first one's tunnel);
* SOCKS5 with no authentication and the CONNECT command (IPv4, IPv6 or a domain name).

Everything is read with hard limits (a head of at most :data:`MAX_HEAD` bytes and
:data:`MAX_HEADERS` lines, within the caller's timeout) into a :class:`Ask`; anything
else is a :class:`BadRequest`, answered and recorded as such. No allocation grows with
what the workload sends beyond those limits.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from dataclasses import dataclass
from typing import Final

__all__ = [
    "MAX_HEAD",
    "MAX_HEADERS",
    "Ask",
    "BadRequest",
    "http_reply",
    "read_ask",
    "socks_reply",
]

MAX_HEAD: Final = 16 * 1024
MAX_HEADERS: Final = 100
_HOP_HEADERS: Final = frozenset(
    {b"proxy-connection", b"proxy-authorization", b"connection", b"keep-alive", b"host"}
)

# SOCKS5 reply codes (RFC 1928).
SOCKS_OK: Final = 0x00
SOCKS_FAILURE: Final = 0x01
SOCKS_NOT_ALLOWED: Final = 0x02
SOCKS_HOST_UNREACHABLE: Final = 0x04
SOCKS_REFUSED: Final = 0x05
SOCKS_COMMAND_UNSUPPORTED: Final = 0x07
SOCKS_ADDRESS_UNSUPPORTED: Final = 0x08


class BadRequest(Exception):
    """The workload's request cannot be judged; ``via`` is how far it got."""

    def __init__(self, via: str, detail: str, socks_code: int = SOCKS_FAILURE) -> None:
        super().__init__(detail)
        self.via = via
        self.detail = detail
        self.socks_code = socks_code


@dataclass(frozen=True, slots=True)
class Ask:
    """One destination the workload asked for.

    ``host`` is as written (brackets removed); ``forward`` is what goes to the destination
    first once connected (the rewritten request head of plain HTTP, or bytes the client
    sent early after its CONNECT head).
    """

    via: str  # "http-connect", "http" or "socks5"
    host: str
    port: int
    forward: bytes


def _recv_exact(conn: socket.socket, size: int, via: str) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise BadRequest(via, "the client closed the connection mid-request")
        data += chunk
    return bytes(data)


def _read_head(conn: socket.socket, first: bytes) -> tuple[bytes, bytes]:
    data = bytearray(first)
    while b"\r\n\r\n" not in data:
        if len(data) >= MAX_HEAD:
            raise BadRequest("http", f"request head longer than {MAX_HEAD} bytes")
        chunk = conn.recv(MAX_HEAD - len(data))
        if not chunk:
            raise BadRequest("http", "the client closed the connection mid-request")
        data += chunk
    end = data.index(b"\r\n\r\n") + 4
    if end > MAX_HEAD:
        raise BadRequest("http", f"request head longer than {MAX_HEAD} bytes")
    return bytes(data[:end]), bytes(data[end:])


def _split_authority(authority: str, default_port: int, via: str) -> tuple[str, int]:
    text = authority.strip()
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise BadRequest(via, "unterminated IPv6 address")
        host, rest = text[1:close], text[close + 1 :]
        if rest and not rest.startswith(":"):
            raise BadRequest(via, "junk after an IPv6 address")
        port_text = rest[1:]
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            host, port_text = text, ""
    if not port_text:
        return host, default_port
    # ASCII digits only: str.isdigit() also holds for superscripts (latin-1 b"\xb2" is
    # "²"), which int() refuses, and that ValueError would end the connection unrecorded.
    digits = port_text.isascii() and port_text.isdigit()
    if not digits or len(port_text) > 5 or not 0 < int(port_text) < 65536:
        raise BadRequest(via, "bad port")
    return host, int(port_text)


def _parse_http(head: bytes, rest: bytes) -> Ask:
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
        raise BadRequest("http", "undecodable head") from None
    lines = text[:-4].split("\r\n")
    if len(lines) > MAX_HEADERS + 1:
        raise BadRequest("http", f"more than {MAX_HEADERS} header lines")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise BadRequest("http", "not an HTTP/1.x request line")
    method, target, version = parts
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise BadRequest("http", "malformed header line")
        headers.append((name, value.strip()))
    if method == "CONNECT":
        host, port = _split_authority(target, 0, "http-connect")
        if port == 0:
            raise BadRequest("http-connect", "CONNECT needs host:port")
        return Ask("http-connect", host, port, rest)
    if target.lower().startswith("http://"):
        after = target[len("http://") :]
        slash = after.find("/")
        authority, path = (after, "/") if slash < 0 else (after[:slash], after[slash:])
    elif target.startswith("/"):
        authority = next((v for n, v in headers if n.lower() == "host"), "")
        path = target
        if not authority:
            raise BadRequest("http", "an origin-form request without a Host header")
    else:
        raise BadRequest("http", "only http:// URLs are proxied as plain HTTP (use CONNECT)")
    if "@" in authority:
        raise BadRequest("http", "user information in the URL is not proxied")
    host, port = _split_authority(authority, 80, "http")
    shown = f"[{host}]" if ":" in host else host
    lines_out = [f"{method} {path} {version}", f"Host: {shown}:{port}"]
    lines_out += [f"{n}: {v}" for n, v in headers if n.lower().encode() not in _HOP_HEADERS]
    lines_out.append("Connection: close")
    forward = ("\r\n".join(lines_out) + "\r\n\r\n").encode("latin-1") + rest
    return Ask("http", host, port, forward)


def _read_socks(conn: socket.socket) -> Ask:
    via = "socks5"
    count = _recv_exact(conn, 1, via)[0]
    methods = _recv_exact(conn, count, via) if count else b""
    if 0x00 not in methods:
        conn.sendall(b"\x05\xff")
        raise BadRequest(via, "SOCKS5 without the no-authentication method")
    conn.sendall(b"\x05\x00")
    version, command, _, kind = _recv_exact(conn, 4, via)
    if version != 5:
        raise BadRequest(via, f"SOCKS version {version} in the request")
    if kind == 0x01:
        host = str(ipaddress.IPv4Address(_recv_exact(conn, 4, via)))
    elif kind == 0x04:
        host = str(ipaddress.IPv6Address(_recv_exact(conn, 16, via)))
    elif kind == 0x03:
        length = _recv_exact(conn, 1, via)[0]
        raw = _recv_exact(conn, length, via)
        try:
            host = raw.decode("ascii")
        except UnicodeDecodeError:
            raise BadRequest(via, "a non-ASCII host name", SOCKS_ADDRESS_UNSUPPORTED) from None
    else:
        raise BadRequest(via, f"address type {kind}", SOCKS_ADDRESS_UNSUPPORTED)
    (port,) = struct.unpack("!H", _recv_exact(conn, 2, via))
    if command != 0x01:
        raise BadRequest(
            via, f"SOCKS5 command {command} (only CONNECT is proxied)", SOCKS_COMMAND_UNSUPPORTED
        )
    if port == 0:
        raise BadRequest(via, "port 0")
    return Ask(via, host, port, b"")


def read_ask(conn: socket.socket) -> Ask:
    """Read one request from a freshly accepted connection (raises BadRequest)."""
    first = conn.recv(1)
    if not first:
        raise BadRequest("http", "the client closed the connection before asking")
    if first == b"\x05":
        return _read_socks(conn)
    head, rest = _read_head(conn, first)
    return _parse_http(head, rest)


def http_reply(status: int, reason: str, detail: str = "") -> bytes:
    """A complete HTTP/1.1 reply from the proxy itself (the connection then closes)."""
    body = (detail + "\n").encode("utf-8") if detail else b""
    return (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode("ascii") + body


def socks_reply(code: int) -> bytes:
    """A SOCKS5 reply with an unspecified bound address (the proxy hides its own)."""
    return bytes([5, code, 0, 1, 0, 0, 0, 0, 0, 0])
