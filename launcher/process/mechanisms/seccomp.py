"""linux.seccomp.apply.v2: the seccomp filter, built here, installed last in the child.

The BPF program is built with libseccomp before clone3 (``basement.seccomp``) and only
handed to ``seccomp(SECCOMP_SET_MODE_FILTER)`` by the child (``seccomp.c``), after every
other policy op. Hook ``skip_seccomp`` builds it but does not install it.

Before it, the launcher sets RLIMIT_CORE to 1 (:func:`_no_core_helper`), which the filter
keeps the workload from changing.

With ``notify_denials`` the filter's denials notify a listener instead of answering, and
the child hands the listener back over a socket pair made here (the child's end is one
of the window's internal fds, closed at exec). The launcher's
:class:`~bvisor.launcher.process.denials.DenialSupervisor` takes it after exec and answers
every notification. Hook ``skip_denial_notify`` builds the filter with plain EPERM
answers and no listener while the notes still say the denials are notified: the planted
lie that the denial-evidence oracles must catch.
"""

from __future__ import annotations

import errno
import resource
import socket

from bvisor.contract import notes
from bvisor.contract.lowering import Phase
from bvisor.contract.mechanisms import Seccomp
from bvisor.launcher.basement import seccomp
from bvisor.launcher.process.denials import DenialSupervisor
from bvisor.launcher.process.program import Fault, Program

__all__ = ["prepare"]


def prepare(program: Program, phase: Phase, params: Seccomp) -> None:
    _no_core_helper(program, phase)
    notify = params.notify_denials and not program.skipped("skip_denial_notify")
    try:
        built = seccomp.build_filter(
            deny_new_tasks=params.deny_new_tasks,
            deny_sockets=params.deny_sockets,
            threads_only=params.threads_only,
            notify_denials=notify,
            inet_sockets_only=params.inet_sockets_only,
        )
    except seccomp.SeccompError as exc:
        raise Fault("seccomp", exc.errno or errno.EINVAL, str(exc)) from None
    installed = not program.skipped("skip_seccomp")
    if installed:
        args = program.new("struct bv_seccomp_args *")
        args.filter = program.new("unsigned char[]", built.bpf)
        args.len = len(built.bpf) // 8
        args.notify_fd = -1
        if notify:
            ours, theirs = socket.socketpair(
                socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC
            )
            args.notify_fd = theirs.detach()
            program.internal_fds.append(args.notify_fd)
            program.close_after_spawn.append(args.notify_fd)
            program.denials = DenialSupervisor(ours, built.notified, built.arch)
        program.add_op("seccomp", args, phase, "linux.seccomp.apply.v2")
    flags = (
        ("deny_new_tasks", params.deny_new_tasks),
        ("deny_sockets", params.deny_sockets),
        ("threads_only", params.threads_only),
        ("notify_denials", params.notify_denials),
        ("inet_sockets_only", params.inet_sockets_only),
    )
    program.note(
        phase, notes.seccomp_note(flags, built.arch, built.instructions, built.denied), policy=True
    )


def _no_core_helper(program: Program, phase: Phase) -> None:
    """RLIMIT_CORE 1, soft and hard, for this launcher and so for the child it clones: the
    one value at which a crash starts no ``core_pattern`` pipe helper (which the kernel
    runs as root in the host's namespaces, fed the workload's memory and a name it
    chose), and one byte is less than any core file. The filter keeps the workload from
    changing it; a hard limit is only ever lowered here."""
    try:
        resource.setrlimit(resource.RLIMIT_CORE, (1, 1))
    except (OSError, ValueError) as exc:
        raise Fault("seccomp", errno.EPERM, f"set RLIMIT_CORE to 1: {exc}") from None
    program.note(phase, notes.CORE_LIMIT_SET)
