"""The private root's mount table, from a spec alone (rules v2).

What the workload's new root holds, in the order it is built:

* every ``Filesystem`` root at its own path (``read`` -> read-only; ``write`` and
  ``read_write`` -> read-write; both ``nosuid,nodev``), and the system roots ``/usr``,
  ``/lib``, ``/lib64``, ``/bin``, ``/sbin``, ``/etc`` read-only where the host has them
  (a programme needs its loader and libraries; a host symlink such as ``/lib ->
  usr/lib`` becomes the same link inside);
* every ``ExposePath`` source at its destination with its access;
* with ``TempRoot``, a private tmpfs at ``/tmp`` bounded by the storage budget (or
  :data:`TMP_BYTES`) and ``/tmp/home``, the default ``HOME``;
* a minimal ``/dev`` and a fresh ``/proc`` of the run's PID namespace, always.

Mounts are ordered parents first (a destination's ancestors are made before it). The
table is refused (``invalid-policy``) when two entries claim one destination, when a
destination is ``/proc`` or ``/dev`` or lies beneath them, or when ``TempRoot`` or
``ExposePath`` is asked for without a ``Filesystem`` capability (there is no private root
to put them in). The workload starts in its ``cwd`` when a mount contains it, else ``/``.
"""

from __future__ import annotations

import posixpath

from bvisor.contract.budgets import BudgetDimension
from bvisor.contract.capabilities import Filesystem, FsAccess
from bvisor.contract.controls import CaptureStreams, ExposePath, TempRoot
from bvisor.contract.enforcement import MinGuarantee
from bvisor.contract.mechanisms import (
    BindMount,
    DevMount,
    DirMount,
    Mount,
    ProcMount,
    Rootfs,
    TmpfsMount,
)
from bvisor.contract.spec import BoundarySpec
from bvisor.contract.workload import ProcessWorkload
from bvisor.planner.errors import PlanRefusal

__all__ = [
    "DEV_DEVICES",
    "HOME",
    "SHM_BYTES",
    "SYSTEM_READ_ROOTS",
    "TMP_BYTES",
    "check_mounts",
    "mount_table",
    "wants_private_root",
]

SYSTEM_READ_ROOTS = ("/usr", "/lib", "/lib64", "/bin", "/sbin", "/etc")
DEV_DEVICES = ("full", "null", "random", "urandom", "zero")
TMP_BYTES = 512 * 1024 * 1024
SHM_BYTES = 64 * 1024 * 1024
HOME = "/tmp/home"
_RESERVED = ("/dev", "/proc")


def _access(access: FsAccess) -> str:
    return "read" if access is FsAccess.READ else "write"


def wants_private_root(spec: BoundarySpec) -> bool:
    """A spec with a filesystem capability gets a private root."""
    return any(isinstance(c, Filesystem) for c in spec.capabilities)


def _tty(spec: BoundarySpec) -> bool:
    return any(isinstance(c, CaptureStreams) and c.streams.tty for c in spec.controls)


def _tmp_bytes(spec: BoundarySpec) -> int:
    storage = spec.budgets.get(BudgetDimension.STORAGE_BYTES)
    if storage is not None and storage.guarantee is MinGuarantee.ENFORCED:
        return storage.limit
    return TMP_BYTES


def _refuse(detail: str, requirement: str) -> PlanRefusal:
    return PlanRefusal("invalid-policy", detail, requirement=requirement)


def _within(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def _binds(spec: BoundarySpec) -> dict[str, BindMount]:
    binds: dict[str, BindMount] = {}
    for root in SYSTEM_READ_ROOTS:
        binds[root] = BindMount(root, root, "read", False)
    for capability in spec.capabilities:
        if isinstance(capability, Filesystem):
            for root in capability.roots:
                access = _access(capability.access)
                earlier = binds.get(root)
                if earlier is not None and earlier.required and earlier.access != access:
                    access = "write"  # one root granted both ways: the wider grant holds
                binds[root] = BindMount(root, root, access, True)
    for control in spec.controls:
        if isinstance(control, ExposePath):
            earlier = binds.get(control.dest)
            if earlier is not None and earlier.required:
                raise _refuse(
                    f"expose_path {control.dest} is also a filesystem root or exposed twice",
                    "expose_path",
                )
            binds[control.dest] = BindMount(
                control.dest, control.source, _access(control.access), True
            )
    return binds


def mount_table(spec: BoundarySpec) -> Rootfs:
    """The private root for ``spec`` (see the module docstring); PlanRefusal when unsound."""
    temp = any(isinstance(c, TempRoot) for c in spec.controls)
    if not wants_private_root(spec):
        asked = "temp_root" if temp else "expose_path"
        raise _refuse(f"{asked} needs a filesystem capability (a private root)", asked)
    mounts: dict[str, Mount] = dict(_binds(spec))
    if temp:
        if "/tmp" in mounts and isinstance(mounts["/tmp"], BindMount) and mounts["/tmp"].required:
            raise _refuse("temp_root and a filesystem root both claim /tmp", "temp_root")
        mounts["/tmp"] = TmpfsMount("/tmp", _tmp_bytes(spec), 0o1777)
        if HOME not in mounts:
            mounts[HOME] = DirMount(HOME, 0o700)
    for dest in mounts:
        for reserved in _RESERVED:
            if _within(dest, reserved):
                raise _refuse(
                    f"{dest} lies in {reserved}, which the boundary provides", "filesystem"
                )
        if dest == "/":
            raise _refuse(
                "/ is the private root itself; grant the paths it should hold", "filesystem"
            )
    tty = _tty(spec)
    devices = tuple(sorted((*DEV_DEVICES, "tty") if tty else DEV_DEVICES))
    mounts["/dev"] = DevMount("/dev", devices, SHM_BYTES, tty)
    mounts["/proc"] = ProcMount("/proc")
    ordered = tuple(mounts[dest] for dest in sorted(mounts, key=_parents_first))
    return Rootfs(ordered, _cwd(spec, ordered))


def _parents_first(dest: str) -> tuple[str, ...]:
    return tuple(part for part in dest.split("/") if part)


def _cwd(spec: BoundarySpec, mounts: tuple[Mount, ...]) -> str:
    workload = spec.workload
    cwd = workload.cwd if isinstance(workload, ProcessWorkload) else None
    if cwd is not None and any(_within(cwd, m.dest) for m in mounts if not isinstance(m, DevMount)):
        return posixpath.normpath(cwd)
    return "/"


def check_mounts(spec: BoundarySpec) -> None:
    """Admission's check: a spec whose private root could not be built is refused."""
    wants = wants_private_root(spec) or any(
        isinstance(c, (TempRoot, ExposePath)) for c in spec.controls
    )
    if wants:
        mount_table(spec)
