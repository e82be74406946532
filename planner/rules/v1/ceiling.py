"""The Linux ceiling: from probed host facts to what this backend can reach, cell by cell.

A cell is Enforced only where the host fact that makes the kernel enforce it is present
(a Landlock ABI at the floor, a seccomp filter with an errno action, namespaces we may
create, a delegated cgroup with ``cgroup.kill``), Mediated where bvisor can only observe,
and Unsupported otherwise; an Unsupported reason names the missing fact in the form
``missing fact: <HostFacts field>`` so admission can report it. The derivation is a pure
function of :class:`HostFacts`: replay recomputes it from the recorded facts, and
admission refuses a snapshot whose recorded ceiling does not follow from its facts.

Cell keys: requirement kind values, ``kill:<guarantee>`` (Kill's two guarantees need
different mechanisms), ``budget:<dimension>`` and ``evidence:<claim>``. Mechanism strings
are ``linux:<mechanism>:<Enforcement>``.
"""

from __future__ import annotations

from bvisor.contract.budgets import BudgetDimension
from bvisor.contract.controls import KillGuarantee
from bvisor.contract.enforcement import Enforcement
from bvisor.contract.evidence import EvidenceClaim
from bvisor.contract.profile import CeilingCell, HostFacts, ProfileSnapshot
from bvisor.contract.requirements import RequirementKind
from bvisor.planner.errors import PlanRefusal
from bvisor.planner.rules.v1.catalogue import LANDLOCK_ABI_FLOOR

__all__ = [
    "MISSING_FACT_MARK",
    "budget_key",
    "controller_hierarchy",
    "evidence_key",
    "kill_key",
    "linux_ceiling",
    "missing_fact_of",
    "require_cell",
]

E, M, U = Enforcement.ENFORCED, Enforcement.MEDIATED, Enforcement.UNSUPPORTED
MISSING_FACT_MARK = "missing fact: "
_ATTEST = (EvidenceClaim.MECHANISM_ATTESTATION.value,)
_USAGE = (EvidenceClaim.RESOURCE_USAGE.value,)


def kill_key(guarantee: KillGuarantee) -> str:
    return f"{RequirementKind.KILL.value}:{guarantee.value}"


def budget_key(dimension: BudgetDimension) -> str:
    return f"budget:{dimension.value}"


def evidence_key(claim: EvidenceClaim) -> str:
    return f"evidence:{claim.value}"


def missing_fact_of(cell: CeilingCell) -> str | None:
    """The HostFacts field an Unsupported cell's reason names, if any."""
    _, mark, rest = cell.reason.partition(MISSING_FACT_MARK)
    return rest.split()[0].rstrip(".,;)") if mark and rest else None


def require_cell(snapshot: ProfileSnapshot, key: str, requirement: str) -> CeilingCell:
    """The snapshot's cell for ``key``; a profile without it is ``profile-insufficient``."""
    cell = snapshot.cell(key)
    if cell is None:
        raise PlanRefusal(
            "profile-insufficient",
            f"the profile has no ceiling cell {key!r}",
            requirement=requirement,
            missing_fact=key,
        )
    return cell


def _cell(
    key: str, level: Enforcement, mechanism: str, reason: str, evidence: tuple[str, ...] = ()
) -> CeilingCell:
    return CeilingCell(key, level, f"linux:{mechanism}:{level.title}", reason, evidence)


def _absent(key: str, mechanism: str, fact: str, why: str) -> CeilingCell:
    return _cell(key, U, mechanism, f"{why} ({MISSING_FACT_MARK}{fact})")


def seccomp_errno_missing(facts: HostFacts) -> str | None:
    if not facts.seccomp_filter:
        return "seccomp_filter"
    if "errno" not in facts.seccomp_actions:
        return "seccomp_actions"
    return None


def _netns_missing(facts: HostFacts) -> str | None:
    if not facts.userns:
        return "userns"
    if not facts.netns:
        return "netns"
    return seccomp_errno_missing(facts)


def _kill_missing(facts: HostFacts) -> str | None:
    if facts.cgroup_v2_base is None:
        return "cgroup_v2_base"
    if not facts.cgroup_v2_kill:
        return "cgroup_v2_kill"
    return None


