"""linux.netdns.v1: the allow list's resolver socket, from the workload's namespace to the host.

The child makes it (``netdns.c``: a UDP socket bound to ``127.0.0.1:<port>`` in its new
network namespace, after ``linux.netproxy.v1`` brought the loopback up) and sends it over a
socketpair of the launcher's. Once the op is done the launcher receives the fd and checks
it as it checks the proxy's listener — an AF_INET datagram socket bound to exactly
``127.0.0.1:<port>``, living in the *child's* network namespace and not the launcher's
(``SIOCGSKNS``) — then passes it to the host over the same ``NetProxy`` slot, tagged
``D``. A socket that fails a check is never passed: the launch faults. The launcher keeps
no copy.
"""

from __future__ import annotations

import errno
import socket

from bvisor.contract import mechanisms as mech
from bvisor.contract import notes
from bvisor.contract.lowering import Phase
from bvisor.contract.mechanisms import NetDns
from bvisor.launcher.process.mechanisms.netproxy import hand_over, netns_of_child
from bvisor.launcher.process.program import Fault, Program

__all__ = ["prepare"]


def _check_resolver(sock: socket.socket, port: int, child_pid: int) -> int:
    if sock.family != socket.AF_INET or sock.type != socket.SOCK_DGRAM:
        raise Fault(
            "netdns", errno.EPROTO, f"the child sent a {sock.family!r}/{sock.type!r} socket"
        )
    bound = sock.getsockname()
    if bound != ("127.0.0.1", port):
        raise Fault(
            "netdns",
            errno.EPROTO,
            f"the resolver socket is bound to {bound!r}, not 127.0.0.1:{port}",
        )
    return netns_of_child(sock, child_pid)


def prepare(program: Program, phase: Phase, params: NetDns) -> None:
    channel_fd, forward = hand_over(
        program,
        b"D",
        lambda sock, pid: _check_resolver(sock, params.port, pid),
        f"netdns resolver udp 127.0.0.1:{params.port}",
    )
    args = program.new("struct bv_netdns_args *")
    args.channel_fd = channel_fd
    args.port = params.port
    program.add_op("netdns", args, phase, mech.NETDNS.id, on_done=forward)
    program.note(phase, notes.netdns_note(params.port))
