"""linux.nonewprivs.v1: no exec can grant privileges again (``nonewprivs.c``). Always on."""

from __future__ import annotations

from bvisor.contract import notes
from bvisor.contract.lowering import Phase
from bvisor.contract.mechanisms import NoParams
from bvisor.launcher.process.program import Program

__all__ = ["prepare"]


def prepare(program: Program, phase: Phase, params: NoParams) -> None:
    program.add_op("no_new_privs", program.ffi.NULL, phase, "linux.nonewprivs.v1")
    program.note(phase, notes.NO_NEW_PRIVS_SET)