def _requirement_cells(facts: HostFacts) -> list[CeilingCell]:
    k = RequirementKind
    cells: list[CeilingCell] = []
    if facts.landlock_abi >= LANDLOCK_ABI_FLOOR:
        cells.append(
            _cell(
                k.FILESYSTEM.value,
                E,
                "landlock",
                f"Landlock ABI {facts.landlock_abi} >= floor {LANDLOCK_ABI_FLOOR}: the kernel "
                "refuses file access outside the admitted roots"
                + (
                    "; the domain also scopes signals and abstract UNIX sockets (ABI >= 6)"
                    if facts.landlock_abi >= 6
                    else ""
                ),
                _ATTEST,
            )
        )
    else:
        cells.append(
            _absent(
                k.FILESYSTEM.value,
                "landlock",
                "landlock_abi",
                f"Landlock ABI {facts.landlock_abi} is below the floor {LANDLOCK_ABI_FLOOR}",
            )
        )
    missing = _netns_missing(facts)
    if missing is None:
        cells.append(
            _cell(
                k.NETWORK_DENY_ALL.value,
                E,
                "netns_userns_seccomp",
                "an empty network namespace (inside a user namespace) has no route out; "
                "a seccomp filter refuses every socket() "
                "(only AF_UNIX stream/seqpacket pairs remain)",
                _ATTEST,
            )
        )
    else:
        cells.append(
            _absent(
                k.NETWORK_DENY_ALL.value,
                "netns_userns_seccomp",
                missing,
                "deny-all networking needs a user namespace, a network namespace and a "
                "seccomp errno filter",
            )
        )
    cells.append(
        _cell(
            k.NETWORK_ALLOW_LIST.value,
            U,
            "network_allow_list",
            "this backend has no per-endpoint network enforcement",
        )
    )
    missing = seccomp_errno_missing(facts)
    if missing is None:
        cells.append(
            _cell(
                k.CHILD_SPAWN_DENY_NEW_TASKS.value,
                E,
                "seccomp_deny_tasks",
                "a seccomp filter returns EPERM for fork, vfork, clone and clone3",
                _ATTEST,
            )
        )
    else:
        cells.append(
            _absent(
                k.CHILD_SPAWN_DENY_NEW_TASKS.value,
                "seccomp_deny_tasks",
                missing,
                "denying new tasks needs a seccomp filter with the errno action",
            )
        )
    cells.append(
        _cell(
            k.CHILD_SPAWN_ALLOW_THREADS.value,
            U,
            "seccomp_clone3_flags",
            "allowing threads but not processes needs clone3's flags, which sit behind a "
            "pointer that classic BPF cannot inspect",
        )
    )
    missing = _kill_missing(facts)
    if missing is None:
        cells.append(
            _cell(
                k.CHILD_SPAWN_ALLOW_DESCENDANTS.value,
                E,
                "cgroup_kill",
                "descendants are born in the run's cgroup v2 leaf (CLONE_INTO_CGROUP) and "
                "cgroup.kill ends all of them",
                _ATTEST,
            )
        )
    else:
        cells.append(
            _absent(
                k.CHILD_SPAWN_ALLOW_DESCENDANTS.value,
                "cgroup_kill",
                missing,
                "containing descendants needs a writable cgroup v2 base with cgroup.kill",
            )
        )
    cells += [
        _cell(
            k.ENVIRONMENT.value,
            E,
            "exec_envp",
            "the workload is executed with an explicit environment; nothing is inherited",
            _ATTEST,
        ),
        _cell(
            k.INHERITED_FDS_NONE.value,
            E,
            "close_range",
            "every descriptor above stdio is closed (close_range) before exec",
            _ATTEST,
        ),
        _cell(
            k.INHERITED_FDS_ONLY.value,
            E,
            "close_range",
            "every descriptor not listed is closed (close_range) before exec",
            _ATTEST,
        ),
        _cell(
            k.LAUNCH_WORKLOAD.value,
            E,
            "fexecve",
            "the executable is opened by the host and executed by descriptor",
            _ATTEST,
        ),
        _cell(
            k.CAPTURE_STREAMS.value,
            E,
            "pipes",
            "stdio are pipes owned by the host",
            (EvidenceClaim.CAPTURED_STREAMS.value,),
        ),
    ]
    for kind in (k.TEMP_ROOT, k.EXPOSE_PATH, k.COMMIT_ARTIFACT, k.DISCARD_ARTIFACT):
        cells.append(_cell(kind.value, U, kind.value, "not implemented by this backend"))
    missing = _kill_missing(facts)
    if missing is None:
        for guarantee in KillGuarantee:
            cells.append(
                _cell(
                    kill_key(guarantee),
                    E,
                    "cgroup_kill",
                    "cgroup.kill SIGKILLs every process in the run's cgroup at once",
                    _ATTEST,
                )
            )
    else:
        cells.append(
            _absent(
                kill_key(KillGuarantee.ATOMIC),
                "cgroup_kill",
                missing,
                "an atomic run-tree kill needs a writable cgroup v2 base with cgroup.kill",
            )
        )
        cells.append(
            _cell(
                kill_key(KillGuarantee.BEST_EFFORT_ALLOWED),
                M,
                "signal_process_group",
                "without cgroup.kill the run tree is signalled process by process; a "
                f"process that escapes the group survives ({MISSING_FACT_MARK}{missing})",
            )
        )
    cells.append(
        _cell(k.LIST_OUTPUTS.value, U, k.LIST_OUTPUTS.value, "not implemented by this backend")
    )
    return cells


