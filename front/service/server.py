"""The service's side: listen, check the caller, fork a copy that becomes the command.

The service stays single-threaded (it forks for every command) and never opens a ledger
(an LMDB environment must not cross a fork): the copy opens the ledger its command names,
exactly as the command would. What the service prepares once, before it listens, is
what every copy inherits: the imports of the run path, the probed profile and a resident
launcher (:mod:`bvisor.launcher.host.resident`).

It leaves when it has been idle (no command running, none accepted) for ``idle``
seconds, when its socket path no longer leads to it (another service took the name),
when asked (``bvisor serve --stop``) or when its own code changed on disk (a stale
service refuses commands, which then run in their own process); in each case it first
lets the commands it runs finish.
"""

from __future__ import annotations

import contextlib
import fcntl
import hmac
import io
import os
import select
import signal
import socket
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from bvisor.fdtable import open_fds
from bvisor.front.service import learned, paths, wire
from bvisor.front.service.context import context_difference
from bvisor.front.service.install import install_identity

__all__ = ["ServiceError", "serve"]

_RUN_PATH = (  # what `bvisor run` imports as it goes, imported once here instead
    "bvisor.front.cli.main",
    "bvisor.front.cli.run_cmd",
    "bvisor.front.cli.run_output",
    "bvisor.front.api",
    "bvisor.front.defaults",
    "bvisor.front.specfile",
    "bvisor.ledger",
    "bvisor.ledger.paths",
    "bvisor.launcher.host.backend",
    "bvisor.launcher.host.runner",
    "bvisor.launcher.host.interrupts",
    "bvisor.launcher.host.inherited",
    "bvisor.launcher.host.reach",
    "bvisor.launcher.host.script",
    "bvisor.launcher.host.secrets",
    "bvisor.planner.planning",
    "bvisor.planner.registry",
)
_ACCEPT_TIMEOUT = 5.0  # for the request after a connection, and for a stopping client
_STOP_GRACE = 10.0  # after forwarding SIGTERM for a vanished client, before SIGKILL


class ServiceError(RuntimeError):
    """The service could not start (its directory or socket)."""


@dataclass
class _Command:
    pid: int
    pidfd: int
    conn: socket.socket
    told: int  # the read end of the pipe the copy tells its fresh plans on
    kill_at: float | None = None


def serve(idle: float, announce: Callable[[str], None] = lambda _line: None) -> int:
    """Serve commands until idle, replaced, stopped or stale; returns the exit status."""
    _forget_start_directory()
    identity = install_identity(start_directory_first=False)
    try:
        directory = paths.private_dir(paths.service_dir(), create=True)
    except OSError as exc:
        raise ServiceError(str(exc)) from None
    assert directory is not None
    _warm()
    stamps = _code_stamps()
    token = os.urandom(paths.TOKEN_BYTES)
    proof = _Proof.make()
    listener, inode = _listen(directory, token, proof.fd)
    where = os.path.join(directory, paths.SOCKET_NAME)
    announce(f"bvisor serve: pid {os.getpid()} listening on {where} (idle exit {idle:g}s)")
    commands: dict[int, _Command] = {}  # by pidfd
    by_conn: dict[int, _Command] = {}
    last_activity = time.monotonic()
    accepting = True
    learner = learned.Learner()
    poller = select.poll()
    poller.register(listener, select.POLLIN)
    while True:
        now = time.monotonic()
        if accepting and (_replaced(where, inode) or now - last_activity >= idle):
            accepting = False
            poller.unregister(listener)
            listener.close()
        if not accepting and not commands:
            break
        for command in commands.values():
            if command.kill_at is not None and now >= command.kill_at:
                with contextlib.suppress(OSError):
                    os.kill(command.pid, signal.SIGKILL)
                command.kill_at = None
        timeout = max(0.0, last_activity + idle - now) if accepting else 1.0
        learning = accepting and learner.pending
        ready = poller.poll(0 if learning else min(timeout, 1.0) * 1000)
        if not ready and accepting:
            learner.step()  # nothing waits: plan what a copy planned, for the next ones
        for fd, _events in ready:
            if accepting and fd == listener.fileno():
                last_activity = time.monotonic()
                verdict = _accept(
                    listener,
                    (token, proof),
                    (stamps, identity),
                    commands,
                    by_conn,
                    poller,
                    learner,
                )
                if verdict == "stop" or verdict == "stale":
                    accepting = False
                    poller.unregister(listener)
                    listener.close()
            elif fd in commands:
                finished = commands.pop(fd)
                _finished(finished, by_conn, poller)
                learner.read(finished.told)
                last_activity = time.monotonic()
            elif fd in by_conn:
                _client_spoke(by_conn[fd], poller)
    with contextlib.suppress(OSError):
        if not _replaced(where, inode):
            os.unlink(where)
    return 0


