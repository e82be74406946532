"""linux.caps.drop.v1: the workload holds no capability at all (``caps.c``).

Hook ``skip_caps_drop`` leaves the capabilities as they are.
"""

from __future__ import annotations

from bvisor.contract import notes
from bvisor.contract.lowering import Phase
from bvisor.contract.mechanisms import NoParams
from bvisor.launcher.process.program import Program

__all__ = ["prepare"]


def prepare(program: Program, phase: Phase, params: NoParams) -> None:
    if not program.skipped("skip_caps_drop"):
        program.add_op("caps_drop", program.ffi.NULL, phase, "linux.caps.drop.v1")
    program.note(phase, notes.CAPS_DROPPED)
