"""A resident launcher: the launcher started once, forking a fresh launcher for each run.

Starting ``bvisor-linux-launcher`` costs an interpreter, its imports and the hashing of
its own code on every run — most of a short run's time. A resident launcher pays that
once: it loads and measures itself, says hello (its pid and identity) to the host that
started it, and then serves runs handed to it over the start socket (layouts:
:mod:`bvisor.launcher.wire.resident`). Each run is a ``fork`` of this process — still
single-threaded, still holding nothing but its own code — which places the run's fds at
their numbers, closes everything else (the start socket included, so a run never sees
another's fds), takes the run's channel variables as its whole environment and then runs
exactly the code a launcher started for that run would (:class:`Launcher`), with the
identity measured at start. The resident itself never reads a launch body: verification,
the program and the child window all happen in the run's own process.

Lifetime: the host holds the other end of the start socket and never lets a child
inherit it, so end-of-file there means the host process is gone; the resident then kills
every run it holds (each run's process group, and each run's launcher has PDEATHSIG tied
to the resident) and exits. A run whose host side closes its reply socket early is killed
the same way. Nothing here uses ``PR_SET_PDEATHSIG`` towards the host: that fires when the
*thread* that started the resident ends, and the API starts it from whichever thread runs
first.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import os
import select
import signal
import socket
import struct

from bvisor.contract import mechanisms as mech
from bvisor.fdtable import open_fds
from bvisor.launcher.basement import lifeline, seccomp, window
from bvisor.launcher.process.main import Control, Launcher, LauncherIdentity, say_untied
from bvisor.launcher.wire import resident as wire
from bvisor.launcher.wire.channel import CONTROL_FD_ENV, GATE_FD_ENV, LAUNCHER_FD_ENV, PLAN_FD_ENV

__all__ = ["serve"]

_EXIT_HOST_GONE = 0
_EXIT_BAD_START = 4


class _Run:
    """One run's launcher as the resident sees it: its pid, pidfd and reply socket."""

    __slots__ = ("exited", "pid", "pidfd", "reply")

    def __init__(self, pid: int, pidfd: int, reply: socket.socket) -> None:
        self.pid = pid
        self.pidfd = pidfd
        self.reply = reply
        self.exited = False


def serve() -> int:
    """Run as a resident launcher until the host goes away."""
    raw = os.environ.get(wire.RESIDENT_FD_ENV, "")
    if not raw.isdigit():
        return _EXIT_BAD_START
    global _host_pid
    _host_pid = os.getppid()
    start = socket.socket(fileno=int(raw))
    os.set_inheritable(start.fileno(), False)
    start.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    # posix_spawn passes every inheritable fd of the host: kept for the resident's life,
    # a host pipe's write end would keep that pipe from ever reaching end-of-file.
    entry_fd = os.environ.get(LAUNCHER_FD_ENV, "")
    keep = {0, 1, 2, start.fileno(), *([int(entry_fd)] if entry_fd.isdigit() else [])}
    _close_all_but(keep)
    _warm()
    measured = LauncherIdentity.measure()
    measured.resident_pid = os.getpid()
    start.send(
        wire.encode_hello(
            os.getpid(),
            measured.code.digest,
            measured.entry,
            [name for name, _ in measured.code.files],
        )
    )
    runs: dict[int, _Run] = {}  # by pidfd
    poller = select.poll()
    poller.register(start, select.POLLIN)
    # The seccomp filters a run may ask for, built one at a time while idle — once a second
    # run has come: a host that makes one run (a command) would pay for them and use one.
    taken, prebuilt = 0, False
    try:
        while True:
            prebuilding = taken >= 2 and not prebuilt
            ready = poller.poll(0 if prebuilding else None)
            if not ready and prebuilding:
                prebuilt = not seccomp.prebuild_one()
            for fd, events in ready:
                if fd == start.fileno():
                    taken += 1
                    if not _take_request(start, measured, runs, poller):
                        return _EXIT_HOST_GONE
                elif fd in runs:
                    _pidfd_ready(runs[fd], poller)
                else:
                    _reply_ready(fd, events, runs, poller)
    finally:
        for run in runs.values():
            _kill(run.pid)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(run.pid, 0)


