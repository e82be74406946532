"""linux.cgroup.leaf.v1, launcher side: the child is born in the run's leaf.

The host made the leaf (and applied its limits) and passed its directory fds. The v2 leaf
is given to clone3 (CLONE_INTO_CGROUP: the child is never outside it). The child joins
each v1 leaf itself, first thing, by writing "0" to the ``tasks`` file opened here: the
kernel moves the calling thread without its global threadgroup lock, whose write side
waits for an RCU grace period — the 5-14 ms a run spent while the launcher wrote the
child's pid to ``cgroup.procs``. The launcher then confirms the child in each leaf's
``cgroup.procs`` before the rendezvous lets it run anything (``window.c``).

Without a private root the workload would still see the host's cgroup filesystems, where
a uid-0 workload owns its leaf's files: then the child, in a mount namespace of its own,
covers them with an empty read-only tmpfs (``cgroup.c``).

Hooks: ``skip_cgroup_placement`` leaves the child where the launcher is (no join, no
confirmation), ``skip_cgroupfs_hide`` leaves the cgroup filesystems visible.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable

from bvisor.contract import mechanisms as mech
from bvisor.contract import notes
from bvisor.contract.lowering import Phase
from bvisor.contract.mechanisms import CgroupLeaf
from bvisor.launcher.basement import mounts
from bvisor.launcher.process.program import CLONE_INTO_CGROUP, CLONE_NEWNS, Fault, Program

__all__ = ["prepare"]


def prepare(program: Program, phase: Phase, params: CgroupLeaf) -> None:
    verified = program.verified
    skip = program.skipped("skip_cgroup_placement")
    if verified.cgroup_v2_slot is not None:
        if not skip:
            program.clone_flags |= CLONE_INTO_CGROUP
            program.cgroup_fd = verified.cgroup_v2_slot
        program.note(phase, notes.cgroup_placed_note("v2", verified.cgroup_v2_slot))
    for controller, slot in sorted(verified.cgroup_v1_slots.items()):
        if not skip:
            _join(program, slot)
        program.note(phase, notes.cgroup_placed_note("v1", slot, controller))
    if mech.ROOTFS.id not in verified.params:
        _hide(program, phase)


def _hide(program: Program, phase: Phase) -> None:
    paths = mounts.cgroup_mount_cover()
    if not program.skipped("skip_cgroupfs_hide"):
        program.clone_flags |= CLONE_NEWNS
        args = program.new("struct bv_hide_args *")
        args.paths = program.cstrings(paths)
        args.n_paths = len(paths)
        program.add_op("cgroupfs_hide", args, phase, mech.CGROUP_LEAF.id)
    program.note(phase, notes.cgroupfs_hidden_note(paths))


def _join(program: Program, slot: int) -> None:
    """Have the child join the v1 leaf ``slot``, and confirm it did before it runs."""
    try:
        tasks = os.open("tasks", os.O_WRONLY | os.O_CLOEXEC, dir_fd=slot)
    except OSError as exc:
        raise Fault(
            "cgroup", exc.errno or errno.EIO, f"v1 slot {slot} tasks: {exc.strerror}"
        ) from None
    program.cgroup_join_fds.append(tasks)
    program.close_after_spawn.append(tasks)
    program.after_join.append(_confirmer(slot))


def _confirmer(slot: int) -> Callable[[int], None]:
    def confirm(pid: int) -> None:
        try:
            fd = os.open("cgroup.procs", os.O_RDONLY | os.O_CLOEXEC, dir_fd=slot)
            try:
                listed = os.read(fd, 1 << 16).split()
            finally:
                os.close(fd)
        except OSError as exc:
            raise Fault(
                "cgroup", exc.errno or errno.EIO, f"v1 slot {slot} cgroup.procs: {exc.strerror}"
            ) from None
        if str(pid).encode("ascii") not in listed:
            raise Fault("cgroup", errno.ESRCH, f"the child {pid} is not in v1 slot {slot}")

    return confirm
