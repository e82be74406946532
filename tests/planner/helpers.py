"""Shared helpers for planner tests: a fixed host, feature gating, snapshot and spec builders.

``live_facts`` is the real probe of this machine (taken once per session). Refusal tests
never need a host that lacks a feature: they plan against ``dataclasses.replace`` of the
live facts with the feature removed, and a ceiling derived from those facts.
``FIXED_FACTS`` is a hand-built host used for golden vectors, so the vectors do not
depend on the machine the tests run on.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from bvisor.contract import (
    BoundarySpec,
    BudgetRequirements,
    CaptureStreams,
    ChildSpawn,
    Environment,
    EnvPolicy,
    EvidenceRequirements,
    LaunchWorkload,
    MinGuarantee,
    ProcessWorkload,
    SpawnPolicy,
    StdStreams,
)
from bvisor.contract.plan import BoundaryPlan
from bvisor.contract.profile import HostFacts, ProfileSnapshot
from bvisor.planner.rules.v1.ceiling import linux_ceiling

FIXED_FACTS = HostFacts(
    kernel_release="6.18.0-vector",
    arch="x86_64",
    landlock_abi=7,
    seccomp_filter=True,
    seccomp_actions=(
        "kill_process",
        "kill_thread",
        "trap",
        "errno",
        "user_notif",
        "trace",
        "log",
        "allow",
    ),
    userns=True,
    netns=True,
    max_user_namespaces=65536,
    cgroup_v2_mount="/sys/fs/cgroup/unified",
    cgroup_v2_base="/sys/fs/cgroup/unified",
    cgroup_v2_kill=True,
    cgroup_v2_controllers=(),
    cgroup_v1_bases=(("memory", "/sys/fs/cgroup/memory/job"), ("pids", "/sys/fs/cgroup/pids")),
    host_uid=1000,
    host_gid=1000,
    launcher_path="/usr/bin/bvisor-linux-launcher",
    launcher_identity="00" * 32,
    probe_notes=("fixed facts for golden vectors",),
)


def snapshot_of(facts: HostFacts) -> ProfileSnapshot:
    """A snapshot whose ceiling rules v1 derive (the tests of this folder test v1)."""
    return ProfileSnapshot("linux", facts, linux_ceiling(facts))


def plan_v1(spec: BoundarySpec, snapshot: ProfileSnapshot) -> BoundaryPlan:
    """Plan with the frozen rules v1: the unit tests here pin what v1 decides."""
    from bvisor.planner.planning import plan_boundary
    from bvisor.planner.rules import v1

    return plan_boundary(spec, snapshot, v1.RULES)


def without(facts: HostFacts, **changes: Any) -> ProfileSnapshot:
    """A snapshot of ``facts`` with some facts changed (features removed)."""
    return snapshot_of(dataclasses.replace(facts, **changes))


def seed_spec(policy: SpawnPolicy = SpawnPolicy.DENY_NEW_TASKS, **changes: Any) -> BoundarySpec:
    """The seed's spawn_spec shape: spawn policy, empty env, capture out/err, uniform(8)."""
    fields: dict[str, Any] = {
        "workload": ProcessWorkload("/bin/sh", ("-c", "true")),
        "capabilities": (ChildSpawn(policy), Environment(EnvPolicy.exact(()))),
        "controls": (LaunchWorkload(), CaptureStreams(StdStreams(True, True, False))),
        "budgets": BudgetRequirements.uniform(8, MinGuarantee.MEDIATED),
        "evidence": EvidenceRequirements(),
    }
    fields.update(changes)
    return BoundarySpec(**fields)
