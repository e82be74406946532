"""The proxy session's end (launcher/host/proxy/session.py) while the host's resolver is
still looking a name up: a lookup cannot be called back, so its name has left the host
although its decision cannot be recorded any more. The report must name it, and the
thread that finishes the lookup after the run must end quietly (the sockets it would poll
are closed by then).

The session is driven without a launcher: its channel is closed at once (no listener
comes), and the resolver thread is started on a UDP socket of the test's, as the session
starts it on the one the launcher passes."""

from __future__ import annotations

import socket
import struct
import threading

import pytest

from bvisor.contract.mechanisms import NetDns, NetProxy
from bvisor.launcher.host.proxy import session as proxy_session


def _question(name: str) -> bytes:
    wire = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    return struct.pack("!HHHHHH", 7, 0x0100, 1, 0, 0, 0) + wire + struct.pack("!HH", 1, 1)


def test_a_lookup_under_way_when_the_run_ends_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    started, release = threading.Event(), threading.Event()

    def slow_resolve(host: str, port: int, family: int = 0) -> list[str]:
        started.set()
        release.wait(10)
        return ["93.184.216.34"]

    crashes: list[threading.ExceptHookArgs] = []
    monkeypatch.setattr(proxy_session, "lookup", slow_resolve)
    monkeypatch.setattr(threading, "excepthook", crashes.append)
    channel, launcher_end = socket.socketpair()
    launcher_end.close()
    session = proxy_session.ProxySession(
        channel, NetProxy(3128, ("*.example.test:80",)), None, resolver=NetDns(53)
    )
    session.start()
    resolver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    resolver.bind(("127.0.0.1", 0))
    session._resolver = resolver  # as _serve keeps the checked one, so stop() closes it
    assert session._start_thread(session._answer_questions, "bvisor-proxy-dns", resolver)
    dns_thread = next(t for t in threading.enumerate() if t.name == "bvisor-proxy-dns")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as workload:
        workload.sendto(_question("exfil-1234.example.test"), resolver.getsockname())
        assert started.wait(10)
        result = session.stop(grace=0.2)
    release.set()
    dns_thread.join(10)
    assert not dns_thread.is_alive()
    assert result.decisions == ()
    assert any("dns exfil-1234.example.test" in p for p in result.problems), result.problems
    assert crashes == [], [str(c.exc_value) for c in crashes]
