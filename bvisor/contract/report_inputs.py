"""The parts of a report body that are pure functions of the plan.

The runner builds a report from them and replay re-derives them from the recorded plan,
so both must use this one definition: which requirements were admitted (with their
verdict and mechanism), the profile label a report names, the facts that say how each
requirement was lowered, and the filesystem grants a ``filesystem_confined`` fact may
name. Parameters are read as the canonical values the plan records (this module cannot
depend on the launcher's typed view of them).
"""

from __future__ import annotations

from collections.abc import Mapping

from bvisor.contract.admission import AdmissionRecord
from bvisor.contract.capabilities import ChildSpawn, SpawnPolicy
from bvisor.contract.controls import DiscardArtifact
from bvisor.contract.plan import BoundaryPlan
from bvisor.contract.profile import ProfileSnapshot
from bvisor.contract.report import AdmittedRequirement, ObservedFact
from bvisor.contract.requirements import RequirementKind

__all__ = [
    "LOWERING_FACT_KINDS",
    "MEDIATED_FINDING",
    "TEST_HOOK_FINDING",
    "admitted_requirements",
    "filesystem_grants",
    "finding_subjects",
    "lowering_facts",
    "mediated_finding",
    "profile_label",
    "test_hook_finding",
]

# Findings the runner writes and replay binds to the evidence: one wording, here.
TEST_HOOK_FINDING = "DANGEROUS TEST HOOK ACTIVE: "
MEDIATED_FINDING = "mediated budget "


def test_hook_finding(hook: str) -> str:
    return f"{TEST_HOOK_FINDING}{hook} — this run is not evidence"


def mediated_finding(dimension: str, observed: int | None, limit: int) -> str:
    return f"{MEDIATED_FINDING}{dimension} exceeded: observed {observed} > limit {limit}"


def finding_subjects(findings: tuple[str, ...], prefix: str) -> list[str]:
    """The hook or dimension named by each finding with ``prefix``, sorted."""
    return sorted(f.removeprefix(prefix).split(" ", 1)[0] for f in findings if f.startswith(prefix))


LOWERING_FACT_KINDS = (
    "child_spawn_lowered",
    "network_lowered",
    "inherited_fds_lowered",
    "environment_lowered",
    "outputs_lowered",
)


def admitted_requirements(admission: AdmissionRecord) -> tuple[AdmittedRequirement, ...]:
    """One entry per admitted requirement, in the admission record's order."""
    return tuple(
        AdmittedRequirement(
            # Cell keys are the kind's value, refined after a colon where one kind has
            # several cells (``kill:atomic``); the report names the kind.
            kind=RequirementKind(decision.key.partition(":")[0]),
            enforcement=decision.verdict,
            mechanism=decision.mechanism,
        )
        for decision in admission.requirements
    )


def profile_label(profile: ProfileSnapshot) -> str:
    """A human label for the profile a run was admitted under (h_p is the binding one)."""
    facts = profile.facts
    return f"{profile.backend}:{facts.kernel_release}:{facts.arch}"


def _params(plan: BoundaryPlan) -> dict[str, Mapping[str, object]]:
    result: dict[str, Mapping[str, object]] = {}
    for primitive in plan.lowering:
        if isinstance(primitive.params, Mapping):
            result[primitive.entry.id] = primitive.params
    return result


def _spawn_policy(plan: BoundaryPlan) -> SpawnPolicy | None:
    for capability in plan.spec.capabilities:
        if isinstance(capability, ChildSpawn):
            return capability.policy
    return None


# Lowering entry ids by mechanism, every released version: report facts are read from the
# entry a plan has, in the shape that entry's id (and version) defines.
_SECCOMP = ("linux.seccomp.apply.v1", "linux.seccomp.apply.v2")
_AMBIENT_V1, _AMBIENT_V2 = "linux.ambient.scrub.v1", "linux.ambient.scrub.v2"
_LANDLOCK_V1, _LANDLOCK_V2 = "linux.landlock.apply.v1", "linux.landlock.apply.v2"
_CGROUP_LEAF, _NETNS, _PIDNS = (
    "linux.cgroup.leaf.v1",
    "linux.netns.create.v1",
    "linux.pidns.init.v1",
)
_ROOTFS = "linux.rootfs.v1"
_OUTPUTS = "linux.outputs.v1"
_NETPROXY = "linux.netproxy.v1"
_NETDNS = "linux.netdns.v1"


def _first(
    params: Mapping[str, Mapping[str, object]], ids: tuple[str, ...]
) -> Mapping[str, object]:
    return next((params[i] for i in ids if i in params), {})


def _spawn_fact(
    plan: BoundaryPlan, params: Mapping[str, Mapping[str, object]]
) -> ObservedFact | None:
    seccomp = _first(params, _SECCOMP)
    if seccomp.get("deny_new_tasks") is True:
        return ObservedFact(
            "child_spawn_lowered", "deny_new_tasks: seccomp denies clone/clone3/fork/vfork"
        )
    if seccomp.get("threads_only") is True:
        return ObservedFact(
            "child_spawn_lowered",
            "allow_threads_within_boundary: seccomp allows thread clones only",
        )
    if _spawn_policy(plan) is not SpawnPolicy.ALLOW_DESCENDANTS_WITHIN_BOUNDARY:
        return None
    if _PIDNS in params and _CGROUP_LEAF in params:
        return ObservedFact(
            "child_spawn_lowered",
            "allow_descendants_within_boundary: PID namespace + cgroup leaf + cgroup.kill",
        )
    if _PIDNS in params:
        return ObservedFact(
            "child_spawn_lowered",
            "allow_descendants_within_boundary: PID namespace, its init killed at the end",
        )
    if _CGROUP_LEAF in params:
        return ObservedFact(
            "child_spawn_lowered", "allow_descendants_within_boundary: cgroup leaf + cgroup.kill"
        )
    return None


