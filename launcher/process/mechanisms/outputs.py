"""linux.outputs.v1: list (and, with a commit, copy) what the workload left in its roots.

Nothing runs in the child for this mechanism. Before clone3 it notes the second the run
starts (a write root's delta is what changed from then on) and the host's identity of
each write root it will list (the FS_ROOT fd of the bind's source); once the workload has
exited, while the PID namespace's init waits for its release, it opens
``/proc/<init>/root`` — the workload's root as the kernel resolves it — and walks the
plan's roots from there by fd (:mod:`bvisor.launcher.process.walk`). The root must be the
run's own: another mount namespace than the launcher's, on a tmpfs; each write root the
very directory the host opened; otherwise nothing is listed and the note says why. The
walk stops at the run's wall deadline (``Program.deadline_ns``), which the host runs as a
timeout.

With no init, or an init killed before the workload ended, the mounts are gone: the note
``outputs_unavailable`` says so and nothing is listed. Hooks: ``skip_outputs`` reports an
empty, complete listing without walking; ``outputs_follow_links`` walks without the fd
checks (both planted lies for the tests).
"""

from __future__ import annotations

import contextlib
import errno
import os
import time

from bvisor.contract import mechanisms as mech
from bvisor.contract import outputs as grammar
from bvisor.contract.lowering import Phase
from bvisor.launcher.process.program import Note, Program
from bvisor.launcher.process.walk import Walk, WalkAborted

__all__ = ["prepare"]

_CLOCK_REALTIME_COARSE = 5  # what the kernel stamps ctime from


def _write_roots(program: Program, params: mech.Outputs) -> dict[str, tuple[int, int]]:
    """Each write root's (st_dev, st_ino) as the host opened it, by destination."""
    rootfs = program.verified.params.get(mech.ROOTFS.id)
    binds = {b.dest: b for b in rootfs.binds()} if isinstance(rootfs, mech.Rootfs) else {}
    expected: dict[str, tuple[int, int]] = {}
    for root in params.roots:
        bind = binds.get(root.path)
        slot = None if bind is None else program.verified.roots.get(bind.source)
        if root.kind == "write" and slot is not None:
            info = os.fstat(slot.slot_index)
            expected[root.path] = (info.st_dev, info.st_ino)
    return expected


def prepare(program: Program, phase: Phase, params: mech.Outputs) -> None:
    since = int(time.clock_gettime(_CLOCK_REALTIME_COARSE))
    expected = _write_roots(program, params)
    staging = program.verified.staging_slot
    roots = ", ".join(f"{root.path} ({root.kind})" for root in params.roots) or "none"
    program.note(
        phase,
        f"outputs: listed once the workload exits: roots {roots}; commit {params.commit or 'none'}",
    )

    def after(init_pid: int | None, note: Note) -> None:
        if init_pid is None:
            note(grammar.format_item(grammar.UNAVAILABLE, reason="init-gone"))
            return
        lie = program.skipped("outputs_follow_links")
        # Read when the walk starts: the host sends it with the gate's opening, after prepare.
        walk = Walk(params, note, since, staging, follow_links=lie, deadline_ns=program.deadline_ns)
        if program.skipped("skip_outputs"):
            walk.summary()  # the lie: a complete listing that found nothing
            return
        try:
            _list(walk, init_pid, expected, lie=lie)
        except WalkAborted as aborted:
            note(grammar.format_item(grammar.UNAVAILABLE, reason=aborted.reason))
        except OSError as exc:
            name = errno.errorcode.get(exc.errno or 0, "EIO").lower()
            note(grammar.format_item(grammar.UNAVAILABLE, reason=f"error-{name}"))

    program.after_workload.append(after)


def _list(walk: Walk, init_pid: int, expected: dict[str, tuple[int, int]], *, lie: bool) -> None:
    theirs = os.stat(f"/proc/{init_pid}/ns/mnt").st_ino
    if not lie and theirs == os.stat("/proc/self/ns/mnt").st_ino:
        raise WalkAborted("not-private")  # the run shares the launcher's mounts
    root_fd = os.open(f"/proc/{init_pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        walk.run(root_fd, expected)
    finally:
        with contextlib.suppress(OSError):
            os.close(root_fd)
