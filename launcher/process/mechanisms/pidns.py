"""linux.pidns.init.v1: a PID namespace whose pid 1 is a small C init (``pidns.c``).

clone3 gets CLONE_NEWPID, so the child is pid 1; at the end of the filesystem phase (the
root built, /proc of the new namespace mounted) the init op forks the workload and stays
behind to reap orphans, forward stop signals and report the workload's real status on
its own pipe (the workload's status pipe closes at exec as usual). The launcher holds the
other ends: it reads the report, then releases init, whose exit ends the namespace —
every process left in it dies at once. Hook ``skip_pidns`` leaves the namespace (and its
init) out.
"""

from __future__ import annotations

import os

from bvisor.contract import notes
from bvisor.contract.lowering import Phase
from bvisor.contract.mechanisms import NoParams
from bvisor.launcher.process.program import CLONE_NEWPID, Program

__all__ = ["prepare"]


def prepare(program: Program, phase: Phase, params: NoParams) -> None:
    if program.skipped("skip_pidns"):
        program.note(phase, notes.PIDNS_SKIPPED)
        return
    program.clone_flags |= CLONE_NEWPID
    report_r, report_w = os.pipe2(os.O_CLOEXEC)
    release_r, release_w = os.pipe2(os.O_CLOEXEC)
    program.init_fds = (report_r, release_w)
    program.close_after_spawn += [report_w, release_r]
    args = program.new("struct bv_init_args *")
    args.init_fd = report_w
    args.release_fd = release_r
    program.add_op("init", args, Phase.FS_SETUP, "linux.pidns.init.v1", at_end_of_phase=True)
    program.note(phase, notes.PIDNS_CREATED)
