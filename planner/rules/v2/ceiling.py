"""The Linux ceiling of rules v2: a private root, a PID namespace with its own init.

Changes from v1 (whose cells and helpers this builds on):

* ``filesystem`` needs a private root as well as Landlock: a child must be able to create
  a mount and a PID namespace and mount a fresh ``/proc`` (``pidns``; inside a user
  namespace unless bvisor runs as root). Landlock stays on as a second layer.
* ``temp_root`` and ``expose_path`` are Enforced with the private root (a private tmpfs,
  a bind mount into it).
* The run's outputs, with the private root: ``list_outputs`` is Mediated (an observation:
  after the workload exits, while the namespace's init holds its mounts, the launcher
  walks the temp and write roots by fd, never following a link, and digests every file);
  ``commit_artifact`` and ``discard_artifact`` are Enforced (the temp root's files copied
  by fd and renamed into a host directory after the run; the temp root freed with the
  run's mount namespace). ``evidence:filesystem_delta`` and ``evidence:artifact_lineage``
  are producible there (admission also needs their controls asked for).
* ``child_spawn_allow_threads_within_boundary`` is Enforced with seccomp: ``clone3``
  answers ENOSYS so libc uses ``clone``, whose flags a filter can read, and only thread
  flags pass (the mask Chromium's, Firefox's and sandbox2's filters use).
* ``network_allow_list``, ``budget:network_bytes`` and ``evidence:network_activity`` are
  Enforced with the host's proxy listening inside the workload's empty network namespace
  (:mod:`bvisor.planner.rules.v2.network`).
* The run tree is the PID namespace: killing its init kills every process in it at once,
  so ``child_spawn_allow_descendants``, ``kill:*`` and an Enforced wall budget need no
  cgroup. Where the namespace cannot be made, v1's cgroup.kill cells apply.
* ``evidence:denied_attempts`` is Enforced with seccomp user notifications, and
  ``evidence:denied_attempts:filesystem`` says why a filesystem boundary's refusals are
  not reported (:mod:`bvisor.planner.rules.v2.denials`).

Everything else is v1's. Unsupported reasons name the missing fact as v1's do
(``missing fact: <HostFacts field>``).
"""

from __future__ import annotations

import dataclasses

from bvisor.contract.budgets import BudgetDimension
from bvisor.contract.controls import KillGuarantee
from bvisor.contract.evidence import EvidenceClaim
from bvisor.contract.mechanisms import LANDLOCK_ABI_FLOOR
from bvisor.contract.profile import CeilingCell, HostFacts
from bvisor.contract.requirements import RequirementKind
from bvisor.planner.rules.v1 import ceiling as v1
from bvisor.planner.rules.v1.ceiling import E, M, budget_key, kill_key
from bvisor.planner.rules.v2.denials import DENIED_KEY, denial_cells
from bvisor.planner.rules.v2.network import network_cells

__all__ = ["linux_ceiling", "private_root_missing"]

_ATTEST = (EvidenceClaim.MECHANISM_ATTESTATION.value,)
_USAGE = (EvidenceClaim.RESOURCE_USAGE.value,)


def private_root_missing(facts: HostFacts) -> str | None:
    """The fact a private root lacks here, or None when one can be built."""
    if not facts.pidns:
        return "pidns"
    if not facts.userns and facts.host_uid != 0:
        return "userns"
    return None


def _filesystem(facts: HostFacts) -> CeilingCell:
    key = RequirementKind.FILESYSTEM.value
    if facts.landlock_abi < LANDLOCK_ABI_FLOOR:
        return v1._absent(
            key,
            "private_root_landlock",
            "landlock_abi",
            f"Landlock ABI {facts.landlock_abi} is below the floor {LANDLOCK_ABI_FLOOR}",
        )
    missing = private_root_missing(facts)
    if missing is not None:
        return v1._absent(
            key,
            "private_root_landlock",
            missing,
            "a private root needs a mount and a PID namespace (in a user namespace unless "
            "bvisor runs as root) and a fresh /proc",
        )
    return v1._cell(
        key,
        E,
        "private_root_landlock",
        "the workload's root is an empty tmpfs holding only the granted paths (pivot_root, "
        f"the old root detached); Landlock ABI {facts.landlock_abi} refuses file access "
        "outside the granted roots as a second layer",
        _ATTEST,
    )


def _private_root_cell(facts: HostFacts, key: str, what: str) -> CeilingCell:
    missing = private_root_missing(facts)
    if missing is None:
        return v1._cell(key, E, "private_root", what, _ATTEST)
    return v1._absent(key, "private_root", missing, f"{what} needs a private root")


def _threads_cell(facts: HostFacts) -> CeilingCell:
    key = RequirementKind.CHILD_SPAWN_ALLOW_THREADS.value
    missing = v1.seccomp_errno_missing(facts)
    if missing is not None:
        return v1._absent(
            key,
            "seccomp_thread_clones",
            missing,
            "threads without processes need a seccomp filter with the errno action",
        )
    return v1._cell(
        key,
        E,
        "seccomp_thread_clones",
        "a seccomp filter allows clone only with CLONE_THREAD|CLONE_SIGHAND|CLONE_VM and no "
        "namespace, trace or vfork flag; clone3 answers ENOSYS (libc falls back to clone); "
        "fork, vfork and fork-like clones answer EPERM; any other clone kills the process",
        _ATTEST,
    )


def _pidns_cell(facts: HostFacts, key: str, why: str) -> CeilingCell | None:
    """The PID-namespace version of a cgroup.kill cell, or None to keep v1's."""
    if private_root_missing(facts) is not None:
        return None
    return v1._cell(key, E, "pidns_init", why, _ATTEST)


