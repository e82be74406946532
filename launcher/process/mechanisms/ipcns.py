"""linux.ipcns.create.v1: an IPC namespace of the workload's own.

SysV shared memory, message queues and semaphores (and POSIX queues) live in the IPC
namespace; neither Landlock nor seccomp sees them, and a workload with the caller's uid
could otherwise read, write and outlive the caller's objects.
"""

from __future__ import annotations

from bvisor.contract import notes
from bvisor.contract.lowering import Phase
from bvisor.contract.mechanisms import NoParams
from bvisor.launcher.process.program import CLONE_NEWIPC, Program

__all__ = ["prepare"]


def prepare(program: Program, phase: Phase, params: NoParams) -> None:
    program.clone_flags |= CLONE_NEWIPC
    program.note(phase, notes.IPCNS_CREATED)
