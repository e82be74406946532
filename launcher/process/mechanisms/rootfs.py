"""linux.rootfs.v1: the workload's private root (``rootfs.c`` builds it in the child).

Here the mount table becomes the C ``struct bv_mount`` array: each bind names the host
path and the fd the host opened for it (the child clones the path in its own mount
namespace and checks it is that very inode), each device its expected device number
(``DEVICES``). The root tmpfs is attached at a base directory of the old tree (``/tmp``,
else ``/mnt``, else ``/``) before pivot_root detaches that tree. clone3 gets CLONE_NEWNS.
A ``file`` mount (the allow list's resolv.conf) is read back from outside once the root
is built (``/proc/<child>/root``): the plan's bytes, or absent where a mount that is not
required was skipped; anything else faults the launch. Hook ``skip_rootfs`` leaves the
workload on the host's mount tree.
"""

from __future__ import annotations

import errno
import os
import stat

from bvisor.contract import mechanisms as mech
from bvisor.contract import notes
from bvisor.contract.lowering import Phase
from bvisor.launcher.process.program import CLONE_NEWNS, Fault, Program
from bvisor.launcher.wire.protocol import DescriptorKind

__all__ = ["ROOT_BYTES", "prepare"]

ROOT_BYTES = 1 << 20  # the root tmpfs holds mount points and links only
_BASES = ("/tmp", "/mnt", "/")
_KIND = {
    mech.BindMount: 1,
    mech.DevMount: 2,
    mech.ProcMount: 3,
    mech.TmpfsMount: 4,
    mech.DirMount: 5,
    mech.FileMount: 6,
}


def _base() -> str:
    for base in _BASES:
        try:
            if stat.S_ISDIR(os.lstat(base).st_mode):
                return base
        except OSError:
            continue
    return "/"


def _files_seen(child_pid: int, files: list[mech.FileMount]) -> list[str]:
    """What the workload will find at each file mount, read from outside its root
    (``/proc/<child>/root``, the child's own view after pivot_root): the plan's bytes, or
    nothing where a mount that is not required was skipped. Anything else faults."""
    notes: list[str] = []
    for mount in files:
        try:
            with open(f"/proc/{child_pid}/root{mount.dest}", "rb") as seen:
                data = seen.read(len(mount.content.encode()) + 1)
        except FileNotFoundError:
            notes.append(f"file {mount.dest}: absent in the host's tree there, skipped")
            continue
        except OSError as exc:
            raise Fault(
                "rootfs", exc.errno or errno.EIO, f"{mount.dest} cannot be read back: {exc}"
            ) from None
        if data != mount.content.encode():
            raise Fault("rootfs", errno.EPROTO, f"{mount.dest} does not hold the plan's file")
        notes.append(f"file {mount.dest}: placed, its {len(data)} bytes read back from outside")
    return notes


def _absent(program: Program, mount: mech.Mount) -> bool:
    """A bind of a host path this host lacks (the host opened no fd for it): skipped."""
    return isinstance(mount, mech.BindMount) and program.verified.roots.get(mount.source) is None


def prepare(program: Program, phase: Phase, params: mech.Rootfs) -> None:
    if program.skipped("skip_rootfs"):
        program.note(phase, notes.ROOTFS_SKIPPED)
        return
    program.clone_flags |= CLONE_NEWNS
    mounts = program.new(f"struct bv_mount[{max(len(params.mounts), 1)}]")
    for index, mount in enumerate(params.mounts):
        entry = mounts[index]
        entry.kind = _KIND[type(mount)]
        entry.dest = program.cstr(mount.dest)
        entry.source = program.cstr("")
        entry.source_fd = -1
        entry.devices = program.ffi.NULL
        entry.content = program.ffi.NULL
        if isinstance(mount, mech.BindMount):
            slot = program.verified.roots.get(mount.source)
            entry.source = program.cstr(mount.source)
            entry.readonly = int(mount.access == "read")
            if slot is not None:
                entry.source_fd = slot.slot_index
                entry.is_link = int(slot.expected.kind is DescriptorKind.SYMLINK)
        elif isinstance(mount, mech.DevMount):
            names = list(mount.devices)
            entry.devices = program.cstrings(names)
            entry.dev_major = program.new(
                "unsigned int[]", [mech.DEVICES[n][0] for n in names] or [0]
            )
            entry.dev_minor = program.new(
                "unsigned int[]", [mech.DEVICES[n][1] for n in names] or [0]
            )
            entry.n_devices = len(names)
            entry.size = mount.shm_bytes
            entry.pts = int(mount.pts)
        elif isinstance(mount, mech.TmpfsMount):
            entry.size = mount.size_bytes
            entry.mode = mount.mode
        elif isinstance(mount, mech.DirMount):
            entry.mode = mount.mode
        elif isinstance(mount, mech.FileMount):
            entry.content = program.cstr(mount.content)
            entry.required = int(mount.required)
    args = program.new("struct bv_rootfs_args *")
    args.mounts = mounts
    args.n_mounts = len(params.mounts)
    args.base = program.cstr(_base())
    args.cwd = program.cstr(params.cwd)
    args.root_size = ROOT_BYTES
    files = [m for m in params.mounts if isinstance(m, mech.FileMount)]
    program.add_op(
        "rootfs", args, phase, "linux.rootfs.v1", on_done=lambda pid: _files_seen(pid, files)
    )
    shown = [notes.mount_shown(m, present=not _absent(program, m)) for m in params.mounts]
    program.note(phase, notes.private_root_note(shown))
    program.note(phase, notes.pivot_root_note(params.cwd))