def _warm() -> None:
    """Load everything a run needs before the hello, so that it is measured with the rest
    and no run's fork imports, maps or probes anything on its own: the child window,
    libseccomp with its ABI module (and the kernel's seccomp API level, asked once), the
    ``ascii`` codec the launcher reads ``/proc`` with, the ``resource`` module
    ``os.wait4`` builds its usage from, and the declaration digest of every mechanism (a
    run checks each entry's). From its second run on, the resident also builds every
    seccomp filter a run can ask for while it has nothing else to do (a run then finds
    its filter built, :func:`bvisor.launcher.basement.seccomp.prebuild_one`)."""
    import codecs

    window.load()
    seccomp.ensure_generated()
    seccomp.warm()
    codecs.lookup("ascii")
    importlib.import_module("resource")
    for primitive in mech.CATALOGUE:
        mech.decl_digest(primitive)


def _take_request(
    start: socket.socket, measured: LauncherIdentity, runs: dict[int, _Run], poller: select.poll
) -> bool:
    """Serve one request; False when the host has gone (end of file on the start socket)."""
    try:
        message, received, sender, flags = _receive(start)
    except InterruptedError:
        return True
    if not message and not received:
        return False
    if not received:
        return True  # a request with no reply socket has nobody to answer
    reply = socket.socket(fileno=received[0])
    placed = received[1:]
    try:
        if flags & (socket.MSG_CTRUNC | socket.MSG_TRUNC):
            raise wire.WireError("request or its fds were truncated")
        if not _from_host(sender):
            raise wire.WireError(f"request sent by pid {sender}, not by the host or its fork")
        request = wire.decode_request(message, len(received))
        pid = _fork_run(start, reply, placed, request, measured)
    except (wire.WireError, OSError) as exc:
        with contextlib.suppress(OSError):
            reply.send(wire.REFUSED + str(exc).encode("utf-8", "replace")[:1024])
        reply.close()
        return True
    finally:
        for fd in placed:
            os.close(fd)
    pidfd = os.pidfd_open(pid)
    runs[pidfd] = _Run(pid, pidfd, reply)
    poller.register(pidfd, select.POLLIN)
    poller.register(reply, select.POLLIN)
    with contextlib.suppress(OSError):  # a host that already left is seen as a hang-up
        reply.send(wire.encode_spawned(pid))
    return True


_UCRED = struct.Struct("iII")  # struct ucred: pid, uid, gid
_host_pid = 0  # the process that started this resident (its parent at start)


def _receive(start: socket.socket) -> tuple[bytes, list[int], int, int]:
    """One request: its bytes, its fds, the pid the kernel says sent it, and the flags."""
    message, ancillary, flags, _ = start.recvmsg(
        wire.MAX_MESSAGE,
        socket.CMSG_SPACE((wire.MAX_PLACED + 1) * 4) + socket.CMSG_SPACE(_UCRED.size),
    )
    received: list[int] = []
    sender = -1
    for level, kind, data in ancillary:
        if level != socket.SOL_SOCKET:
            continue
        if kind == socket.SCM_RIGHTS:
            usable = len(data) - len(data) % 4
            received += list(struct.unpack(f"{usable // 4}i", data[:usable]))
        elif kind == socket.SCM_CREDENTIALS and len(data) >= _UCRED.size:
            sender = _UCRED.unpack(data[: _UCRED.size])[0]
    return message, received, sender, flags