def _outputs_cells(facts: HostFacts) -> dict[str, CeilingCell]:
    k = RequirementKind
    listing = (
        "after the workload exits, while the run's init holds its mounts, the launcher walks "
        "the temp root and the write roots by fd (openat2 beneath each root, no symlink, "
        "magic link or mount crossed; only regular files read; bounded, truncation "
        "reported) and records each file's size, SHA-256 and BLAKE3"
    )
    commit = (
        "the temp root's files are copied by fd into a staging directory the host opened "
        "(O_EXCL, nothing followed; fsync'd when synced) and renamed into the host's "
        "artifact directory after the run"
    )
    discard = (
        "the temp root is the run's own tmpfs, freed with its mount namespace when the "
        "run's init exits; nothing of it is copied to the host"
    )
    delta = EvidenceClaim.FILESYSTEM_DELTA.value
    lineage = EvidenceClaim.ARTIFACT_LINEAGE.value
    wanted = (
        (k.LIST_OUTPUTS.value, M, "outputs_listing", listing, (delta,)),
        (k.COMMIT_ARTIFACT.value, E, "artifact_commit", commit, (lineage,)),
        (k.DISCARD_ARTIFACT.value, E, "private_tmpfs_discard", discard, ()),
        (f"evidence:{delta}", E, "outputs_listing", listing, (delta,)),
        (f"evidence:{lineage}", E, "artifact_commit", commit, (lineage,)),
    )
    missing = private_root_missing(facts)
    cells: dict[str, CeilingCell] = {}
    for key, level, mechanism, reason, evidence in wanted:
        if missing is None:
            cells[key] = v1._cell(key, level, mechanism, reason, evidence)
        else:
            cells[key] = v1._absent(key, mechanism, missing, "this needs a private root")
    return cells


_TREE = (
    "every process of the run is in its own PID namespace, whose init is killed at the end: "
    "the kernel then kills every process in it at once"
)


def _requirement_cells(facts: HostFacts) -> list[CeilingCell]:
    k = RequirementKind
    replaced: dict[str, CeilingCell | None] = {
        k.FILESYSTEM.value: _filesystem(facts),
        k.TEMP_ROOT.value: _private_root_cell(
            facts, k.TEMP_ROOT.value, "a private tmpfs at /tmp, size-bounded"
        ),
        k.EXPOSE_PATH.value: _private_root_cell(
            facts, k.EXPOSE_PATH.value, "a host path bound at its destination in the private root"
        ),
        k.CHILD_SPAWN_ALLOW_DESCENDANTS.value: _pidns_cell(
            facts, k.CHILD_SPAWN_ALLOW_DESCENDANTS.value, _TREE
        ),
        k.CHILD_SPAWN_ALLOW_THREADS.value: _threads_cell(facts),
    }
    for guarantee in KillGuarantee:
        replaced[kill_key(guarantee)] = _pidns_cell(facts, kill_key(guarantee), _TREE)
    replaced.update(_outputs_cells(facts))
    replaced[k.NETWORK_ALLOW_LIST.value] = network_cells(facts)[k.NETWORK_ALLOW_LIST.value]
    cells: list[CeilingCell] = []
    for cell in v1._requirement_cells(facts):
        better = replaced.get(cell.key)
        cells.append(cell if better is None else better)
    return cells


_DELEGATION = (
    "; to get one, run bvisor in a cgroup delegated to you, e.g. "
    "`systemd-run --user --scope -p Delegate=yes bvisor run ...`"
)


_CGROUP_FACTS = frozenset({"cgroup_v2_base", "cgroup_v2_kill", "cgroup_v1_bases"})


def _with_delegation_hint(facts: HostFacts, cells: list[CeilingCell]) -> list[CeilingCell]:
    """For a normal user, a cell held back only by a missing cgroup says how to get one."""
    if facts.host_uid == 0:
        return cells
    return [
        dataclasses.replace(cell, reason=cell.reason + _DELEGATION)
        if cell.enforcement is not E and v1.missing_fact_of(cell) in _CGROUP_FACTS
        else cell
        for cell in cells
    ]


def _budget_cells(facts: HostFacts) -> list[CeilingCell]:
    wall = budget_key(BudgetDimension.WALL_MICROS)
    network = network_cells(facts)
    cells = []
    for cell in v1._budget_cells(facts):
        if cell.key == wall and private_root_missing(facts) is None:
            cell = v1._cell(
                wall,
                E,
                "deadline_pidns_kill",
                "the host's deadline kills the run's PID namespace (its init) at once",
                _USAGE,
            )
        cells.append(network.get(cell.key, cell))
    return cells


def linux_ceiling(facts: HostFacts) -> tuple[CeilingCell, ...]:
    """Every Linux ceiling cell for ``facts``: requirements, then budgets, then evidence."""
    cells = _requirement_cells(facts) + _budget_cells(facts) + _evidence_cells(facts)
    return tuple(_with_delegation_hint(facts, cells))


def _evidence_cells(facts: HostFacts) -> list[CeilingCell]:
    """v1's evidence cells with v2's: denied attempts (and its filesystem companion), the
    outputs' filesystem delta and artifact lineage, and the network activity."""
    denied, filesystem = denial_cells(facts)
    better = {**_outputs_cells(facts), **network_cells(facts)}
    cells = [
        denied if cell.key == DENIED_KEY else better.get(cell.key, cell)
        for cell in v1._evidence_cells(facts)
    ]
    return [*cells, filesystem]