def _forget_start_directory() -> None:
    """Import nothing from the directory the service was started in, from here on.

    Without ``-P``, ``sys.path[0]`` is the start directory (``python -m``, ``-c``) or the
    script's: the service is started by a command in *its* working directory, which is
    that run's write root by default, and every later command's copy imports what it has
    not imported yet (``base64`` when it records) through ``sys.path`` — a module the
    workload left there ran as the caller, unconfined. The service is started with
    ``-P`` (:func:`bvisor.front.service.client.start_service`); this covers a service
    started by hand. bvisor itself is imported already and keeps its own paths.
    """
    from bvisor.launcher.host.reach import forget_start_directory

    forget_start_directory()


def _warm() -> None:
    """Import and prepare what every command's run uses, once, before forking any: a copy
    that imports a module pays for finding, reading and (where no bytecode is cached)
    compiling it, on every command. The parser of ``bvisor run`` is built here too."""
    import importlib

    for name in _RUN_PATH:
        importlib.import_module(name)
    from bvisor.front.cli.main import build_parser

    build_parser("run")
    from bvisor.launcher.host import resident
    from bvisor.launcher.host.backend import LinuxBackend
    from bvisor.launcher.host.reach import judge_supervisor_code
    from bvisor.launcher.wire.identity import hash_fd

    backend = LinuxBackend()
    backend.probe()
    judge_supervisor_code(backend.launcher_path)
    if resident.resident_enabled():
        fd = os.open(backend.launcher_path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            with contextlib.suppress(OSError):
                resident.resident_for(fd, hash_fd(fd))
        finally:
            os.close(fd)


def _code_stamps() -> dict[str, tuple[int, int]]:
    """(mtime, size) of every loaded bvisor module's file: a change makes the service stale."""
    stamps: dict[str, tuple[int, int]] = {}
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if isinstance(file, str) and (name == "bvisor" or name.startswith("bvisor.")):
            with contextlib.suppress(OSError):
                info = os.stat(file)
                stamps[file] = (info.st_mtime_ns, info.st_size)
    return stamps


def _stale(stamps: dict[str, tuple[int, int]]) -> str | None:
    for file, stamp in stamps.items():
        try:
            info = os.stat(file)
        except OSError:
            return file
        if (info.st_mtime_ns, info.st_size) != stamp:
            return file
    return None


@dataclass(frozen=True)
class _Proof:
    """What only a caller that may inspect the service can present.

    The service's checks of a caller's context read ``/proc``, where a Landlock domain
    leaves no trace (nor do other filters a sandbox adds): a caller in one could be
    served by the unconfined service, and its run would escape the domain. But the
    kernel lets a process read ``/proc/<service>/fd/N`` only when it may inspect the
    service (ptrace read access), which Landlock refuses a process in a domain the
    service is not in (and the capability rules refuse a caller with fewer capabilities).
    So the service holds a memfd whose *name* carries a nonce, and serves only a caller
    that read it there: bvisor's own client does, and one that skips its own checks can
    present no nonce it could not read.

    The same holds the other way round: a process of the user's in a Landlock domain that
    can write the service's directory could pose as the service, and a caller would hand
    it its environment and fds. So the caller's first message names a memfd of its own,
    and it sends the command only once the service has shown it that memfd's nonce
    (:func:`_seen`).
    """

    fd: int
    nonce: str

    @classmethod
    def make(cls) -> _Proof:
        nonce = os.urandom(16).hex()
        return cls(os.memfd_create(paths.PROOF_NAME + nonce, os.MFD_CLOEXEC), nonce)

    def holds(self, presented: object) -> bool:
        return isinstance(presented, str) and hmac.compare_digest(presented, self.nonce)


def _listen(directory: str, token: bytes, proof_fd: int) -> tuple[socket.socket, int]:
    """Write the token, bind a new socket and rename it over the socket name."""
    token_path = os.path.join(directory, paths.TOKEN_NAME)
    staged = f"{token_path}.{os.getpid()}"
    fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, token + str(proof_fd).encode("ascii"))
    finally:
        os.close(fd)
    os.rename(staged, token_path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    bound = os.path.join(directory, f"{paths.SOCKET_NAME}.{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(bound)
    listener.bind(bound)
    os.chmod(bound, 0o600)
    listener.listen(64)
    final = os.path.join(directory, paths.SOCKET_NAME)
    os.rename(bound, final)
    return listener, os.stat(final).st_ino


def _replaced(where: str, inode: int) -> bool:
    try:
        return os.stat(where).st_ino != inode
    except OSError:
        return True


def _accept(
    listener: socket.socket,
    keys: tuple[bytes, _Proof],
    own: tuple[dict[str, tuple[int, int]], list[object]],
    commands: dict[int, _Command],
    by_conn: dict[int, _Command],
    poller: select.poll,
    learner: learned.Learner,
) -> str:
    try:
        conn, _ = listener.accept()
    except OSError:
        return "none"
    conn.settimeout(_ACCEPT_TIMEOUT)
    fds: list[int] = []
    try:
        pid, uid, _gid = struct.unpack(
            "3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
        )
        if uid != os.geteuid():
            raise _Refused(f"uid {uid} is not this service's user")
        data, fds, _flags, _ = socket.recv_fds(conn, wire.MAX_MESSAGE, wire.MAX_FDS)
        request = wire.decode(data)
        token, proof = keys
        presented = request.get("token")
        if not isinstance(presented, str) or not hmac.compare_digest(presented, token.hex()):
            raise _Refused("the service token does not match")
        if not proof.holds(request.get("proof")):
            raise _Refused("the caller could not inspect the service (a sandbox's domain?)")
        if fds:
            raise _Refused("the first message carries no fds")
        if request.get("stop") is True:
            _answer(conn, {"stopping": os.getpid()})
            conn.close()
            return "stop"
        if request.get("status") is True:
            _answer(
                conn,
                {
                    "pid": os.getpid(),
                    "running": len(commands),
                    "planned_by_copies": learner.told,
                    "planned_for_copies": learner.planned,
                },
            )
            conn.close()
            return "none"
        if request.get("v") != wire.VERSION:
            raise _Refused(f"request version {request.get('v')!r} is not {wire.VERSION}")
        difference = context_difference(pid)
        if difference is not None:
            raise _Refused(f"the caller's {difference} differs from the service's")
        stamps, identity = own
        changed = _stale(stamps)
        if changed is not None:
            raise _Stale(f"the service's code changed on disk ({changed})")
        _answer(conn, {"seen": _seen(pid, request.get("hello"))})
        data, fds, _flags, _ = socket.recv_fds(conn, wire.MAX_MESSAGE, wire.MAX_FDS)
        request = wire.decode(data)
        command = _parse(request, fds)
        if request.get("install") != identity:
            raise _Refused(_another_install(request.get("install"), identity))
    except (_Refused, wire.WireError, OSError, ValueError, KeyError) as exc:
        for fd in fds:
            os.close(fd)
        with contextlib.suppress(OSError):
            _answer(conn, {"refused": str(exc)})
        conn.close()
        return "stale" if isinstance(exc, _Stale) else "none"
    told, tell = os.pipe2(os.O_CLOEXEC)
    child = os.fork()
    if child == 0:
        os.close(told)
        os.close(proof.fd)  # the copy becomes a command: it proves nothing to anyone
        _become(command, listener, conn, tell)  # never returns
    os.close(tell)
    for fd in fds:
        os.close(fd)
    pidfd = os.pidfd_open(child)
    entry = _Command(child, pidfd, conn, told)
    commands[pidfd] = entry
    by_conn[conn.fileno()] = entry
    poller.register(pidfd, select.POLLIN)
    poller.register(conn, select.POLLIN)
    with contextlib.suppress(OSError):
        _answer(conn, {"started": child})
    return "none"


def _seen(pid: int, fd: object) -> str:
    """The nonce in the name of the caller's proof memfd, read through ``/proc``: the proof
    the other way round (:class:`_Proof`). A process posing as the service from inside a
    Landlock domain cannot read it, and a caller hands nothing over until it is shown
    its nonce. Empty when it cannot be read (the caller then refuses)."""
    if not isinstance(fd, int) or isinstance(fd, bool) or not 0 <= fd < 1 << 20:
        raise _Refused("hello must name the caller's proof fd")
    return paths.proof_nonce(pid, fd) or ""


class _Refused(Exception):
    pass


_IDENTITY_PARTS = ("interpreter", "bvisor package", "prefix", "import path", "PYTHON*/LD_* env")


def _another_install(theirs: object, mine: list[object]) -> str:
    """What a refused client is told: which part of its identity is not the service's."""
    if not isinstance(theirs, list) or len(theirs) != len(mine):
        return "the caller names no bvisor install this service can compare"
    differ = [name for name, a, b in zip(_IDENTITY_PARTS, theirs, mine, strict=True) if a != b]
    return f"the caller is another bvisor (its {', '.join(differ)} differ from the service's)"


class _Stale(_Refused):
    pass


@dataclass(frozen=True)
class _Request:
    argv: list[str]
    env: dict[str, str]
    umask: int
    cwd: int
    fds: dict[int, int]  # client number -> fd received here
    encoding: str


def _parse(request: dict[str, object], fds: list[int]) -> _Request:
    if request.get("v") != wire.VERSION:
        raise _Refused(f"request version {request.get('v')!r} is not {wire.VERSION}")
    argv, env, umask, numbers = request["argv"], request["env"], request["umask"], request["fds"]
    if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv) or not argv:
        raise _Refused("argv must be a list of strings")
    if argv[0] != "run":
        raise _Refused("the service runs only `bvisor run`")
    if not isinstance(env, list) or not all(
        isinstance(p, list) and len(p) == 2 and all(isinstance(x, str) for x in p) for p in env
    ):
        raise _Refused("env must be a list of [name, value]")
    if not isinstance(umask, int) or not 0 <= umask <= 0o777:
        raise _Refused("umask must be a mode")
    if not isinstance(numbers, list) or not all(
        isinstance(n, int) and not isinstance(n, bool) and 0 <= n < 1 << 20 for n in numbers
    ):
        raise _Refused("fds must be fd numbers")
    if len(set(numbers)) != len(numbers) or len(fds) != len(numbers) + 1:
        raise _Refused(f"{len(numbers)} fd numbers for {len(fds) - 1} passed fds")
    if not {0, 1, 2} <= set(numbers):
        raise _Refused("stdin, stdout and stderr must be passed")
    encoding = request.get("encoding")
    if (
        not isinstance(encoding, list)
        or len(encoding) != 2
        or encoding[0] != sys.getfilesystemencoding()
        or not isinstance(encoding[1], str)
    ):
        raise _Refused("the caller's filesystem encoding differs from the service's")
    return _Request(
        argv=list(argv),
        env=dict((str(k), str(v)) for k, v in env),
        umask=umask,
        cwd=fds[0],
        fds=dict(zip(numbers, fds[1:], strict=True)),
        encoding=encoding[1],
    )


def _become(command: _Request, listener: socket.socket, conn: socket.socket, tell: int) -> None:
    """In the fork: become ``bvisor <argv>`` as the caller would have run it, tell the
    client its status, then the service the specs it planned
    (:mod:`bvisor.front.service.learned`). No return.

    The service says the status once it has reaped the copy and read what it planned (so
    a command's next one finds the plan learned). A copy whose service died meanwhile
    says it itself: the client must not be left without the run's status while the run
    goes on writing into the caller's fds."""
    status = 125
    reply = -1
    service = os.getppid()
    try:
        listener.close()
        reply = conn.detach()
        learned.forget_inherited()
        for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGCHLD):
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.fchdir(command.cwd)
        os.umask(command.umask)
        tell, reply = _place(command, (tell, reply))
        os.environ.clear()
        os.environ.update(command.env)
        from bvisor.launcher.host.inherited import set_caller_fds

        set_caller_fds(sorted(command.fds))
        sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False), encoding=command.encoding)
        sys.stdout = io.TextIOWrapper(
            io.FileIO(1, "w", closefd=False), encoding=command.encoding, write_through=True
        )
        sys.stderr = io.TextIOWrapper(
            io.FileIO(2, "w", closefd=False),
            encoding=command.encoding,
            errors="backslashreplace",
            write_through=True,
        )
        sys.argv = ["bvisor", *command.argv]
        from bvisor.front.cli.main import main

        status = main(command.argv)
    except SystemExit as done:
        status = done.code if isinstance(done.code, int) else 1
    except BaseException as exc:  # the copy must never return into the service's loop
        with contextlib.suppress(BaseException):
            os.write(2, f"bvisor: {exc!r}\n".encode("utf-8", "replace"))
        status = 125
    finally:
        with contextlib.suppress(BaseException):
            sys.stdout.flush()
            sys.stderr.flush()
        learned.tell(tell)
        if reply >= 0 and os.getppid() != service:
            # The service is gone (this copy was reparented): it will not say the status.
            with contextlib.suppress(BaseException):
                os.write(reply, wire.encode({"exit": status}))
        os._exit(status)


