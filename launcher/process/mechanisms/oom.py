"""linux.oom.score.v1: the workload is the OOM killer's first choice, not its supervisor.

The launcher writes the child's ``oom_score_adj`` at the rendezvous, before it runs
anything; init and the workload inherit it. Lowering it again needs CAP_SYS_RESOURCE,
which no workload holds, or a write to /proc/self/oom_score_adj, which its Landlock
domain makes read-only.
"""

from __future__ import annotations

from bvisor.contract import notes
from bvisor.contract.lowering import Phase
from bvisor.contract.mechanisms import OomScore
from bvisor.launcher.process.procfs import write_proc
from bvisor.launcher.process.program import Program

__all__ = ["prepare"]


def prepare(program: Program, phase: Phase, params: OomScore) -> None:
    program.at_rendezvous(
        "oom", lambda pid: write_proc("oom", pid, "oom_score_adj", str(params.score))
    )
    program.note(phase, notes.oom_note(params.score))
