"""Move bytes both ways between the workload and its destination, counted and bounded.

One :func:`relay` per connection, in that connection's thread: both sockets non-blocking,
``poll`` for what can move, at most :data:`CHUNK` bytes buffered per direction (a
direction is read only once its buffer is empty, so memory per connection is bounded by
two chunks whatever the peers do). A half-close is passed on (EOF one way shuts that way
down on the other side once its buffer is out); the relay ends when both ways are done,
on an error, or when the session stops (it shuts the sockets down, which wakes ``poll``).

The :class:`Budget` is the run's: every byte granted, either way and on every connection,
comes out of it. A read that would pass the limit is cut to what is left; the relay then
writes what it was granted and closes both sides — the Enforced network budget.
"""

from __future__ import annotations

import contextlib
import errno
import select
import socket
import threading
from dataclasses import dataclass

__all__ = ["CHUNK", "Budget", "Flow", "relay"]

CHUNK = 64 * 1024
_POLL_MS = 1000


class Budget:
    """Bytes the whole run may still move; ``None`` limit: counted, never cut."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self._granted = 0
        self._lock = threading.Lock()

    def take(self, wanted: int) -> int:
        """Grant up to ``wanted`` bytes (all of them when there is no limit)."""
        with self._lock:
            if self.limit is None:
                granted = wanted
            else:
                granted = max(0, min(wanted, self.limit - self._granted))
            self._granted += granted
            return granted

    def take_whole(self, wanted: int) -> bool:
        """Grant all ``wanted`` bytes, or none when they do not fit (a name's lookup)."""
        with self._lock:
            if self.limit is not None and self._granted + wanted > self.limit:
                return False
            self._granted += wanted
            return True

    @property
    def exhausted(self) -> bool:
        with self._lock:
            return self.limit is not None and self._granted >= self.limit


@dataclass
class Flow:
    """What went through one connection (bytes written to each side) and how it ended."""

    sent: int = 0  # workload -> destination
    received: int = 0  # destination -> workload
    cut: bool = False
    error: str | None = None


class _Way:
    def __init__(self, source: socket.socket, dest: socket.socket, outbound: bool) -> None:
        self.source, self.dest, self.outbound = source, dest, outbound
        self.buffer = b""
        self.eof = False
        self.done = False


def _count(flow: Flow, way: _Way, written: int) -> None:
    if way.outbound:
        flow.sent += written
    else:
        flow.received += written


def relay(
    client: socket.socket,
    upstream: socket.socket,
    budget: Budget,
    stopping: threading.Event,
    first: bytes = b"",
) -> Flow:
    """Relay until both ways are closed, an error, the budget, or ``stopping``."""
    flow = Flow()
    out = _Way(client, upstream, outbound=True)
    back = _Way(upstream, client, outbound=False)
    if first:
        granted = budget.take(len(first))
        out.buffer = first[:granted]
        if granted < len(first):
            flow.cut = out.eof = True
    for sock in (client, upstream):
        sock.setblocking(False)
    ways = (out, back)
    try:
        while not all(way.done for way in ways) and not stopping.is_set():
            if flow.cut and not out.buffer and not back.buffer:
                break
            interest: dict[int, int] = {}
            for way in ways:
                if way.done:
                    continue
                if way.buffer:
                    fd = way.dest.fileno()
                    interest[fd] = interest.get(fd, 0) | select.POLLOUT
                elif not way.eof and not flow.cut:
                    fd = way.source.fileno()
                    interest[fd] = interest.get(fd, 0) | select.POLLIN
            if not interest:
                break
            poller = select.poll()
            for fd, mask in interest.items():
                poller.register(fd, mask)
            ready = dict(poller.poll(_POLL_MS))
            for way in ways:
                _step(way, ready, budget, flow)
    except OSError as exc:
        flow.error = _describe(exc)
    if flow.cut and flow.error is None:
        flow.error = f"the run's network budget of {budget.limit} bytes is spent: connection cut"
    elif stopping.is_set() and not all(way.done for way in ways) and flow.error is None:
        flow.error = "the run ended with the connection open"
    return flow


def _step(way: _Way, ready: dict[int, int], budget: Budget, flow: Flow) -> None:
    if way.done:
        return
    if way.buffer:
        if ready.get(way.dest.fileno(), 0) & (select.POLLOUT | select.POLLERR | select.POLLHUP):
            try:
                written = way.dest.send(way.buffer)
            except BlockingIOError:
                return
            _count(flow, way, written)
            way.buffer = way.buffer[written:]
        if not way.buffer and way.eof:
            _finish(way)
        return
    if way.eof:
        _finish(way)
        return
    if ready.get(way.source.fileno(), 0) & (select.POLLIN | select.POLLERR | select.POLLHUP):
        try:
            chunk = way.source.recv(CHUNK)
        except BlockingIOError:
            return
        if not chunk:
            way.eof = True
            _finish(way)
            return
        granted = budget.take(len(chunk))
        way.buffer = chunk[:granted]
        if granted < len(chunk):
            flow.cut = True


def _finish(way: _Way) -> None:
    way.done = True
    with contextlib.suppress(OSError):
        way.dest.shutdown(socket.SHUT_WR)


def _describe(exc: OSError) -> str:
    name = errno.errorcode.get(exc.errno or 0, "error")
    return f"relay: {name} ({exc.strerror or exc})"