def controller_hierarchy(facts: HostFacts, controller: str) -> str | None:
    """Where a leaf can carry ``controller``'s limit: "v2" (delegated), else "v1", else None."""
    if facts.cgroup_v2_base is not None and controller in facts.cgroup_v2_controllers:
        return "v2"
    if facts.v1_base(controller) is not None:
        return "v1"
    return None


def _budget_cells(facts: HostFacts) -> list[CeilingCell]:
    d = BudgetDimension
    cells: list[CeilingCell] = []
    if _kill_missing(facts) is None:
        cells.append(
            _cell(
                budget_key(d.WALL_MICROS),
                E,
                "deadline_cgroup_kill",
                "the host's deadline fires cgroup.kill on the whole run tree",
                _USAGE,
            )
        )
    else:
        cells.append(
            _cell(
                budget_key(d.WALL_MICROS),
                M,
                "host_clock",
                "elapsed time is measured; without cgroup.kill the run tree cannot be "
                f"ended as a whole ({MISSING_FACT_MARK}{_kill_missing(facts)})",
                _USAGE,
            )
        )
    cells.append(
        _cell(
            budget_key(d.CPU_MICROS),
            M,
            "rusage",
            "CPU time is witnessed from the reaped children's rusage, not capped",
            _USAGE,
        )
    )
    for dimension, controller, limit_file in (
        (d.RESIDENT_BYTES, "memory", "memory limit"),  # memory.max / limit_in_bytes
        (d.PROCESS_COUNT, "pids", "pids.max"),
    ):
        where = controller_hierarchy(facts, controller)
        if where is not None:
            cells.append(
                _cell(
                    budget_key(dimension),
                    E,
                    f"cgroup{where[1:]}_{controller}",
                    f"the run's cgroup {where} {controller} leaf carries the {limit_file}",
                    _USAGE,
                )
            )
        else:
            cells.append(
                _cell(
                    budget_key(dimension),
                    M,
                    "rusage",
                    f"witnessed, not capped: no writable {controller} controller "
                    f"({MISSING_FACT_MARK}cgroup_v1_bases)",
                    _USAGE,
                )
            )
    for dimension in (d.HANDLE_COUNT, d.STORAGE_BYTES, d.NETWORK_BYTES):
        cells.append(
            _cell(
                budget_key(dimension),
                M,
                "witness",
                "not capped by this backend; witnessed where the host can observe it",
                _USAGE,
            )
        )
    return cells


_PRODUCIBLE: dict[EvidenceClaim, tuple[str, str]] = {
    EvidenceClaim.TERMINAL_OUTCOME: ("waitid", "the workload's real exit status from waitid"),
    EvidenceClaim.CAPTURED_STREAMS: ("pipes", "stdout/stderr bytes read from host pipes"),
    EvidenceClaim.RESOURCE_USAGE: ("rusage", "rusage of the reaped run tree"),
    EvidenceClaim.MECHANISM_ATTESTATION: (
        "launcher_transcript",
        "the launcher's state-machine transcript",
    ),
}


def _evidence_cells(facts: HostFacts) -> list[CeilingCell]:
    cells: list[CeilingCell] = []
    for claim in EvidenceClaim:
        key = evidence_key(claim)
        if claim in _PRODUCIBLE:
            mechanism, reason = _PRODUCIBLE[claim]
            cells.append(_cell(key, E, mechanism, reason, (claim.value,)))
        elif claim is EvidenceClaim.PROCESS_TREE:
            missing = _kill_missing(facts)
            if missing is None:
                cells.append(
                    _cell(
                        key,
                        E,
                        "cgroup_procs",
                        "membership of the run's cgroup v2 leaf",
                        (claim.value,),
                    )
                )
            else:
                cells.append(
                    _absent(key, "cgroup_procs", missing, "the process tree is read from a cgroup")
                )
        else:
            cells.append(_cell(key, U, claim.value, "this backend cannot produce this evidence"))
    return cells


def linux_ceiling(facts: HostFacts) -> tuple[CeilingCell, ...]:
    """Every Linux ceiling cell for ``facts``: requirements, then budgets, then evidence."""
    return tuple(_requirement_cells(facts) + _budget_cells(facts) + _evidence_cells(facts))
