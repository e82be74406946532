"""What the proxy reads from a workload's connection (launcher/host/proxy/requests.py):
every request it cannot judge is a BadRequest (answered and recorded as ``bad-request``),
never another exception, which would end the connection's thread with no decision."""

from __future__ import annotations

import socket

import pytest

from bvisor.launcher.host.proxy import requests


def _read(data: bytes) -> requests.Ask:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        theirs.sendall(data)
        theirs.shutdown(socket.SHUT_WR)
        return requests.read_ask(ours)


def test_a_connect_is_read() -> None:
    ask = _read(b"CONNECT example.org:443 HTTP/1.1\r\n\r\n")
    assert (ask.via, ask.host, ask.port) == ("http-connect", "example.org", 443)


@pytest.mark.parametrize(
    "data",
    [
        # str.isdigit() holds for these latin-1 superscripts; int() refuses them
        b"CONNECT example.org:\xb2 HTTP/1.1\r\n\r\n",
        b"CONNECT example.org:44\xb3 HTTP/1.1\r\n\r\n",
        b"GET http://example.org:\xb9/ HTTP/1.1\r\n\r\n",
        b"GET /path HTTP/1.1\r\nHost: example.org:8\xb280\r\n\r\n",
        b"GET http://[::1]:\xb3/ HTTP/1.1\r\n\r\n",
        b"CONNECT example.org:0443x HTTP/1.1\r\n\r\n",
        b"CONNECT example.org:65536 HTTP/1.1\r\n\r\n",
        b"CONNECT example.org:123456 HTTP/1.1\r\n\r\n",
    ],
)
def test_a_port_that_is_not_ascii_digits_is_a_bad_request(data: bytes) -> None:
    with pytest.raises(requests.BadRequest, match="bad port"):
        _read(data)