def _env_names(params: Mapping[str, Mapping[str, object]]) -> list[str]:
    if _AMBIENT_V2 in params:
        raw = params[_AMBIENT_V2].get("env", [])
        entries = raw if isinstance(raw, list) else []
        return [str(e.get("name")) for e in entries if isinstance(e, Mapping)]
    raw = params.get(_AMBIENT_V1, {}).get("env", [])
    entries = raw if isinstance(raw, list) else []
    return [str(e[0]) for e in entries if isinstance(e, list) and e]


def lowering_facts(plan: BoundaryPlan) -> tuple[ObservedFact, ...]:
    """The facts saying, before anything runs, which requirement became which mechanism."""
    params = _params(plan)
    facts: list[ObservedFact] = []
    spawn = _spawn_fact(plan, params)
    if spawn is not None:
        facts.append(spawn)
    if _NETPROXY in params:
        proxy = params[_NETPROXY]
        allow = proxy.get("allow", [])
        facts.append(
            ObservedFact(
                "network_lowered",
                f"allow_list: empty netns in a userns, a listener on its 127.0.0.1:"
                f"{proxy.get('port')} served by the host's proxy "
                f"({len(allow) if isinstance(allow, list) else 0} entries), seccomp "
                "AF_INET/AF_INET6 sockets only"
                + (
                    f"; a resolver on its udp 127.0.0.1:{params[_NETDNS].get('port')} "
                    "answering listed names only"
                    if _NETDNS in params
                    else ""
                ),
            )
        )
    elif _NETNS in params:
        facts.append(
            ObservedFact(
                "network_lowered", "deny_all: empty netns in a userns + seccomp socket filter"
            )
        )
    scrub = _first(params, (_AMBIENT_V2, _AMBIENT_V1))
    raw_fds = scrub.get("keep_fds", [0, 1, 2])
    fds = sorted(fd for fd in raw_fds if isinstance(fd, int)) if isinstance(raw_fds, list) else []
    facts.append(
        ObservedFact(
            "inherited_fds_lowered", f"only fds {','.join(map(str, fds))} reach the workload"
        )
    )
    names = _env_names(params)
    facts.append(
        ObservedFact("environment_lowered", f"exact environment: [{','.join(map(str, names))}]")
    )
    facts += _outputs_facts(plan, params)
    return tuple(facts)


def _outputs_facts(
    plan: BoundaryPlan, params: Mapping[str, Mapping[str, object]]
) -> list[ObservedFact]:
    """What becomes of the run's outputs: listed (which roots, how bounded), committed,
    or discarded with the temp root's tmpfs."""
    facts: list[ObservedFact] = []
    outputs = params.get(_OUTPUTS)
    if outputs is not None:
        raw = outputs.get("roots", [])
        roots = [r for r in raw if isinstance(r, Mapping)] if isinstance(raw, list) else []
        shown = ", ".join(f"{r.get('path')} ({r.get('kind')})" for r in roots) or "none"
        facts.append(
            ObservedFact(
                "outputs_lowered",
                f"list: {shown}; by fd after the workload exits, at most "
                f"{outputs.get('max_files')} items, {outputs.get('max_bytes')} bytes, depth "
                f"{outputs.get('max_depth')}, {outputs.get('max_entries')} entries, "
                f"{outputs.get('max_path_bytes')} bytes of paths",
            )
        )
        if outputs.get("commit") is not None:
            facts.append(
                ObservedFact(
                    "outputs_lowered",
                    f"commit {outputs.get('commit')}: the temp root's files copied by fd into "
                    "a staging directory, renamed into the artifact directory only when the "
                    "copy is complete",
                )
            )
    if any(isinstance(c, DiscardArtifact) for c in plan.spec.controls) and _ROOTFS in params:
        facts.append(
            ObservedFact(
                "outputs_lowered",
                "discard: the temp root is the run's own tmpfs, freed with its mount "
                "namespace; nothing of it reaches the host",
            )
        )
    return facts


def filesystem_grants(plan: BoundaryPlan) -> frozenset[str]:
    """Every ``path=access`` a ``filesystem_confined`` fact may name for this plan."""
    params = _params(plan)
    grants: set[str] = set()
    for key in (_LANDLOCK_V1, _LANDLOCK_V2):
        rules = params.get(key, {}).get("rules", [])
        for rule in rules if isinstance(rules, list) else []:
            if isinstance(rule, Mapping):
                grants.add(f"{rule.get('path')}={rule.get('access')}")
    rootfs = params.get(_ROOTFS, {}).get("mounts", [])
    for mount in rootfs if isinstance(rootfs, list) else []:
        if isinstance(mount, Mapping) and mount.get("kind") == "bind":
            grants.add(f"{mount.get('source')}={mount.get('access')}")
    landlock = params.get(_LANDLOCK_V1, {})
    for key, access in (
        ("system_read_roots", "read"),
        ("device_rw", "read_write"),
        ("device_read", "read"),
    ):
        paths = landlock.get(key, [])
        grants.update(f"{path}={access}" for path in (paths if isinstance(paths, list) else []))
    return frozenset(grants)
