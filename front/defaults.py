"""The default spec ``bvisor run -- CMD`` uses when no ``--spec`` is given.

It confines as much as a typical command allows, and every part is something this kernel
must enforce (the planner refuses rather than weakening it):

* no network: an empty network namespace inside a user namespace, plus seccomp refusing
  every socket(), connect() and addressed sendto() (only unnamed AF_UNIX stream and
  seqpacket pairs remain, so no host daemon socket is reachable);
* a private root holding only the current directory (read-write), the system (``/usr``,
  ``/lib*``, ``/bin``, ``/sbin``, ``/etc``, read-only), a minimal ``/dev``, a ``/proc`` of
  its own PID namespace and a private ``/tmp`` (with ``HOME`` = ``/tmp/home``); nothing
  else of the host exists for it, and Landlock grants the same paths as a second layer;
* descendants allowed, all in the run's PID namespace and killed at once at the end;
* a minimal environment (``PATH``, ``LANG``, ``HOME``), no inherited fds beyond stdio,
  stdout and stderr captured; the workload starts in the current directory.
"""

from __future__ import annotations

import dataclasses
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
    TempRoot,
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


HOME = "/tmp/home"  # the private root's own HOME (rules v2 make it with the temp root)


def default_spec(command: Sequence[str], cwd: str | None = None) -> BoundarySpec:
    """The documented default boundary around ``command``, run from ``cwd``."""
    workdir = os.path.abspath(cwd or os.getcwd())
    workload = dataclasses.replace(process_workload(command), cwd=workdir)
    return BoundarySpec(
        workload=workload,
        capabilities=(
            Filesystem(access=FsAccess.READ_WRITE, roots=(workdir,), recursive=True),
            Network(policy=NetworkDenyAll()),
            ChildSpawn(policy=SpawnPolicy.ALLOW_DESCENDANTS_WITHIN_BOUNDARY),
            Environment(
                policy=EnvPolicy.exact(
                    (
                        EnvEntry(name="HOME", value=EnvLiteral(HOME)),
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
            TempRoot(),
            Kill(target=KillTarget.RUN_TREE, guarantee=KillGuarantee.ATOMIC),
        ),
        budgets=BudgetRequirements.none(),
        evidence=EvidenceRequirements(),
    )
