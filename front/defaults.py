"""The default spec ``bvisor run -- CMD`` uses when no ``--spec`` is given.

It confines as much as a typical command allows, and every part is something this kernel
must enforce (the planner refuses rather than weakening it):

* no network: an empty network namespace inside a user namespace, plus seccomp refusing
  every socket(), connect() and addressed sendto() (only unnamed AF_UNIX stream and
  seqpacket pairs remain, so no host daemon socket is reachable);
* the current directory readable and writable, the system (``/usr``, ``/lib*``, ``/bin``,
  ``/sbin``, ``/etc``) read-only, everything else invisible (Landlock), and every mount
  read-only but the current directory (metadata calls Landlock does not see);
* descendants allowed, but born in the run cgroup and killed at the end (``cgroup.kill``);
* a minimal environment (``PATH``, ``LANG``, ``HOME`` = the current directory), no inherited
  fds beyond stdio, stdout and stderr captured.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from bvisor.contract import (
    BoundarySpec,
    BudgetRequirements,
    CaptureStreams,
    ChildSpawn,
    EnvEntry,
    Environment,
    EnvLiteral,
    EnvPolicy,
    EvidenceRequirements,
    FdsNone,
    Filesystem,
    FsAccess,
    InheritedFds,
    Kill,
    KillGuarantee,
    KillTarget,
    LaunchWorkload,
    Network,
    NetworkDenyAll,
    ProcessWorkload,
    SpawnPolicy,
    StdStreams,
)

__all__ = ["DEFAULT_PATH", "default_spec", "process_workload"]

DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"


def process_workload(command: Sequence[str]) -> ProcessWorkload:
    """A workload for ``command``, resolving a bare program name on the default PATH."""
    from shutil import which

    program = command[0]
    exe = program if os.path.isabs(program) else which(program, path=DEFAULT_PATH)
    if exe is None:
        raise ValueError(f"command {program!r} not found on {DEFAULT_PATH}")
    return ProcessWorkload(exe=os.path.abspath(exe), args=tuple(command[1:]))


def default_spec(command: Sequence[str], cwd: str | None = None) -> BoundarySpec:
    """The documented default boundary around ``command``, run from ``cwd``."""
    workdir = os.path.abspath(cwd or os.getcwd())
    return BoundarySpec(
        workload=process_workload(command),
        capabilities=(
            Filesystem(access=FsAccess.READ_WRITE, roots=(workdir,), recursive=True),
            Network(policy=NetworkDenyAll()),
            ChildSpawn(policy=SpawnPolicy.ALLOW_DESCENDANTS_WITHIN_BOUNDARY),
            Environment(
                policy=EnvPolicy.exact(
                    (
                        EnvEntry(name="HOME", value=EnvLiteral(workdir)),
                        EnvEntry(name="LANG", value=EnvLiteral("C.UTF-8")),
                        EnvEntry(name="PATH", value=EnvLiteral(DEFAULT_PATH)),
                    )
                )
            ),
            InheritedFds(policy=FdsNone()),
        ),
        controls=(
            LaunchWorkload(),
            CaptureStreams(streams=StdStreams(stdout=True, stderr=True, stdin=False)),
            Kill(target=KillTarget.RUN_TREE, guarantee=KillGuarantee.ATOMIC),
        ),
        budgets=BudgetRequirements.none(),
        evidence=EvidenceRequirements(),
    )
