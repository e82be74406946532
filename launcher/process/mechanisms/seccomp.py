"""linux.seccomp.apply.v2: the seccomp filter, built here, installed last in the child.

The BPF program is built with libseccomp before clone3 (``basement.seccomp``) and only
handed to ``seccomp(SECCOMP_SET_MODE_FILTER)`` by the child (``seccomp.c``), after every
other policy op. Hook ``skip_seccomp`` builds it but does not install it.
"""

from __future__ import annotations

import errno

from bvisor.contract.lowering import Phase
from bvisor.contract.mechanisms import Seccomp
from bvisor.launcher.basement import seccomp
from bvisor.launcher.process.program import Fault, Program

__all__ = ["prepare"]


def prepare(program: Program, phase: Phase, params: Seccomp) -> None:
    try:
        built = seccomp.build_filter(
            deny_new_tasks=params.deny_new_tasks,
            deny_sockets=params.deny_sockets,
            threads_only=params.threads_only,
            inet_sockets_only=params.inet_sockets_only,
        )
    except seccomp.SeccompError as exc:
        raise Fault("seccomp", exc.errno or errno.EINVAL, str(exc)) from None
    if not program.skipped("skip_seccomp"):
        args = program.new("struct bv_seccomp_args *")
        args.filter = program.new("unsigned char[]", built.bpf)
        args.len = len(built.bpf) // 8
        program.add_op("seccomp", args, phase, "linux.seccomp.apply.v2")
    program.note(
        phase,
        f"seccomp denylist installed deny_new_tasks={int(params.deny_new_tasks)} "
        f"deny_sockets={int(params.deny_sockets)} threads_only={int(params.threads_only)} "
        f"inet_sockets_only={int(params.inet_sockets_only)} "
        f"arch={built.arch} badarch=kill_process instructions={built.instructions} "
        f"denied={','.join(built.denied) or 'none'}",
        policy=True,
    )
