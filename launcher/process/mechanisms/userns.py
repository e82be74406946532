"""linux.userns.create.v1: a user namespace whose uid/gid 0 are the caller's ids.

clone3 gets CLONE_NEWUSER; while the child waits at the rendezvous the launcher writes its
``uid_map``, ``setgroups`` = deny, then ``gid_map`` (the order the kernel requires of an
unprivileged writer). Hook ``skip_userns`` leaves the namespace out.
"""

from __future__ import annotations

from bvisor.contract import notes
from bvisor.contract.lowering import Phase
from bvisor.contract.mechanisms import UserNamespace
from bvisor.launcher.process.procfs import write_proc
from bvisor.launcher.process.program import CLONE_NEWUSER, Program

__all__ = ["prepare"]


def prepare(program: Program, phase: Phase, params: UserNamespace) -> None:
    uid_map, gid_map = notes.id_map(params.uid), notes.id_map(params.gid)
    if not program.skipped("skip_userns"):
        program.clone_flags |= CLONE_NEWUSER

        def maps(pid: int) -> None:
            for name, text in (("uid_map", uid_map), ("setgroups", "deny"), ("gid_map", gid_map)):
                write_proc("userns", pid, name, text)

        program.at_rendezvous("userns", maps)
    program.note(phase, notes.userns_note(params.uid, params.gid))
