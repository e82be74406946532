"""Host side of the resident launcher: start it once per launcher file, hand it runs.

A run handed to a resident launcher gets the same envelope, fds, h_l check and
transcript as a launcher started for it (see :mod:`bvisor.launcher.process.resident`);
only the interpreter start-up, the imports and the hashing of the launcher's code are
paid once instead of on every run. The host keeps these promises:

* **Only this process reaches it.** The resident is started with one end of an unnamed
  ``SOCK_SEQPACKET`` socket pair; the other end is close-on-exec in this process and is
  never named in the filesystem, so no other process can hand it a run or read a reply.
* **The code that runs is the code admitted.** Every run opens and hashes the launcher
  file, exactly as a fresh launch does, and refuses a file that is not the plan's
  launcher. A resident started from a file with other bytes (the file was replaced since)
  is never used: a new one is started from the file as it is now. The resident's hello
  names the entry digest it hashed from the very fd it was executed from, and the run's
  transcript repeats it, so the report still attests the launcher's identity.
* **A dead resident fails closed.** A resident found dead before a run is handed over is
  replaced (nothing of the run had started). Once a run is handed over, its launcher's
  death, the resident's death or any message out of turn ends that run as a launcher that
  exited without a status: a supervisor fault, never a run with less confinement.

Runs that need the launcher in the caller's own process group (stdin is a terminal) are
started fresh, never through a resident: a resident's runs lead their own groups. Set
``BVISOR_RESIDENT=0`` to start every launcher fresh.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import socket
import threading
import time
from collections.abc import Sequence

from bvisor.launcher.basement import hostspawn
from bvisor.launcher.wire import resident as wire
from bvisor.launcher.wire.channel import LAUNCHER_FD_ENV

__all__ = [
    "RESIDENT_ENV",
    "HandedOver",
    "ResidentGone",
    "ResidentLauncher",
    "ResidentRun",
    "RunLost",
    "holds_socket_of",
    "resident_enabled",
    "resident_for",
    "stop_residents",
]

RESIDENT_ENV = "BVISOR_RESIDENT"
_HELLO_TIMEOUT = 30.0  # a loaded machine can take seconds to start an interpreter
_SPAWN_TIMEOUT = 30.0
_MAX_RESIDENTS = 4  # launcher files in use at once (tests use several)

_lock = threading.RLock()
_residents: dict[str, ResidentLauncher] = {}  # by the launcher file's digest
_owned: set[tuple[int, int]] = set()  # (st_dev, st_ino) of our ends of resident sockets


class ResidentGone(OSError):
    """The resident launcher could not be started or took no run: nothing was handed over."""


class RunLost(OSError):
    """A run was handed to the resident but never confirmed started: it ends as a fault.

    Not retried: the run's launcher may have begun before the resident died (it dies with
    the resident), and a second attempt would run a workload the ledger records once.
    """


def resident_enabled() -> bool:
    """Residents are used unless ``BVISOR_RESIDENT=0``."""
    return os.environ.get(RESIDENT_ENV, "1") != "0"


class ResidentRun:
    """One run's launcher, forked by the resident: its pid and its reply channel.

    Plays the part a spawned child plays for a fresh launch: :meth:`fileno` becomes
    readable when the launcher has exited (or the resident is gone), and :meth:`reap`
    returns its exit code (``-N``: signal N), or None when no status can be had.
    """

    def __init__(self, pid: int, reply: socket.socket) -> None:
        self.pid = pid
        self._reply = reply
        self._exited = False
        self._lost = False
        try:  # the run's launcher is the resident's child, but any process may watch it
            self.pidfd: int | None = os.pidfd_open(pid)
        except OSError:
            self.pidfd = None

    def close(self) -> None:
        """Release the pidfd (after :meth:`reap`)."""
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None

    def fileno(self) -> int:
        return self._reply.fileno()

    def gone(self) -> bool:
        """Has the run's launcher exited (or can its end no longer be known)?"""
        if self._exited or self._lost:
            return True
        ready, _, _ = select.select([self._reply], [], [], 0)
        if ready:
            self._take(self._recv())
        return self._exited or self._lost

    def reap(self) -> int | None:
        """Wait for the exit (the caller has killed the run), let it be reaped, return it."""
        try:
            while not (self._exited or self._lost):
                self._take(self._recv(timeout=_SPAWN_TIMEOUT))
            if self._lost:
                return None
            self._reply.send(wire.REAP)
            message = self._recv(timeout=_SPAWN_TIMEOUT)
            return wire.decode_status(message)
        except (OSError, wire.WireError):
            return None
        finally:
            _close(self._reply)

    def abandon(self) -> None:
        """Close the run's channel; the resident then kills the run's group."""
        _close(self._reply)

    def _recv(self, timeout: float | None = 0) -> bytes:
        if timeout is not None:
            ready, _, _ = select.select([self._reply], [], [], timeout)
            if not ready:
                raise ResidentGone("the resident launcher did not answer")
        return self._reply.recv(wire.MAX_MESSAGE)

    def _take(self, message: bytes) -> None:
        if message == wire.EXITED:
            self._exited = True
        else:  # end of file (the resident died) or a message out of turn
            self._lost = True


