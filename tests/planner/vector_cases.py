"""The fixed inputs behind ``tests/vectors/planner/v<N>/plans.json``, one file per rules version.

A released version's vectors are never regenerated: its file is written once, when the
version is made, and from then on the test demands byte-identical digests. To write the
file of a *new* version (and only that):

    python3 -m tests.planner.vector_cases <N>
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from bvisor.contract import (
    Budget,
    BudgetRequirements,
    EnvEntry,
    Environment,
    EnvLiteral,
    EnvPolicy,
    EvidenceClaim,
    EvidenceRequirements,
    Filesystem,
    FsAccess,
    Kill,
    KillGuarantee,
    KillTarget,
    LaunchWorkload,
    MinGuarantee,
    Network,
    NetworkAllowList,
    NetworkDenyAll,
    SecretLease,
    SpawnPolicy,
)
from bvisor.contract.plan import BoundaryPlan
from bvisor.contract.profile import ProfileSnapshot
from bvisor.planner.planning import plan_boundary
from bvisor.planner.rules import Rules, rules_for
from tests.planner.helpers import FIXED_FACTS, seed_spec

VECTOR_DIR = Path(__file__).resolve().parents[1] / "vectors" / "planner"


def vectors_path(version: int) -> Path:
    return VECTOR_DIR / f"v{version}" / "plans.json"


def cases(version: int = 1) -> dict[str, Any]:
    """The specs of ``version``'s vectors: v1's three, and from v2 on the allow list's."""
    kill = Kill(KillTarget.RUN_TREE, KillGuarantee.ATOMIC)
    env = EnvPolicy.exact(
        (EnvEntry("PATH", EnvLiteral("/usr/bin:/bin")), EnvEntry("TOKEN", SecretLease("t")))
    )
    found = {
        "seed_deny_new_tasks": seed_spec(),
        "seed_allow_descendants_atomic_kill": seed_spec(
            SpawnPolicy.ALLOW_DESCENDANTS_WITHIN_BOUNDARY,
            controls=(*seed_spec().controls, kill),
        ),
        "confined_budgeted": seed_spec(
            SpawnPolicy.ALLOW_DESCENDANTS_WITHIN_BOUNDARY,
            capabilities=(
                seed_spec(SpawnPolicy.ALLOW_DESCENDANTS_WITHIN_BOUNDARY).capabilities[0],
                Filesystem(FsAccess.READ, ("/srv/data",)),
                Filesystem(FsAccess.READ_WRITE, ("/srv/out",)),
                Network(NetworkDenyAll()),
                Environment(env),
            ),
            controls=(LaunchWorkload(), kill),
            budgets=BudgetRequirements(
                wall_micros=Budget(10_000_000, MinGuarantee.ENFORCED),
                resident_bytes=Budget(256 << 20, MinGuarantee.ENFORCED),
                process_count=Budget(16, MinGuarantee.ENFORCED),
                cpu_micros=Budget(5_000_000, MinGuarantee.MEDIATED),
            ),
            evidence=EvidenceRequirements.of(
                {EvidenceClaim.TERMINAL_OUTCOME, EvidenceClaim.PROCESS_TREE}
            ),
        ),
    }
    if version >= 2:
        allow = ("*.pypi.org:443", "10.0.0.0/8:5432", "[2001:db8::1]:80", "pypi.org:443")
        found["network_allow_list_budgeted"] = seed_spec(
            capabilities=(
                seed_spec().capabilities[0],
                Filesystem(FsAccess.READ, ("/srv/data",)),
                Network(NetworkAllowList(allow)),
                Environment(env),
            ),
            budgets=BudgetRequirements(
                network_bytes=Budget(1 << 20, MinGuarantee.ENFORCED),
            ),
            evidence=EvidenceRequirements.of({EvidenceClaim.NETWORK_ACTIVITY}),
        )
    return found


def plan_vector(plan: BoundaryPlan) -> dict[str, Any]:
    return {
        "h_p": plan.h_p.hex(),
        "h_a": plan.h_a.hex(),
        "h_l": plan.h_l.hex(),
        "plan_id": plan.plan_id.hex(),
        "entries": [
            [e.id, e.phase_code, e.param_digest.hex(), e.decl_digest.hex()] for e in plan.entries
        ],
    }


def facts_for(version: int) -> Any:
    """The fixed host: v1's as it was; from v2 on it can also build a private root and
    make the allow list's listener; from v4 on, a UTS namespace."""
    if version == 1:
        return FIXED_FACTS
    if version < 4:
        return dataclasses.replace(FIXED_FACTS, pidns=True, netns_loopback=True)
    return dataclasses.replace(FIXED_FACTS, pidns=True, netns_loopback=True, utsns=True)


def compute(rules: Rules) -> dict[str, Any]:
    facts = facts_for(rules.version)
    snapshot = ProfileSnapshot("linux", facts, rules.ceiling(facts))
    return {
        "decl_digests": {name: digest.hex() for name, digest in rules.decl_digests.items()},
        "plans": {
            name: plan_vector(plan_boundary(spec, snapshot, rules))
            for name, spec in cases(rules.version).items()
        },
    }


def render(rules: Rules) -> str:
    return json.dumps(compute(rules), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    import sys

    version = int(sys.argv[1])
    target = vectors_path(version)
    if target.exists():
        sys.exit(f"{target} exists: a released version's vectors are never rewritten")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render(rules_for(version)))
    print(f"wrote {target}")
