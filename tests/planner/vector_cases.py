"""The fixed inputs behind ``tests/vectors/planner/plans.json``.

Regenerate (only when a digest definition or admission rule changes on purpose, with the
rules/schema version bumped and the diff reviewed):

    python3 -m tests.planner.vector_cases
"""

from __future__ import annotations

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
    NetworkDenyAll,
    SecretLease,
    SpawnPolicy,
)
from bvisor.contract.mechanisms import CATALOGUE
from bvisor.contract.plan import BoundaryPlan
from bvisor.planner.lowering import decl_digest
from bvisor.planner.planning import plan_boundary
from tests.planner.helpers import FIXED_FACTS, seed_spec, snapshot_of

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "planner" / "plans.json"


def cases() -> dict[str, Any]:
    kill = Kill(KillTarget.RUN_TREE, KillGuarantee.ATOMIC)
    env = EnvPolicy.exact(
        (EnvEntry("PATH", EnvLiteral("/usr/bin:/bin")), EnvEntry("TOKEN", SecretLease("t")))
    )
    return {
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


def compute() -> dict[str, Any]:
    snapshot = snapshot_of(FIXED_FACTS)
    return {
        "decl_digests": {p.id: decl_digest(p).hex() for p in CATALOGUE},
        "plans": {
            name: plan_vector(plan_boundary(spec, snapshot)) for name, spec in cases().items()
        },
    }


if __name__ == "__main__":
    VECTORS.parent.mkdir(parents=True, exist_ok=True)
    VECTORS.write_text(json.dumps(compute(), indent=2, sort_keys=True) + "\n")
    print(f"wrote {VECTORS}")
