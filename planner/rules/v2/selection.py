"""Mechanism selection of rules v2: an admitted spec -> primitives with typed parameters.

Always scheduled: ``no_new_privs``, the capability drop, the workload made the OOM killer's
first choice (``oom_score_adj`` 1000, which it cannot lower: /proc is read-only to it), the
ambient scrub (exactly the spec's environment, only its fds, no controlling terminal
unless it asked for a tty) and exec. Whenever the host allows: a user namespace, an IPC
namespace, and a PID namespace whose init is pid 1 and whose death at teardown is the
atomic kill of the run tree. A seccomp filter (its baseline at least) wherever the host
has seccomp, its denials notifying the launcher when the report must carry denied
attempts. With a filesystem capability, the private root (``rootfs``) and a Landlock
domain over the same grants; without one, a scope-only Landlock domain where the kernel
has scopes; and when the outputs are listed or committed, the walk that lists them
(``linux.outputs.v1``, :mod:`bvisor.planner.rules.v2.outputs`).

With a network allow list: the empty network namespace, the proxy's listener in it
(``linux.netproxy.v1``, the entries as its parameters), the proxy variables in the exec's
environment, a seccomp filter allowing only AF_INET/AF_INET6 sockets, a Landlock domain
allowing TCP connects only to the proxy's port where the kernel has network rules (ABI >=
4: ``linux.landlock.net.v1``, a second layer under the empty namespace), and — for an
Enforced ``network_bytes`` budget — the proxy's byte budget (``linux.budget.network.v1``).

A cgroup leaf where a cgroup is a mechanism: process and memory budgets, process-tree
evidence, and descendants, an Enforced kill or a wall budget wherever the host has a
cgroup v2 base with ``cgroup.kill`` (the tree then dies by both, and stays in the caller's
accounting) or no PID namespace (v1's way). The leaf's ``pids.max`` counts the
namespace's init as well, so it is the budget plus one when there is an init.

``argv[0]`` is the spec's ``argv0``, else the executable's path as the spec names it (what
a shell passes for a program run by its path; v1 gave the base name, with which a
program that finds its files through argv[0] — Python and its venvs — looks in the
wrong place).
"""

from __future__ import annotations

from collections.abc import Mapping

from bvisor.contract import mechanisms as mech
from bvisor.contract.admission import AdmissionRecord
from bvisor.contract.budgets import BudgetDimension
from bvisor.contract.capabilities import Environment
from bvisor.contract.controls import CaptureStreams
from bvisor.contract.enforcement import Enforcement
from bvisor.contract.environment import EnvLiteral
from bvisor.contract.evidence import EvidenceClaim
from bvisor.contract.profile import HostFacts
from bvisor.contract.requirements import RequirementKind
from bvisor.contract.spec import BoundarySpec
from bvisor.contract.workload import ProcessWorkload
from bvisor.planner.errors import PlanRefusal
from bvisor.planner.rules.base import Request
from bvisor.planner.rules.v1.ceiling import seccomp_errno_missing
from bvisor.planner.rules.v1.selection import (
    LANDLOCK_SCOPE_ABI,
    LANDLOCK_SCOPES,
    STREAM_CAP_BYTES,
    _hierarchy,
    _keep_fds,
)
from bvisor.planner.rules.v2.ceiling import private_root_missing
from bvisor.planner.rules.v2.network import allow_list_of, netproxy_params, proxy_environment
from bvisor.planner.rules.v2.outputs import outputs_params
from bvisor.planner.rules.v2.rootfs import mount_table

__all__ = ["LANDLOCK_NET_ABI", "OOM_SCORE", "PARAM_KEYS", "USER_LIMITS_SHARE", "select_primitives"]

OOM_SCORE = 1000
# The workload may take half of each per-user kernel object limit (inotify, fanotify) its
# user has: the other half stays for that user's other programs.
USER_LIMITS_SHARE = 50
LANDLOCK_NET_ABI = 4  # Landlock's TCP connect rules
PARAM_KEYS: Mapping[str, frozenset[str]] = {
    primitive.id: frozenset(primitive.params.FIELDS) for primitive in mech.CATALOGUE
}