class ResidentLauncher:
    """A launcher process started from one launcher file and kept for this process's runs."""

    def __init__(self, sock: socket.socket, pid: int, pidfd: int, entry: str, code: str):
        self._sock = sock
        self.pid = pid
        self._pidfd = pidfd
        self.entry = entry
        self.code = code

    @classmethod
    def start(cls, launcher_fd: int, entry: str) -> ResidentLauncher:
        """Start a resident from the open launcher file whose digest is ``entry``."""
        host_end, child_end = _socketpair()
        null = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
        try:
            pid = hostspawn.spawn_with_fds(
                "/proc/self/fd/4",
                ["bvisor-linux-launcher", "resident"],
                {wire.RESIDENT_FD_ENV: "3", LAUNCHER_FD_ENV: "4"},
                [(null, 0), (null, 1), (null, 2), (child_end.fileno(), 3), (launcher_fd, 4)],
                new_process_group=True,
            )
        finally:
            os.close(null)
            child_end.close()
        pidfd = os.pidfd_open(pid)
        try:
            ready, _, _ = select.select([host_end], [], [], _HELLO_TIMEOUT)
            message = host_end.recv(wire.MAX_MESSAGE) if ready else b""
            hello = wire.decode_hello(message)
        except (OSError, wire.WireError) as exc:
            _stop(pid, pidfd, host_end)
            raise ResidentGone(f"the resident launcher did not start: {exc}") from None
        if hello["pid"] != pid or hello["entry"] != entry:
            _stop(pid, pidfd, host_end)
            raise ResidentGone(
                f"the resident launcher's hello (pid {hello['pid']}, entry "
                f"{str(hello['entry'])[:16]}) is not the process and file started"
            )
        return cls(host_end, pid, pidfd, entry, str(hello["code"]))

    def alive(self) -> bool:
        ready, _, _ = select.select([self._pidfd], [], [], 0)
        return not ready

    def submit(
        self,
        placements: Sequence[tuple[int, int]],
        plan: int,
        control: int,
        gate: int | None = None,
    ) -> HandedOver:
        """Hand a run over: each (fd, slot) placed in a launcher forked for it. Returns
        once the request is sent (:class:`ResidentGone` if the resident took nothing);
        :meth:`HandedOver.started` waits for the resident's word that it started."""
        host_end, child_end = _socketpair()
        request = wire.Request([slot for _, slot in placements], plan, control, gate)
        try:
            socket.send_fds(
                self._sock,
                [wire.encode_request(request)],
                [child_end.fileno(), *(fd for fd, _ in placements)],
            )
        except OSError as exc:
            _close(host_end)
            raise ResidentGone(f"the resident launcher took no run: {exc.strerror}") from None
        finally:
            child_end.close()
        return HandedOver(host_end)

    def stop(self) -> None:
        _stop(self.pid, self._pidfd, self._sock)

    def _move_above(self, floor: int) -> None:
        moved = socket.socket(fileno=fcntl.fcntl(self._sock.fileno(), fcntl.F_DUPFD_CLOEXEC, floor))
        self._sock.close()  # same socket, still owned: its (st_dev, st_ino) is unchanged
        self._sock = moved
        pidfd = fcntl.fcntl(self._pidfd, fcntl.F_DUPFD_CLOEXEC, floor)
        os.close(self._pidfd)
        self._pidfd = pidfd


