"""The command's side: hand ``bvisor run`` to the service, or say it must run here.

Imported by every ``bvisor run`` before anything else, and for a served command it is all
that runs, so it is a thin client: standard library only, and of that only what a Python
process has loaded already or C modules that load in microseconds — ``_socket`` and
``_signal`` rather than ``socket`` and ``signal`` (whose Python halves import ``enum``,
``selectors`` and more: milliseconds a command would spend before it even connects),
no ``contextlib``, and the wire through ``json``'s C half (:mod:`.wire`).
"""

from __future__ import annotations

import _signal
import _socket
import os
import struct
import sys

from bvisor.fdtable import open_fds
from bvisor.front.service import paths, wire
from bvisor.front.service.context import context_difference
from bvisor.front.service.install import install_identity

__all__ = ["SERVE_ENV", "ask_service", "run_served", "start_service"]

SERVE_ENV = "BVISOR_SERVE"  # "0": never use or start the service
REQUIRE = "require"  # BVISOR_SERVE=require: a command that cannot be served fails, saying why
_FORWARDED = (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP)
_EXIT_LOST = 125


def run_served(argv: list[str]) -> int | None:
    """Run ``bvisor <argv>`` through the service and return its status; None when the
    command must run in this process (nothing was started).

    ``BVISOR_SERVE=require`` makes a command that cannot be served say why and exit 125
    instead, starting nothing (for tests, and for finding out why a service is not used)."""
    mode = os.environ.get(SERVE_ENV, "")
    if mode == "0":
        return None
    outcome = _try_service(argv)
    if not isinstance(outcome, str):
        return outcome
    if mode == REQUIRE:
        sys.stderr.write(f"bvisor: not served: {outcome}\n")
        return _EXIT_LOST
    return None


def _try_service(argv: list[str]) -> int | str:
    """The served command's status, or why it cannot be served (nothing was started)."""
    if any(_isatty(fd) for fd in (0, 1, 2)):
        return "a terminal is attached"  # its signals and job control belong to this process
    try:
        directory = paths.private_dir(paths.service_dir(), create=False)
    except OSError as exc:
        return f"the service directory cannot be checked ({exc.strerror})"
    if directory is None:
        start_service()
        return "no service is running"
    sock = _unix_socket()
    try:
        try:
            sock.connect(os.path.join(directory, paths.SOCKET_NAME))
        except (FileNotFoundError, ConnectionRefusedError):
            start_service()
            return "no service answers"
        except OSError as exc:
            return f"the service cannot be reached ({exc.strerror})"
        return _hand_over(sock, directory, argv)
    finally:
        sock.close()


def _unix_socket() -> _socket.socket:
    return _socket.socket(_socket.AF_UNIX, _socket.SOCK_SEQPACKET | _socket.SOCK_CLOEXEC)


def _send(sock: _socket.socket, data: bytes, fds: list[int]) -> None:
    """One message with ``fds`` attached (what ``socket.send_fds`` does)."""
    rights = [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, struct.pack(f"{len(fds)}i", *fds))]
    sock.sendmsg([data], rights if fds else [])


def _hand_over(sock: _socket.socket, directory: str, argv: list[str]) -> int | str:
    creds = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, 12)
    pid, uid, _gid = struct.unpack("3i", creds)
    if uid != os.geteuid():
        return f"the service runs as uid {uid}"
    read = paths.read_token(directory)
    if read is None:
        return "the service's token cannot be read"
    token, proof_fd = read
    proof = paths.proof_nonce(pid, proof_fd)
    if proof is None:
        return "the service's process cannot be inspected from here (a sandbox's domain?)"
    difference = context_difference(pid)
    if difference is not None:
        return f"the service's context differs: {difference}"
    unproven = _shown_our_nonce(sock, token, proof)
    if unproven is not None:
        return unproven
    fds = [fd for fd in open_fds() if fd != sock.fileno()]
    if len(fds) + 1 > wire.MAX_FDS:
        return f"too many open fds ({len(fds)})"
    try:
        cwd = os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return "the working directory is gone"  # let the command say so itself
    umask = os.umask(0)
    os.umask(umask)
    request = wire.encode(
        {
            "v": wire.VERSION,
            "argv": argv,
            "env": sorted([k, v] for k, v in os.environ.items()),
            "umask": umask,
            "fds": fds,
            "encoding": [sys.getfilesystemencoding(), _stream_encoding()],
            "install": install_identity(start_directory_first=not sys.flags.safe_path),
        }
    )
    try:
        if len(request) > wire.MAX_MESSAGE:
            return "the command's context is too large to hand over"
        _send(sock, request, [cwd, *fds])
        answer = wire.decode(sock.recv(wire.MAX_MESSAGE))
    except (OSError, wire.WireError) as exc:
        return f"the service did not accept the command ({exc})"  # nothing was started
    finally:
        os.close(cwd)
    done = answer.get("exit")
    if isinstance(done, int) and not isinstance(done, bool):
        return done  # the service died before saying it started the command: its copy ran
    started = answer.get("started")
    if not isinstance(started, int) or isinstance(started, bool) or started <= 0:
        why = answer.get("refused")
        return f"the service refused the command: {why}" if why else "the service refused"
    return _follow(sock, started)


