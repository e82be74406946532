"""linux.netns.create.v1: an empty network namespace (only a loopback, down): no route out.

Hook ``skip_netns`` leaves it out.
"""

from __future__ import annotations

from bvisor.contract import notes
from bvisor.contract.lowering import Phase
from bvisor.contract.mechanisms import NoParams
from bvisor.launcher.process.program import CLONE_NEWNET, Program

__all__ = ["prepare"]


def prepare(program: Program, phase: Phase, params: NoParams) -> None:
    if not program.skipped("skip_netns"):
        program.clone_flags |= CLONE_NEWNET
    program.note(phase, notes.NETNS_CREATED)