def _env(spec: BoundarySpec, proxy: bool) -> tuple[mech.EnvSource, ...]:
    """The spec's environment, plus the proxy variables when the allow list's proxy runs
    (admission refused a spec that sets one of them to anything else)."""
    entries: dict[str, mech.EnvSource] = {}
    for capability in spec.capabilities:
        if isinstance(capability, Environment):
            for entry in capability.policy.entries:
                if isinstance(entry.value, EnvLiteral):
                    entries[entry.name] = mech.EnvSource(entry.name, entry.value.value, None)
                else:
                    entries[entry.name] = mech.EnvSource(entry.name, None, entry.value.ref)
    if proxy:
        for name, value in proxy_environment().items():
            entries[name] = mech.EnvSource(name, value, None)
    return tuple(sorted(entries.values(), key=lambda e: e.name.encode("utf-8")))


def _streams(spec: BoundarySpec) -> CaptureStreams | None:
    return next((c for c in spec.controls if isinstance(c, CaptureStreams)), None)


def _landlock(rootfs: mech.Rootfs, facts: HostFacts) -> mech.LandlockApply:
    rules = tuple(mech.PathRule(bind.source, bind.access) for bind in rootfs.binds())
    inside = [mech.PathRule("/", "list")]
    for mount in rootfs.mounts:
        if isinstance(mount, mech.DevMount):
            inside.append(mech.PathRule(mount.dest, "write"))
        elif isinstance(mount, mech.ProcMount):
            inside.append(mech.PathRule(mount.dest, "read"))
        elif isinstance(mount, mech.TmpfsMount):
            inside.append(mech.PathRule(mount.dest, "write"))
    scope = LANDLOCK_SCOPES if facts.landlock_abi >= LANDLOCK_SCOPE_ABI else ()
    return mech.LandlockApply(mech.LANDLOCK_ABI_FLOOR, rules, tuple(inside), tuple(scope))


def select_primitives(
    spec: BoundarySpec, facts: HostFacts, record: AdmissionRecord
) -> list[Request]:
    """The (primitive id, params) requests for an admitted spec (unordered)."""
    workload = spec.workload
    if not isinstance(workload, ProcessWorkload):
        raise PlanRefusal("unsupported", "only process workloads lower", requirement="workload")
    kinds = {d.key for d in record.requirements}
    k = RequirementKind
    enforced_kill = any(
        d.key.startswith(f"{k.KILL.value}:") and d.verdict is Enforcement.ENFORCED
        for d in record.requirements
    )
    budgets: Mapping[str, int] = {
        b.dimension: b.limit for b in record.budgets if b.granted is Enforcement.ENFORCED
    }
    evidence = {e.claim for e in record.evidence}
    streams = _streams(spec)
    tty = streams is not None and streams.streams.tty
    argv0 = workload.argv0 or workload.exe
    allow = allow_list_of(spec) if k.NETWORK_ALLOW_LIST.value in kinds else None
    env = _env(spec, allow is not None)
    typed: list[tuple[mech.Primitive, mech.Params]] = [
        (mech.NO_NEW_PRIVS, mech.NoParams()),
        (mech.CAPS_DROP, mech.NoParams()),
        (mech.OOM_SCORE, mech.OomScore(OOM_SCORE)),
        (
            mech.AMBIENT_SCRUB,
            mech.AmbientScrub(env, tuple(_keep_fds(spec)), tty),  # type: ignore[arg-type]
        ),
        (mech.EXEC, mech.Exec(workload.exe, (argv0, *workload.args))),
    ]
    if facts.userns:
        typed.append((mech.USERNS, mech.UserNamespace(facts.host_uid, facts.host_gid)))
        typed.append((mech.USER_LIMITS, mech.UserLimits(USER_LIMITS_SHARE)))
    if facts.userns or facts.host_uid == 0:
        typed.append((mech.IPCNS, mech.NoParams()))
    private = private_root_missing(facts) is None
    if private:
        typed += [(mech.PIDNS, mech.NoParams()), (mech.PIDNS_KILL, mech.NoParams())]
    deny_net = k.NETWORK_DENY_ALL.value in kinds
    if deny_net or allow is not None:
        typed.append((mech.NETNS, mech.NoParams()))
    if allow is not None:
        proxy = netproxy_params(allow)
        typed.append((mech.NETPROXY, proxy))
        if facts.landlock_abi >= LANDLOCK_NET_ABI:
            typed.append((mech.LANDLOCK_NET, mech.LandlockNet((proxy.port,))))
        network = budgets.get(BudgetDimension.NETWORK_BYTES.value)
        if network is not None:
            typed.append((mech.BUDGET_NETWORK, mech.NetworkBudget(network)))
    deny_tasks = k.CHILD_SPAWN_DENY_NEW_TASKS.value in kinds
    threads = k.CHILD_SPAWN_ALLOW_THREADS.value in kinds
    if deny_tasks or deny_net or threads or seccomp_errno_missing(facts) is None:
        notify = EvidenceClaim.DENIED_ATTEMPTS.value in evidence
        typed.append(
            (
                mech.SECCOMP,
                mech.Seccomp(
                    deny_new_tasks=deny_tasks,
                    deny_sockets=deny_net,
                    threads_only=threads,
                    notify_denials=notify,
                    inet_sockets_only=allow is not None,
                ),
            )
        )
    if k.FILESYSTEM.value in kinds:
        rootfs = mount_table(spec)
        typed += [(mech.ROOTFS, rootfs), (mech.LANDLOCK, _landlock(rootfs, facts))]
        outputs = outputs_params(spec, rootfs)
        if outputs is not None:
            typed.append((mech.OUTPUTS, outputs))
    elif facts.landlock_abi >= LANDLOCK_SCOPE_ABI:
        typed.append((mech.LANDLOCK_SCOPE, mech.LandlockScope(tuple(LANDLOCK_SCOPES))))
    if streams is not None and k.CAPTURE_STREAMS.value in kinds:
        s = streams.streams
        typed.append(
            (mech.STREAMS, mech.StreamCapture(s.stdout, s.stderr, s.stdin, STREAM_CAP_BYTES))
        )
    typed += _cgroup(facts, kinds, budgets, evidence, enforced_kill, private)
    return [(primitive.id, params.to_value()) for primitive, params in typed]


