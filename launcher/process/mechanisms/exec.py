"""linux.exec.v1: execute the fd the host opened with the planned argv (``exec.c``).

The exe fd is the host's: it was opened once, by path, before anything ran, and the
kernel executes that very file (a later rename or symlink swap changes nothing). With a
private root, the child executes the same inode through its path inside the root when it
is visible there (checked against the fd), so /proc/self/exe makes sense to the workload.
"""

from __future__ import annotations

from bvisor.contract import mechanisms as mech
from bvisor.contract.lowering import Phase
from bvisor.contract.mechanisms import Exec
from bvisor.launcher.process.program import Program

__all__ = ["prepare"]


def prepare(program: Program, phase: Phase, params: Exec) -> None:
    args = program.new("struct bv_exec_args *")
    args.exe_fd = program.verified.exe_slot
    inside = mech.ROOTFS.id in program.verified.params and not program.skipped("skip_rootfs")
    args.inside_path = program.cstr(params.exe) if inside else program.ffi.NULL
    args.argv = program.cstrings(list(params.argv))
    program.internal_fds.append(program.verified.exe_slot)

    def environment(done: Program) -> None:
        args.envp = done.cstrings(done.envp or [])

    program.when_complete(environment)
    program.add_op("exec", args, phase, "linux.exec.v1")