class HandedOver:
    """A run sent to a resident, its start not yet confirmed (the host does what it can
    meanwhile: the resident forks the run's launcher)."""

    def __init__(self, reply: socket.socket) -> None:
        self._reply = reply

    def started(self) -> ResidentRun:
        """The run's launcher, once the resident says it forked it (:class:`RunLost`
        if it refused, died or said nothing in time)."""
        host_end = self._reply
        deadline = time.monotonic() + _SPAWN_TIMEOUT
        try:
            ready, _, _ = select.select([host_end], [], [], max(0.0, deadline - time.monotonic()))
            message = host_end.recv(wire.MAX_MESSAGE) if ready else b""
            if message[:1] == wire.REFUSED:
                raise RunLost(
                    "the resident launcher refused the run: "
                    + message[1:].decode("utf-8", "replace")
                )
            pid = wire.decode_spawned(message)
        except (OSError, wire.WireError) as exc:
            _close(host_end)
            raise RunLost(f"the resident launcher did not start the run: {exc}") from None
        return ResidentRun(pid, host_end)


def resident_for(launcher_fd: int, entry: str) -> ResidentLauncher:
    """The live resident started from a launcher file with digest ``entry`` (started now
    if there is none, or if the one there was has died)."""
    with _lock:
        current = _residents.get(entry)
        if current is not None and current.alive():
            return current
        if current is not None:
            _residents.pop(entry).stop()
        while len(_residents) >= _MAX_RESIDENTS:  # the oldest launcher file's goes first
            _residents.pop(next(iter(_residents))).stop()
        started = ResidentLauncher.start(launcher_fd, entry)
        _residents[entry] = started
        return started


def holds_socket_of(fd: int) -> bool:
    """Is ``fd`` one of this process's ends of a resident's sockets (start or reply)?

    Such an fd must never reach a workload: through a start socket it could hand the
    launcher a plan of its own, through another run's reply socket end that run.
    """
    try:
        info = os.fstat(fd)
    except OSError:
        return False
    with _lock:
        return (info.st_dev, info.st_ino) in _owned


def _socketpair() -> tuple[socket.socket, socket.socket]:
    """A close-on-exec SEQPACKET pair; this process's end is registered as owned."""
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    info = os.fstat(mine.fileno())
    with _lock:
        _owned.add((info.st_dev, info.st_ino))
    return mine, theirs


def _close(sock: socket.socket) -> None:
    """Close one of our ends, forgetting it as owned."""
    if sock.fileno() < 0:
        return
    with contextlib.suppress(OSError):
        info = os.fstat(sock.fileno())
        with _lock:
            _owned.discard((info.st_dev, info.st_ino))
    sock.close()


def move_fds_above(floor: int) -> None:
    """Renumber every resident's fds at or above ``floor`` (``bvisor serve``'s copy of
    itself places the caller's fds below them)."""
    with _lock:
        for keeper in _residents.values():
            keeper._move_above(floor)


def own_fds() -> set[int]:
    """The fds this module holds open for its residents."""
    with _lock:
        return {fd for k in _residents.values() for fd in (k._sock.fileno(), k._pidfd)}


def stop_residents() -> None:
    """Stop every resident this process started (the next run starts a new one)."""
    with _lock:
        while _residents:
            _residents.popitem()[1].stop()


def _stop(pid: int, pidfd: int, sock: socket.socket) -> None:
    _close(sock)  # the resident kills what it still holds and exits
    with contextlib.suppress(OSError):
        os.kill(pid, 9)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)
    os.close(pidfd)