def _cgroup(
    facts: HostFacts,
    kinds: set[str],
    budgets: Mapping[str, int],
    evidence: set[str],
    enforced_kill: bool,
    private: bool,
) -> list[tuple[mech.Primitive, mech.Params]]:
    typed: list[tuple[mech.Primitive, mech.Params]] = []
    v1_bases: dict[str, str] = {}
    pids = budgets.get(BudgetDimension.PROCESS_COUNT.value)
    if pids is not None:
        where = _hierarchy(facts, "pids", "budget:process_count")
        limit = pids + 1 if private else pids  # the namespace's init is a task too
        typed.append((mech.BUDGET_PIDS, mech.PidsLimit(limit, where)))
        if where == "v1":
            v1_bases["pids"] = facts.v1_base("pids") or ""
    memory = budgets.get(BudgetDimension.RESIDENT_BYTES.value)
    if memory is not None:
        where = _hierarchy(facts, "memory", "budget:resident_bytes")
        typed.append((mech.BUDGET_MEMORY, mech.MemoryLimit(memory, where)))
        if where == "v1":
            v1_bases["memory"] = facts.v1_base("memory") or ""
    wall = budgets.get(BudgetDimension.WALL_MICROS.value)
    if wall is not None:
        typed.append((mech.BUDGET_WALL, mech.WallBudget(wall)))
    # The run tree in a cgroup as well wherever the host can kill one at once: the
    # namespace holds it for any caller, the leaf keeps it in the caller's accounting.
    cgroup_kill = facts.cgroup_v2_base is not None and facts.cgroup_v2_kill
    tree_by_cgroup = (cgroup_kill or not private) and (
        RequirementKind.CHILD_SPAWN_ALLOW_DESCENDANTS.value in kinds
        or enforced_kill
        or wall is not None
    )
    needs_leaf = (
        tree_by_cgroup
        or pids is not None
        or memory is not None
        or EvidenceClaim.PROCESS_TREE.value in evidence
    )
    if needs_leaf:
        typed.append(
            (
                mech.CGROUP_LEAF,
                mech.CgroupLeaf(facts.cgroup_v2_base, tuple(sorted(v1_bases.items()))),
            )
        )
        atomic = facts.cgroup_v2_base is not None and facts.cgroup_v2_kill
        typed.append(
            (mech.CGROUP_KILL, mech.KillGuarantee("atomic" if atomic else "best_effort_allowed"))
        )
    return typed
