"""Relaying bytes between the caller's fds and the run without ever blocking the host.

The host's observation loop drains the control channel, captures the streams and sees
the launcher exit; if a write to the caller's stdout could block (``bvisor run ... |
(sleep 30)``, a stopped pager, a full terminal), all of that would wait with it. So the
loop writes only to descriptions it may make non-blocking:

* a pipe, FIFO or terminal is reopened through ``/proc/self/fd/N`` — the same pipe or
  device, but an *open file description of the host's own*, so ``O_NONBLOCK`` is never set
  on the caller's shared description (which the caller's shell and siblings use too);
* a socket is written with ``MSG_DONTWAIT`` on a duplicate;
* a regular file or another device is written as is (such writes do not wait on a
  reader); so is a pipe or terminal that cannot be reopened (the deadline has a timer of
  its own, so even that cannot stretch a wall budget).

An :class:`Outlet` buffers at most ``limit`` bytes; when full, the loop stops reading the
stream that feeds it, so a slow reader slows the workload down (as a pipe would) instead
of growing the host's memory. At the end the rest is given ``grace`` seconds, then
dropped and counted.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import itertools
import os
import socket
import stat
import time
from dataclasses import dataclass

from bvisor.launcher.host.terminal import OutputFilter, Pty

__all__ = ["RELAY_BUFFER_BYTES", "HostStdio", "Outlet", "PrivateFd", "private_description"]

RELAY_BUFFER_BYTES = 1024 * 1024
_WRITE_PIECE = 256 * 1024
_order = itertools.count(1)


@dataclass
class PrivateFd:
    """A host-owned descriptor for one of the caller's fds, and how to use it."""

    fd: int
    mode: str  # "nonblocking" (own description), "socket" (MSG_DONTWAIT) or "blocking"
    kind: str  # "pipe", "terminal", "socket", "file", "device", "other"

    def close(self) -> None:
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1


def _kind(fd: int) -> str:
    mode = os.fstat(fd).st_mode
    if stat.S_ISFIFO(mode):
        return "pipe"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISCHR(mode):
        return "terminal" if os.isatty(fd) else "device"
    return "other"


def private_description(fd: int, *, write: bool) -> PrivateFd:
    """A descriptor for the caller's ``fd`` that the host may use without blocking.

    A reopen never grants more than the caller's fd had: a pipe's read end is not reopened
    for writing (``/proc`` would allow it), nor a write end for reading.
    """
    kind = _kind(fd)
    access = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE
    allowed = access == os.O_RDWR or access == (os.O_WRONLY if write else os.O_RDONLY)
    if kind in ("pipe", "terminal") and allowed:
        access = os.O_WRONLY if write else os.O_RDONLY
        try:
            own = os.open(
                f"/proc/self/fd/{fd}", access | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
            )
        except OSError:
            pass
        else:
            if os.path.sameopenfile(own, fd):
                return PrivateFd(own, "nonblocking", kind)
            os.close(own)
    copy = os.dup(fd)
    return PrivateFd(copy, "socket" if kind == "socket" else "blocking", kind)


