"""The run's outputs under rules v2: what is listed and committed, and what is refused.

``ListOutputs`` lists the temp root (``/tmp`` of the private root, the run's own tmpfs)
and every write root (a ``Filesystem`` write root or a read-write ``ExposePath``, at its
destination in the root); ``CommitArtifact`` lists the temp root and copies its files for
the host to commit; ``DiscardArtifact`` needs nothing scheduled: the temp root is freed
with the run's mount namespace. One primitive, ``linux.outputs.v1``, carries the roots,
the bounds of the walk and the commit's durability.

Refused at admission (``invalid-policy``), because they cannot be held:

* ``ListOutputs`` without a ``Filesystem`` capability: there is no private root whose
  mounts outlive the workload for the launcher to walk;
* ``CommitArtifact`` or ``DiscardArtifact`` without ``TempRoot``: what they commit or
  discard is the temp root's (a write root is the host's directory, written directly).

(``CommitArtifact`` with ``DiscardArtifact`` is no spec at all: the contract refuses it.)
"""

from __future__ import annotations

from bvisor.contract import mechanisms as mech
from bvisor.contract.controls import CommitArtifact, DiscardArtifact, ListOutputs, TempRoot
from bvisor.contract.spec import BoundarySpec
from bvisor.planner.errors import PlanRefusal
from bvisor.planner.rules.v2.rootfs import wants_private_root

__all__ = [
    "MAX_BYTES",
    "MAX_DEPTH",
    "MAX_ENTRIES",
    "MAX_FILES",
    "MAX_PATH_BYTES",
    "TEMP_ROOT",
    "check_outputs",
    "outputs_params",
]

MAX_FILES = 1024  # items reported: files listed and entries skipped
MAX_BYTES = 1 << 30  # bytes hashed, all files together
MAX_DEPTH = 32  # directory levels below a root
MAX_ENTRIES = 65536  # directory entries looked at, reported or not
MAX_PATH_BYTES = 256 * 1024  # escaped path text reported, all items together
TEMP_ROOT = "/tmp"  # where rules v2 mount the temp root (rootfs.mount_table)


def _has(spec: BoundarySpec, cls: type) -> bool:
    return any(isinstance(control, cls) for control in spec.controls)


def _refuse(detail: str, requirement: str) -> PlanRefusal:
    return PlanRefusal("invalid-policy", detail, requirement=requirement)


def check_outputs(spec: BoundarySpec) -> None:
    """Admission's check: refuse what the outputs controls cannot hold (module docstring)."""
    commit, discard = _has(spec, CommitArtifact), _has(spec, DiscardArtifact)
    if _has(spec, ListOutputs) and not wants_private_root(spec):
        raise _refuse(
            "list_outputs needs a filesystem capability (a private root whose mounts the "
            "launcher walks after the workload exits)",
            "list_outputs",
        )
    for asked, name in ((commit, "commit_artifact"), (discard, "discard_artifact")):
        if asked and not _has(spec, TempRoot):
            raise _refuse(
                f"{name} needs temp_root: what it acts on is the temp root's files (a write "
                "root is the host's own directory, written by the workload directly)",
                name,
            )


def outputs_params(spec: BoundarySpec, rootfs: mech.Rootfs) -> mech.Outputs | None:
    """The ``linux.outputs.v1`` parameters for an admitted spec, or None when not asked."""
    listing, commit = _has(spec, ListOutputs), _has(spec, CommitArtifact)
    if not listing and not commit:
        return None
    roots: list[mech.OutputRoot] = []
    if any(isinstance(m, mech.TmpfsMount) and m.dest == TEMP_ROOT for m in rootfs.mounts):
        roots.append(mech.OutputRoot(TEMP_ROOT, "temp"))
    if listing:
        roots += [
            mech.OutputRoot(bind.dest, "write")
            for bind in rootfs.binds()
            if bind.access == "write" and bind.required
        ]
    durability = next((c.durability for c in spec.controls if isinstance(c, CommitArtifact)), None)
    return mech.Outputs(
        tuple(roots),
        MAX_FILES,
        MAX_BYTES,
        MAX_DEPTH,
        MAX_ENTRIES,
        MAX_PATH_BYTES,
        None if durability is None else durability.value,
    )