def _place(command: _Request, own: tuple[int, int]) -> tuple[int, int]:
    """The caller's fds at their numbers; the service's own (resident sockets, the pipe
    to tell it plans on and the client's connection, whose new numbers are returned)
    above them."""
    from bvisor.launcher.host import resident

    floor = max(command.fds, default=2) + 1
    resident.move_fds_above(floor)
    tell, reply = (fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, max(floor, 3)) for fd in own)
    for fd in own:
        os.close(fd)
    staged = {
        number: fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, max(floor, 3))
        for number, fd in command.fds.items()
    }
    keep = resident.own_fds() | {tell, reply}
    for number, fd in staged.items():
        os.dup2(fd, number, inheritable=number <= 2)
    keep |= set(command.fds)
    for fd in open_fds():
        if fd not in keep:
            with contextlib.suppress(OSError):
                os.close(fd)
    return tell, reply


def _finished(command: _Command, by_conn: dict[int, _Command], poller: select.poll) -> None:
    poller.unregister(command.pidfd)
    _, status = os.waitpid(command.pid, 0)
    code = 128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    os.close(command.pidfd)
    with contextlib.suppress(OSError):
        _answer(command.conn, {"exit": code})
    with contextlib.suppress(KeyError, ValueError):
        poller.unregister(command.conn)
    by_conn.pop(command.conn.fileno(), None)
    command.conn.close()


def _client_spoke(command: _Command, poller: select.poll) -> None:
    """The client hung up (it was killed): stop its command as SIGTERM would."""
    try:
        data = command.conn.recv(16, socket.MSG_DONTWAIT)
    except BlockingIOError:
        return
    except OSError:
        data = b""
    if data:
        return  # clients send nothing after the request; ignore it
    poller.unregister(command.conn)
    with contextlib.suppress(OSError):
        os.kill(command.pid, signal.SIGTERM)
    command.kill_at = time.monotonic() + _STOP_GRACE


def _answer(conn: socket.socket, message: dict[str, object]) -> None:
    conn.sendall(wire.encode(message))