def _shown_our_nonce(sock: _socket.socket, token: bytes, proof: str) -> str | None:
    """The first message: the token, the service's nonce, and a memfd of ours whose name
    carries a nonce the service must read back through ``/proc`` (``server._seen``). A
    process posing as the service from inside a Landlock domain cannot, and is handed
    nothing. None when the service showed it; else why the command is not served."""
    nonce = os.urandom(16).hex()
    try:
        mine = os.memfd_create(paths.PROOF_NAME + nonce, os.MFD_CLOEXEC)
    except OSError as exc:
        return f"no proof of this command can be made ({exc.strerror})"
    try:
        hello = {"v": wire.VERSION, "token": token.hex(), "proof": proof, "hello": mine}
        _send(sock, wire.encode(hello), [])
        answer = wire.decode(sock.recv(wire.MAX_MESSAGE))
    except (OSError, wire.WireError) as exc:
        return f"the service did not answer ({exc})"
    finally:
        os.close(mine)
    if answer.get("seen") == nonce:
        return None
    why = answer.get("refused")
    if why:
        return f"the service refused the command: {why}"
    return "the service could not inspect this command (is it in a sandbox's domain?)"


def _follow(sock: _socket.socket, child: int) -> int:
    """Wait for the copy's status, forwarding our stop signals to it meanwhile.

    The service sends the status once it has reaped the copy; a copy whose service died
    sends it itself. With neither (both killed), the command still does not return while
    its run may be going on and writing into the caller's fds: it waits for the copy to
    be gone."""
    try:
        copy: int | None = os.pidfd_open(child)
    except OSError:
        copy = None  # it has ended already

    def forward(signum: int, _frame: object) -> None:
        try:  # the thin client imports no contextlib
            if copy is not None:
                _signal.pidfd_send_signal(copy, signum)  # never a reused pid
            else:
                os.kill(child, signum)
        except OSError:
            pass  # it has ended already: its status is on the way

    for signum in _FORWARDED:
        _signal.signal(signum, forward)
    while True:
        try:
            data = sock.recv(wire.MAX_MESSAGE)
        except OSError:
            data = b""
        if not data:
            if copy is not None:
                _wait_gone(copy)
            sys.stderr.write("bvisor: the service ended without the command's status\n")
            return _EXIT_LOST
        try:
            status = wire.decode(data).get("exit")
        except wire.WireError:
            continue
        if isinstance(status, int) and not isinstance(status, bool):
            return status


def _wait_gone(pidfd: int) -> None:
    """Until the process behind ``pidfd`` has ended (a pidfd polls readable then)."""
    import select

    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    while not poller.poll():
        pass
    os.close(pidfd)


def start_service() -> None:
    """Start ``bvisor serve`` in the background for the next command (never waits; not
    with ``BVISOR_SERVE=0``, nor with ``require``, which only reports)."""
    if os.environ.get(SERVE_ENV, "") in ("0", REQUIRE):
        return
    import contextlib
    import subprocess

    with contextlib.suppress(OSError):
        subprocess.Popen(
            # -P and "/": nothing on its sys.path is this command's working directory,
            # which the run may let its workload write (see server._forget_start_directory)
            [sys.executable, "-P", "-m", "bvisor.front.cli.main", "serve", "--quiet"],
            cwd="/",
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
        )


def _isatty(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False


def _stream_encoding() -> str:
    stream = getattr(sys, "stdout", None)
    return str(getattr(stream, "encoding", None) or "utf-8")


def ask_service(question: dict[str, object]) -> dict[str, object] | None:
    """Send one control question (``status`` or ``stop``) with the token; None: no answer."""
    try:
        directory = paths.private_dir(paths.service_dir(), create=False)
    except OSError:
        return None
    read = None if directory is None else paths.read_token(directory)
    if directory is None or read is None:
        return None
    token, proof_fd = read
    sock = _unix_socket()
    try:
        sock.settimeout(10)
        sock.connect(os.path.join(directory, paths.SOCKET_NAME))
        creds = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, 12)
        pid = struct.unpack("3i", creds)[0]
        proof = paths.proof_nonce(pid, proof_fd) or ""
        _send(sock, wire.encode({**question, "token": token.hex(), "proof": proof}), [])
        return wire.decode(sock.recv(wire.MAX_MESSAGE))
    except (OSError, wire.WireError):
        return None
    finally:
        sock.close()
