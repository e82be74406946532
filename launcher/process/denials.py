"""The denial supervisor: the launcher answers the workload's denied syscalls and notes them.

With denial evidence, the seccomp filter's denials return SECCOMP_RET_USER_NOTIF: the
kernel stops the calling thread and hands the call to the filter's listener, which the
child passed to the launcher before exec (``mechanisms/seccomp.{py,c}``). The launcher is
the natural supervisor: it outlives the workload, waits for it anyway, and writes the
control channel the host records as the transcript, so what it notes is evidence with no
new channel.

Every notification is answered with the errno its rule means (EPERM), never with
SECCOMP_USER_NOTIF_FLAG_CONTINUE: a notified call never runs. The answer is sent after
the note for a new kind of attempt is written, so the host has the evidence before the
workload has its answer. Nothing the call points to is read (only the registers the
kernel hands over). A call a signal interrupts before it is received is withdrawn by the
kernel (the caller gets EINTR, nothing ran) and is never seen here: the kernel keeps no
count of those, so the notes are the attempts received, a lower bound for a workload that
interrupts its own calls on purpose (found by attack; README "Denied attempts"). If the
launcher dies, the kernel answers every pending and future
notified call with ENOSYS: the boundary fails closed, the evidence stops.

Bounded: attempts are counted per kind (one kind per syscall number); only the first
:data:`~bvisor.contract.denials.MAX_KINDS` kinds are itemised (later ones are counted as
dropped), and each keeps its first :data:`~bvisor.contract.denials.MAX_PIDS` distinct pids.
Notes: one per new kind as it happens; the tallies once the workload has ended
(:meth:`DenialSupervisor.finish`), with a workload killed by SIGSYS — a seccomp kill rule,
or a syscall of a foreign ABI — recorded as a kind of its own (which call it was the kernel
does not say; a process can also send itself SIGSYS, and that reads the same).
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bvisor.contract import denials
from bvisor.launcher.basement import window

__all__ = ["DenialSupervisor"]

Note = Callable[[str], None]
_DRAIN_LIMIT = 4096


@dataclass
class _Kind:
    """One kind of denied attempt as counted so far."""

    index: int
    count: int = 0
    pids: list[int] = field(default_factory=list)
    pids_complete: bool = True

    def saw(self, pid: int) -> None:
        self.count += 1
        if pid in self.pids:
            return
        if len(self.pids) < denials.MAX_PIDS:
            self.pids.append(pid)
        else:
            self.pids_complete = False


class DenialSupervisor:
    """Answers and records the notifications of one run's seccomp filter.

    ``notified`` is the filter's (number, name, errno) for every notifying rule. The socket
    is the launcher's end of the pair the child sends the listener over.
    """

    def __init__(
        self, sock: socket.socket, notified: tuple[tuple[int, str, int], ...], arch: str
    ) -> None:
        self._sock: socket.socket | None = sock
        self._calls = {number: (name, err) for number, name, err in notified}
        self._arch = arch
        self._listener: int | None = None
        self._kinds: dict[object, _Kind] = {}
        self._dropped = 0
        self._note: Note = lambda text: None
        self._lib: Any = None
        self._notice: Any = None

    # -- set-up ----------------------------------------------------------------------

    def take_listener(self, note: Note) -> None:
        """Receive the listener the child sent before exec (it is queued by now)."""
        self._note = note
        sock, self._sock = self._sock, None
        if sock is None:
            return
        try:
            sock.setblocking(False)
            try:
                _, fds, _, _ = socket.recv_fds(sock, 1, 1)
            except (BlockingIOError, InterruptedError):
                fds = []
        finally:
            sock.close()
        if len(fds) != 1:
            for fd in fds:
                os.close(fd)
            note("denial supervisor: no seccomp listener was handed over; nothing is answered")
            return
        cw = window.load()
        self._lib, self._notice = cw.lib, cw.ffi.new("struct bv_notice *")
        self._listener = fds[0]
        os.set_blocking(self._listener, True)
        note(
            f"{denials.SUPERVISOR_NOTE}{len(self._calls)} notified syscalls with their "
            f"errno (never CONTINUE); kinds itemised up to {denials.MAX_KINDS}, pids per kind "
            f"up to {denials.MAX_PIDS}"
        )

    @property
    def listening(self) -> bool:
        return self._listener is not None

    # -- the loop --------------------------------------------------------------------

    def serve_until(self, done_fd: int) -> None:
        """Answer notifications until ``done_fd`` is readable (the workload has ended).

        A receive is made only when the listener polls readable (a notification is
        waiting): the kernel then never blocks it, even if the caller was killed meanwhile
        (it answers ENOENT), so the end is always seen.
        """
        listener = self._listener
        if listener is None:
            return
        poller = select.poll()
        poller.register(listener, select.POLLIN)
        poller.register(done_fd, select.POLLIN)
        while True:
            events = dict(poller.poll())
            happened = events.get(listener, 0)
            if happened & select.POLLIN:
                self._answer_one()
            elif happened & (select.POLLHUP | select.POLLERR):
                # No task uses the filter any more: only the end is left to wait for.
                poller.unregister(listener)
            if done_fd in events:
                return

    def _answer_one(self) -> None:
        assert self._listener is not None
        notice = self._notice
        rc = int(self._lib.bv_notify_recv(self._listener, notice))
        if rc in (errno.ENOENT, errno.EINTR, errno.EAGAIN):
            return  # the caller was interrupted or killed before the call was read
        if rc != 0:
            raise OSError(rc, f"seccomp notification receive: {os.strerror(rc)}")
        number, pid = int(notice.nr), int(notice.pid)
        name, err = self._calls.get(number, (None, errno.EPERM))
        self._record(("seccomp", number), pid, name=name, number=number, err=err, notice=notice)
        rc = int(self._lib.bv_notify_send(self._listener, notice.id, err))
        if rc not in (0, errno.ENOENT):  # ENOENT: the caller died meanwhile
            raise OSError(rc, f"seccomp notification answer: {os.strerror(rc)}")

    def _record(
        self, key: object, pid: int, *, name: str | None, number: int, err: int, notice: Any
    ) -> None:
        kind = self._kinds.get(key)
        if kind is None:
            if len(self._kinds) >= denials.MAX_KINDS:
                self._dropped += 1
                return
            kind = _Kind(len(self._kinds))
            self._kinds[key] = kind
            self._note(
                denials.first_note(
                    kind.index,
                    mechanism="seccomp",
                    pid=pid,
                    syscall=name or f"nr{number}",
                    number=number,
                    arch=self._arch,
                    answer=errno.errorcode.get(err, str(err)),
                    args=tuple(int(notice.args[i]) for i in range(6)),
                )
            )
        kind.saw(pid)

    # -- the end ---------------------------------------------------------------------

    def finish(self, workload_pid: int | None, exit_signal: int | None) -> None:
        """Answer what is still pending, note the tallies, close the listener.

        The drain is bounded: whatever the workload left behind may still be calling
        (until the run tree is killed); its later attempts get the kernel's ENOSYS once
        the listener is closed, uncounted.
        """
        listener = self._listener
        if listener is None:
            return
        try:
            for _ in range(_DRAIN_LIMIT):
                ready = select.poll()
                ready.register(listener, select.POLLIN)
                if not any(event & select.POLLIN for _, event in ready.poll(0)):
                    break
                self._answer_one()
        finally:
            self._listener = None
            with contextlib.suppress(OSError):
                os.close(listener)
        if exit_signal == signal.SIGSYS and workload_pid is not None:
            self._kill(workload_pid)
        for kind in self._kinds.values():
            self._note(denials.tally_note(kind.index, kind.count, kind.pids, kind.pids_complete))
        if self._dropped:
            self._note(denials.dropped_note(self._dropped))

    def _kill(self, pid: int) -> None:
        if len(self._kinds) >= denials.MAX_KINDS:
            self._dropped += 1
            return
        kind = _Kind(len(self._kinds))
        self._kinds[("seccomp", "kill")] = kind
        self._note(
            denials.first_note(
                kind.index, mechanism="seccomp", pid=pid, arch=self._arch, answer="SIGSYS"
            )
        )
        kind.saw(pid)