class Outlet:
    """A bounded, non-blocking writer of one stream to one of the caller's fds."""

    def __init__(
        self,
        fd: int,
        *,
        filter: OutputFilter | None = None,
        limit: int = RELAY_BUFFER_BYTES,
        owned: bool = False,
    ) -> None:
        """``owned``: ``fd`` is the host's own (a pipe it made): used as is, non-blocking,
        and closed with the outlet."""
        self.target_fd = fd
        if owned:
            os.set_blocking(fd, False)
            self._private = PrivateFd(fd, "nonblocking", _kind(fd))
        else:
            self._private = private_description(fd, write=True)
        self._socket: socket.socket | None = None
        if self._private.mode == "socket":
            self._socket = socket.socket(fileno=self._private.fd)
            self._private.fd = -1  # the socket object owns it now
        self._filter = filter
        self.limit = limit
        self._buffer = bytearray()
        self.delivered = 0
        self.dropped = 0
        self.broken: str | None = None  # why writing stopped (EPIPE...), if it did
        self.last_byte: int | None = None
        self.last_write = 0  # order of the most recent delivery among all outlets
        self.lossy = False  # past the run's end: overflow is dropped, never waited for
        self.progress_at = 0.0  # monotonic time of the last write that took bytes

    @property
    def kind(self) -> str:
        return self._private.kind

    @property
    def filtered(self) -> bool:
        return self._filter is not None

    def poll_fd(self) -> int | None:
        """The fd to wait on for room (POLLOUT), or None when writes never wait."""
        if self._socket is not None:
            return self._socket.fileno()
        return self._private.fd if self._private.mode == "nonblocking" else None

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def has_room(self) -> bool:
        return self.broken is not None or self.lossy or len(self._buffer) < self.limit

    def offer(self, chunk: bytes) -> None:
        """Queue a chunk (filtered for a terminal). Dropped and counted once broken."""
        data = self._filter.feed(chunk) if self._filter is not None else chunk
        if self.broken is not None:
            self.dropped += len(data)
            return
        if self.lossy:
            room = max(self.limit - len(self._buffer), 0)
            self.dropped += max(len(data) - room, 0)
            data = data[:room]
        self._buffer += data

    def finish_filter(self) -> None:
        """The stream ended: let the filter give what it held back (a lone CR...)."""
        if self._filter is not None:
            tail = self._filter.flush()
            if tail:
                if self.broken is None:
                    self._buffer += tail
                else:
                    self.dropped += len(tail)

    def pump(self) -> None:
        """Write as much as the fd takes now (a blocking-mode fd takes everything)."""
        while self._buffer and self.broken is None:
            piece = bytes(self._buffer[:_WRITE_PIECE])
            try:
                if self._socket is not None:
                    written = self._socket.send(piece, socket.MSG_DONTWAIT)
                else:
                    written = os.write(self._private.fd, piece)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self.broken = errno.errorcode.get(exc.errno or 0, str(exc))
                self.dropped += len(self._buffer)
                self._buffer.clear()
                return
            if written <= 0:
                return
            del self._buffer[:written]
            self.progress_at = time.monotonic()
            self.delivered += written
            self.last_byte = piece[written - 1]
            self.last_write = next(_order)

    def abandon(self) -> int:
        """Give up on what is still queued; returns how many bytes that was."""
        left = len(self._buffer)
        self.dropped += left
        self._buffer.clear()
        return left

    def write_now(self, data: bytes, timeout: float) -> bool:
        """Write ``data`` for the host itself (its summary), waiting at most ``timeout``."""
        import select

        self._buffer += data
        until = time.monotonic() + timeout
        while self._buffer and self.broken is None:
            self.pump()
            fd = self.poll_fd()
            if not self._buffer or fd is None:
                break
            left = until - time.monotonic()
            if left <= 0:
                break
            poller = select.poll()
            poller.register(fd, select.POLLOUT)
            poller.poll(int(left * 1000) + 1)
        done = not self._buffer
        if not done:
            self.abandon()
        return done

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        self._private.close()


@dataclass
class HostStdio:
    """How the caller's standard streams meet one run (the CLI builds one; the API may).

    ``stdin`` is one of the caller's fds whose bytes are relayed into the workload's
    stdin pipe (never placed in the workload; a terminal is not relayed without ``tty``).
    ``stdout``/``stderr`` receive the workload's streams for the caller. ``tty`` lends
    the workload a pty of its own; its output then arrives as stdout only.
    """

    stdin: int | None = None
    stdout: Outlet | None = None
    stderr: Outlet | None = None
    tty: Pty | None = None

    def close(self) -> None:
        for outlet in (self.stdout, self.stderr):
            if outlet is not None:
                outlet.close()
        if self.tty is not None:
            self.tty.close()
