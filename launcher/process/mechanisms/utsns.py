"""linux.utsns.v1: a UTS namespace of the workload's own, holding the plan's names.

Without one the workload reads the host's hostname and NIS domain name (``uname``,
``/proc/sys/kernel/hostname``), which name the machine and often its owner or site, and a
workload with CAP_SYS_ADMIN over the host's UTS namespace (a root launcher's child before
its capabilities are dropped) could rename the host. clone3 gets CLONE_NEWUTS; the child
sets the plan's hostname and domain name there first among its ops and reads them back
(``utsns.c``), refusing if it is still in the launcher's namespace. Once the child says
the op is done the launcher checks from outside that ``/proc/<child>/ns/uts`` is not its
own, and faults otherwise. Hook ``skip_utsns`` leaves the namespace and the names out
while the run still reports them (its DANGER note says so).
"""

from __future__ import annotations

import errno
import os
import select

from bvisor.contract import mechanisms as mech
from bvisor.contract import notes
from bvisor.contract.lowering import Phase
from bvisor.contract.mechanisms import UtsNamespace
from bvisor.launcher.process.program import CLONE_NEWUTS, Fault, Program

__all__ = ["prepare"]


def _own_namespace(pid: int | str) -> int | None:
    """The inode of ``pid``'s UTS namespace; None when ``pid`` (the child) has exited or is
    exiting: a fast workload without a PID namespace's init may end before the launcher
    reads the op's marker, and a window whose next op failed is on its way out (its 'E'
    record, read next, says why). Neither has namespace links any more."""
    try:
        return os.stat(f"/proc/{pid}/ns/uts").st_ino
    except OSError as exc:
        if isinstance(pid, int) and _ends(pid):
            return None
        raise Fault("utsns", exc.errno or errno.EIO, f"stat /proc/{pid}/ns/uts: {exc}") from None


_EXIT_GRACE_S = 1.0


def _ends(pid: int) -> bool:
    """Whether the child ``pid`` has exited, or does within :data:`_EXIT_GRACE_S` (left
    to be reaped where it is reaped).

    A process drops its namespace links early in its exit, before it can be waited for,
    so a child whose links are gone may not be waitable yet: asking once (as the check
    did) took a window that had just failed its next op for a live child without a
    namespace and recorded a utsns fault (ENOENT) in place of the op that failed. Its
    pidfd becomes readable once it has exited; a child still running after the grace
    (a thread group whose leader alone ended) is judged as before."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([fd], [], [], _EXIT_GRACE_S)[0])
    finally:
        os.close(fd)


def prepare(program: Program, phase: Phase, params: UtsNamespace) -> None:
    if not program.skipped("skip_utsns"):
        program.clone_flags |= CLONE_NEWUTS
        launcher = _own_namespace("self")

        def outside(pid: int) -> list[str]:
            seen = _own_namespace(pid)
            if seen is None:  # ran and ended: the op's own check in the window stands
                return [notes.UTSNS_CHILD_GONE]
            if seen == launcher:
                raise Fault("utsns", errno.EPERM, "the child is in the launcher's UTS namespace")
            return []

        args = program.new("struct bv_utsns_args *")
        args.launcher_utsns_ino = launcher
        args.hostname = program.cstr(params.hostname)
        args.domainname = program.cstr(params.domainname)
        program.add_op("utsns", args, phase, mech.UTSNS.id, on_done=outside)
    program.note(phase, notes.utsns_note(params.hostname, params.domainname))
