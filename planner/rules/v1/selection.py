"""Mechanism selection: an admitted spec -> the catalogue primitives and their parameters.

The admission record says what must hold; this module says which Linux primitives make
it hold, with the exact parameter keys the runner turns into a launch body. It only
*requests* primitives; :func:`bvisor.planner.rules.v1.lowering.compile_schedule` checks
and orders them.

Decisions worth knowing:

* ``linux.nonewprivs.v1``, ``linux.ambient.scrub.v1`` and ``linux.exec.v1`` are always
  scheduled. With no Environment requirement the workload still gets an **empty**
  environment (nothing is inherited, ever); with no InheritedFds requirement only stdio
  (0, 1, 2) survive. Absence of a requirement never loosens these defaults.
* A cgroup leaf is scheduled when something needs it: allowing descendants, an Enforced
  kill, an Enforced wall/process/memory budget, or ProcessTree evidence. Whenever a leaf
  exists, ``linux.cgroup.kill.v1`` tears it down (guarantee ``atomic`` when the v2 base
  has ``cgroup.kill``). ``v1_bases`` lists only the v1 controllers a budget uses.
* A best-effort kill that is only Mediated (no ``cgroup.kill``) adds no primitive: the
  runner's ordinary teardown signals the workload.
* ``argv[0]`` is the executable's base name, as a shell would set it.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping

from bvisor import canonical
from bvisor.contract.admission import AdmissionRecord
from bvisor.contract.budgets import BudgetDimension
from bvisor.contract.capabilities import (
    Environment,
    FdsOnly,
    Filesystem,
    InheritedFds,
)
from bvisor.contract.controls import CaptureStreams
from bvisor.contract.enforcement import Enforcement
from bvisor.contract.environment import EnvLiteral
from bvisor.contract.evidence import EvidenceClaim
from bvisor.contract.profile import HostFacts
from bvisor.contract.requirements import RequirementKind
from bvisor.contract.spec import BoundarySpec
from bvisor.contract.workload import ProcessWorkload
from bvisor.planner.errors import PlanRefusal
from bvisor.planner.rules.v1.catalogue import (
    AMBIENT_SCRUB,
    BUDGET_MEMORY,
    BUDGET_PIDS,
    BUDGET_WALL,
    CAPS_DROP,
    CGROUP_KILL,
    CGROUP_LEAF,
    EXEC,
    LANDLOCK,
    LANDLOCK_ABI_FLOOR,
    LANDLOCK_SCOPE,
    NETNS,
    NO_NEW_PRIVS,
    SECCOMP,
    STREAMS,
    USERNS,
)
from bvisor.planner.rules.v1.ceiling import controller_hierarchy, seccomp_errno_missing

__all__ = [
    "DEVICE_READ",
    "DEVICE_RW",
    "STREAM_CAP_BYTES",
    "SYSTEM_READ_ROOTS",
    "select_primitives",
]

STREAM_CAP_BYTES = 16 * 1024 * 1024
SYSTEM_READ_ROOTS = ("/usr", "/lib", "/lib64", "/bin", "/sbin", "/etc")
DEVICE_RW = ("/dev/null",)
DEVICE_READ = ("/dev/zero", "/dev/urandom")
# Landlock ABI 6 scopes, applied with the filesystem domain wherever the kernel has them:
# without a PID namespace the workload could otherwise signal every process of its uid,
# and reach abstract UNIX sockets made outside its domain. Below ABI 6 the list is empty
# and the profile (h_p) records why; the filesystem requirement does not depend on it.
LANDLOCK_SCOPE_ABI = 6
LANDLOCK_SCOPES = ("abstract_unix_socket", "signal")
_STDIO = (0, 1, 2)

Request = tuple[str, canonical.Value]


def _env_params(spec: BoundarySpec) -> list[canonical.Value]:
    """``[[name, {"literal": v} | {"lease": ref}], ...]`` sorted by name (UTF-8 bytes)."""
    pairs: list[tuple[str, dict[str, canonical.Value]]] = []
    for capability in spec.capabilities:
        if isinstance(capability, Environment):
            for entry in capability.policy.entries:
                value: dict[str, canonical.Value] = (
                    {"literal": entry.value.value}
                    if isinstance(entry.value, EnvLiteral)
                    else {"lease": entry.value.ref}
                )
                pairs.append((entry.name, value))
    pairs.sort(key=lambda pair: pair[0].encode("utf-8"))
    return [[name, value] for name, value in pairs]


def _keep_fds(spec: BoundarySpec) -> list[canonical.Value]:
    fds = set(_STDIO)
    for capability in spec.capabilities:
        if isinstance(capability, InheritedFds) and isinstance(capability.policy, FdsOnly):
            fds.update(capability.policy.fds)
    return list(sorted(fds))


def _landlock_rules(spec: BoundarySpec) -> list[canonical.Value]:
    rules = [
        {"path": root, "access": capability.access.value}
        for capability in spec.capabilities
        if isinstance(capability, Filesystem)
        for root in capability.roots
    ]
    rules.sort(key=lambda r: (r["path"].encode("utf-8"), r["access"]))
    return list(rules)


def _streams(spec: BoundarySpec) -> dict[str, canonical.Value] | None:
    for control in spec.controls:
        if isinstance(control, CaptureStreams):
            s = control.streams
            return {
                "stdout": s.stdout,
                "stderr": s.stderr,
                "stdin": s.stdin,
                "cap_bytes": STREAM_CAP_BYTES,
            }
    return None


def _hierarchy(facts: HostFacts, controller: str, key: str) -> str:
    where = controller_hierarchy(facts, controller)
    if where is None:  # admission let an Enforced budget through without a controller
        raise PlanRefusal(
            "profile-insufficient",
            f"no writable {controller} controller for an Enforced budget",
            requirement=key,
            missing_fact="cgroup_v1_bases",
        )
    return where


def select_primitives(
    spec: BoundarySpec, facts: HostFacts, record: AdmissionRecord
) -> list[Request]:
    """The (primitive id, params) requests for an admitted spec (unordered)."""
    if not isinstance(spec.workload, ProcessWorkload):
        raise PlanRefusal("unsupported", "only process workloads lower", requirement="workload")
    kinds = {d.key for d in record.requirements}
    enforced_kill = any(
        d.key.startswith(f"{RequirementKind.KILL.value}:") and d.verdict is Enforcement.ENFORCED
        for d in record.requirements
    )
    budgets: Mapping[str, int] = {
        b.dimension: b.limit for b in record.budgets if b.granted is Enforcement.ENFORCED
    }
    evidence = {e.claim for e in record.evidence}
    requests: list[Request] = [
        (NO_NEW_PRIVS.id, {}),
        # Always: the workload holds no capability, whoever starts bvisor (PrivilegeDrop).
        (CAPS_DROP.id, {}),
        (AMBIENT_SCRUB.id, {"env": _env_params(spec), "keep_fds": _keep_fds(spec)}),
        (
            EXEC.id,
            {
                "exe": spec.workload.exe,
                "argv": [
                    posixpath.basename(spec.workload.exe) or spec.workload.exe,
                    *spec.workload.args,
                ],
            },
        ),
    ]

    if RequirementKind.NETWORK_DENY_ALL.value in kinds:
        requests.append((USERNS.id, {"uid": facts.host_uid, "gid": facts.host_gid}))
        requests.append((NETNS.id, {}))
    deny_tasks = RequirementKind.CHILD_SPAWN_DENY_NEW_TASKS.value in kinds
    deny_net = RequirementKind.NETWORK_DENY_ALL.value in kinds
    # Whenever the host has seccomp, every workload gets a filter: its baseline rules
    # (no new namespaces, keyrings, io_uring, setuid modes, or reach into other
    # processes' limits) close routes Landlock and the namespaces leave open.
    if deny_tasks or deny_net or seccomp_errno_missing(facts) is None:
        requests.append((SECCOMP.id, {"deny_new_tasks": deny_tasks, "deny_sockets": deny_net}))
    if RequirementKind.FILESYSTEM.value in kinds:
        requests.append(
            (
                LANDLOCK.id,
                {
                    "abi_floor": LANDLOCK_ABI_FLOOR,
                    "rules": _landlock_rules(spec),
                    "system_read_roots": list(SYSTEM_READ_ROOTS),
                    "device_rw": list(DEVICE_RW),
                    "device_read": list(DEVICE_READ),
                    "scope": list(LANDLOCK_SCOPES)
                    if facts.landlock_abi >= LANDLOCK_SCOPE_ABI
                    else [],
                },
            )
        )
    elif facts.landlock_abi >= LANDLOCK_SCOPE_ABI:
        # No filesystem domain was asked for; still scope signals and abstract sockets.
        requests.append((LANDLOCK_SCOPE.id, {"scope": list(LANDLOCK_SCOPES)}))
    streams = _streams(spec)
    if streams is not None and RequirementKind.CAPTURE_STREAMS.value in kinds:
        requests.append((STREAMS.id, streams))

    v1_bases: dict[str, canonical.Value] = {}
    pids = budgets.get(BudgetDimension.PROCESS_COUNT.value)
    if pids is not None:
        where = _hierarchy(facts, "pids", "budget:process_count")
        requests.append((BUDGET_PIDS.id, {"limit": pids, "hierarchy": where}))
        if where == "v1":
            v1_bases["pids"] = facts.v1_base("pids")
    memory = budgets.get(BudgetDimension.RESIDENT_BYTES.value)
    if memory is not None:
        where = _hierarchy(facts, "memory", "budget:resident_bytes")
        requests.append((BUDGET_MEMORY.id, {"limit_bytes": memory, "hierarchy": where}))
        if where == "v1":
            v1_bases["memory"] = facts.v1_base("memory")
    wall = budgets.get(BudgetDimension.WALL_MICROS.value)
    if wall is not None:
        requests.append((BUDGET_WALL.id, {"limit_micros": wall}))

    needs_leaf = (
        RequirementKind.CHILD_SPAWN_ALLOW_DESCENDANTS.value in kinds
        or enforced_kill
        or pids is not None
        or memory is not None
        or wall is not None
        or EvidenceClaim.PROCESS_TREE.value in evidence
    )
    if needs_leaf:
        requests.append((CGROUP_LEAF.id, {"v2_base": facts.cgroup_v2_base, "v1_bases": v1_bases}))
        atomic = facts.cgroup_v2_base is not None and facts.cgroup_v2_kill
        requests.append(
            (CGROUP_KILL.id, {"guarantee": "atomic" if atomic else "best_effort_allowed"})
        )
    return requests
