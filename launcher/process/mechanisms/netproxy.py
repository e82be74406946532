"""linux.netproxy.v1: the allow list's listener, from the workload's namespace to the host.

The child makes it (``netproxy.c``: loopback up, a TCP socket listening on
``127.0.0.1:<port>`` in its new network namespace) and sends it over a socketpair of the
launcher's. Once the child reports that op done, the launcher receives the fd, checks it
is what the plan says — an AF_INET stream socket, listening, bound to exactly
``127.0.0.1:<port>``, and living in the *child's* network namespace (``SIOCGSKNS`` gives
the socket's namespace: its inode must be the child's ``/proc/<pid>/ns/net`` and not the
launcher's own) — and passes it on over the host's channel (the ``NetProxy`` slot, one
end of a socketpair the host holds). A fd that fails a check is never passed: the launch
faults; so does one whose namespace the launcher may not even inspect (``SIOCGSKNS``
needs CAP_NET_ADMIN over it: EPERM for a namespace its user namespace does not own).
The launcher keeps no copy.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
from collections.abc import Callable

from bvisor.contract import mechanisms as mech
from bvisor.contract import notes
from bvisor.contract.lowering import Phase
from bvisor.contract.mechanisms import NetProxy
from bvisor.launcher.process.program import Fault, Program

__all__ = ["BACKLOG", "SIOCGSKNS", "hand_over", "host_slot_of", "netns_of_child", "prepare"]

BACKLOG = 128
SIOCGSKNS = 0x894C  # the socket's network namespace, as a new fd
_NAME = "netproxy"


def _fault(detail: str, err: int = errno.EPROTO) -> Fault:
    return Fault(_NAME, err, detail)


def _netns_inode(fd: int) -> int:
    ns = fcntl.ioctl(fd, SIOCGSKNS)
    try:
        return os.fstat(ns).st_ino
    finally:
        os.close(ns)


def netns_of_child(sock: socket.socket, child_pid: int) -> int:
    """The inode of ``sock``'s network namespace, once it is the child's and not ours."""
    try:
        inode = _netns_inode(sock.fileno())
        child = os.stat(f"/proc/{child_pid}/ns/net").st_ino
        own = os.stat("/proc/self/ns/net").st_ino
    except OSError as exc:
        raise _fault(f"cannot tell the socket's namespace: {exc}", exc.errno or errno.EIO) from None
    if inode != child or inode == own:
        raise _fault(
            f"the socket lives in net:[{inode}], not in the child's own network "
            f"namespace net:[{child}] (the launcher's is net:[{own}])"
        )
    return inode


def _check_listener(listener: socket.socket, port: int, child_pid: int) -> int:
    """The listener's namespace inode, once every check of the module docstring held."""
    if listener.family != socket.AF_INET or listener.type != socket.SOCK_STREAM:
        raise _fault(f"the child sent a {listener.family!r}/{listener.type!r} socket")
    if not listener.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        raise _fault("the child's socket is not listening")
    bound = listener.getsockname()
    if bound != ("127.0.0.1", port):
        raise _fault(f"the child's listener is bound to {bound!r}, not 127.0.0.1:{port}")
    return netns_of_child(listener, child_pid)


Check = Callable[[socket.socket, int], int]


def hand_over(
    program: Program, tag: bytes, check: Check, shown: str
) -> tuple[int, Callable[[int], list[str]]]:
    """A socketpair for the child's op (its end is returned, closed after the spawn) and
    the op's ``on_done``: once the op is done, it receives the one socket the child sent,
    checks it (``check(sock, child_pid)`` gives its namespace inode or faults), passes it
    to the host over the ``NetProxy`` slot with ``tag`` and notes ``shown`` with the
    namespace. The launcher keeps no copy."""
    host_slot = host_slot_of(program)
    child_end, launcher_end = socket.socketpair(
        socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC
    )
    program.keepalive.append(launcher_end)
    program.close_after_spawn.append(child_end.detach())
    what = tag.decode()

    def forward(child_pid: int) -> list[str]:
        with launcher_end:
            try:
                data, fds, _, _ = socket.recv_fds(launcher_end, 16, 2)
            except OSError as exc:
                raise _fault(f"receive socket {what}: {exc}", exc.errno or errno.EIO) from None
            received = [socket.socket(fileno=fd) for fd in fds]
            try:
                if data != b"L" or len(received) != 1:
                    raise _fault(f"the child sent {data!r} with {len(fds)} fds, not one socket")
                inode = check(received[0], child_pid)
                channel = socket.socket(fileno=host_slot)
                try:
                    socket.send_fds(channel, [tag], [received[0].fileno()])
                except OSError as exc:
                    raise _fault(
                        f"pass socket {what} to the host: {exc}", exc.errno or errno.EIO
                    ) from None
                finally:
                    channel.detach()  # the slot stays the verified table's
            finally:
                for sock in received:
                    sock.close()
        return [
            f"{shown} made in the workload's network namespace net:[{inode}] "
            "(checked with SIOCGSKNS), passed to the host"
        ]

    return program.close_after_spawn[-1], forward


def host_slot_of(program: Program) -> int:
    host_slot = program.verified.netproxy_slot
    if host_slot is None:  # verify_body requires the slot with the entry
        raise _fault("no NetProxy slot for the host's channel", errno.EBADF)
    return host_slot


def prepare(program: Program, phase: Phase, params: NetProxy) -> None:
    channel_fd, forward = hand_over(
        program,
        b"L",
        lambda sock, pid: _check_listener(sock, params.port, pid),
        f"netproxy listener tcp 127.0.0.1:{params.port}",
    )
    args = program.new("struct bv_netproxy_args *")
    args.channel_fd = channel_fd
    args.port = params.port
    args.backlog = BACKLOG
    program.add_op("netproxy", args, phase, mech.NETPROXY.id, on_done=forward)
    program.note(phase, notes.netproxy_note(params.port, len(params.allow)))