def _from_host(sender: int) -> bool:
    """Was the request sent by the host, or by a process the host forked (``bvisor serve``)?

    The kernel fills in the sender's credentials (``SO_PASSCRED``); a process can claim
    another pid only with CAP_SYS_ADMIN over that pid's namespace, which a workload never
    has over the host's. So a start socket that leaked anyway still serves nobody else.
    """
    if sender == _host_pid:
        return True
    try:
        with open(f"/proc/{sender}/stat", "rb") as handle:
            parent = int(handle.read().rsplit(b")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return False
    return parent == _host_pid


def _fork_run(
    start: socket.socket,
    reply: socket.socket,
    placed: list[int],
    request: wire.Request,
    measured: LauncherIdentity,
) -> int:
    resident = os.getpid()
    pid = os.fork()
    if pid == 0:
        _become_run(resident, start, reply, placed, request, measured)  # never returns
    with contextlib.suppress(OSError):  # the child does it too; whichever runs first wins
        os.setpgid(pid, pid)
    return pid


def _become_run(
    resident: int,
    start: socket.socket,
    reply: socket.socket,
    placed: list[int],
    request: wire.Request,
    measured: LauncherIdentity,
) -> None:
    """In the forked child: become a launcher started for this one run. Never returns."""
    code = 4
    try:
        os.setpgid(0, 0)
        untied: OSError | lifeline.HostGone | None = None
        try:
            lifeline.die_with_host(resident)
        except (OSError, lifeline.HostGone) as exc:
            untied = exc
        start.close()
        reply.close()
        _place(placed, request.slots)
        if untied is not None:  # said on the run's control channel, as an unserved one does
            say_untied(Control(request.control), untied)
            return
        os.environ.clear()
        os.environ[PLAN_FD_ENV] = str(request.plan)
        os.environ[CONTROL_FD_ENV] = str(request.control)
        if request.gate is not None:
            os.environ[GATE_FD_ENV] = str(request.gate)
        code = Launcher(Control(request.control), measured).run()
    except BaseException:
        code = 4
    finally:
        os._exit(code)


def _place(placed: list[int], slots: list[int]) -> None:
    """Put ``placed[i]`` at fd ``slots[i]`` and close every other fd above 2."""
    floor = max(slots, default=2) + 1
    # Above every target first, so placing one fd can never overwrite another's source.
    staged = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, floor) for fd in placed]
    for fd in placed:
        os.close(fd)
    for source, target in zip(staged, slots, strict=True):
        os.dup2(source, target, inheritable=True)
    _close_all_but(set(slots) | {0, 1, 2})


def _close_all_but(keep: set[int]) -> None:
    for fd in open_fds():
        if fd not in keep:
            with contextlib.suppress(OSError):
                os.close(fd)


def _pidfd_ready(run: _Run, poller: select.poll) -> None:
    """The run's launcher exited: tell the host, leave it a zombie until the host says."""
    run.exited = True
    poller.unregister(run.pidfd)  # an exited pidfd stays readable
    with contextlib.suppress(OSError):
        run.reply.send(wire.EXITED)


def _reply_ready(fd: int, events: int, runs: dict[int, _Run], poller: select.poll) -> None:
    run = next((r for r in runs.values() if r.reply.fileno() == fd), None)
    if run is None:
        poller.unregister(fd)
        return
    try:
        message = run.reply.recv(16)
    except OSError:
        message = b""
    if message == wire.REAP and run.exited:
        _, status = os.waitpid(run.pid, 0)
        code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        with contextlib.suppress(OSError):
            run.reply.send(wire.encode_status(code))
    else:
        # The host side of this run is gone, or spoke out of turn: end the run.
        _kill(run.pid)
        os.waitpid(run.pid, 0)
        if not run.exited:
            poller.unregister(run.pidfd)
    poller.unregister(fd)
    os.close(run.pidfd)
    run.reply.close()
    del runs[run.pidfd]


def _kill(pid: int) -> None:
    """SIGKILL a run's process group (its launcher leads it), or the launcher alone."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
