"""Admission: decide, from a spec and a profile snapshot alone, whether the spec can hold.

Pure and deterministic — the replayer re-runs it on the recorded spec and profile and
must get the same record and h_a. The steps, each failing closed with a typed
:class:`PlanRefusal` (DESIGN.md §4):

1. **Backend and profile.** The snapshot's backend must be known (``unknown-backend``),
   and its recorded ceiling must be exactly the one its recorded facts derive
   (``profile-insufficient`` naming the missing or disagreeing cell): a ceiling that
   claims more than the facts support is never trusted.
2. **Workload.** Only a process workload can run on Linux (``unsupported``).
3. **Requirements**, in canonical order: verdict = family best case ⊓ ceiling cell.
   Unsupported, or weaker than the requirement needs (capabilities and an atomic kill
   need Enforced; other controls accept Mediated), refuses ``unsupported`` naming the
   missing kernel fact.
4. **Support membrane.** A requirement whose mechanism leans on another must find that
   other one Enforced: allowing descendants is only a boundary if the run tree can be
   killed as a whole at teardown, so ``child_spawn_allow_descendants`` needs the
   ``kill:atomic`` cell (``support-missing``). This holds whether or not the spec also
   asks for a Kill control: the leaf is always killed at teardown.
5. **Evidence membrane** (``bvisor.planner.rules.v1.evidence``): each required claim needs
   a producible cell and its supporting requirements — else ``evidence-unsatisfiable``.
6. **Budgets** (``bvisor.planner.rules.v1.budgets``), in the fixed dimension order, first
   failure wins
   (``budget-refused``). A Mediated ask is witnessed, not capped — so the seed's
   ``uniform(8, Mediated)`` admits.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from bvisor.contract.admission import AdmissionRecord, RequirementDecision
from bvisor.contract.controls import KillGuarantee
from bvisor.contract.enforcement import Enforcement
from bvisor.contract.evidence import EvidenceClaim
from bvisor.contract.profile import CeilingCell, HostFacts, ProfileSnapshot
from bvisor.contract.requirements import Requirement, RequirementKind, requirements_of
from bvisor.contract.spec import BoundarySpec
from bvisor.contract.workload import ProcessWorkload
from bvisor.planner.errors import PlanRefusal
from bvisor.planner.rules.v1.budgets import judge_budget
from bvisor.planner.rules.v1.ceiling import kill_key, linux_ceiling, missing_fact_of, require_cell
from bvisor.planner.rules.v1.evidence import EVIDENCE_NEEDS, judge_evidence

__all__ = [
    "CEILING_DERIVATIONS",
    "FAMILY_BEST",
    "admit",
    "admit_with",
    "ceiling_key",
    "check_profile",
]

E, M, U = Enforcement.ENFORCED, Enforcement.MEDIATED, Enforcement.UNSUPPORTED
RULES_VERSION = 1

# How each backend derives its ceiling from its facts; admission re-derives and compares.
CEILING_DERIVATIONS: Mapping[str, Callable[[HostFacts], tuple[CeilingCell, ...]]] = {
    "linux": linux_ceiling,
}

# What each family could reach on the best possible backend. Listing outputs is an
# observation by nature, so it can never be more than Mediated.
FAMILY_BEST: Mapping[RequirementKind, Enforcement] = {
    kind: (M if kind is RequirementKind.LIST_OUTPUTS else E) for kind in RequirementKind
}

_CAPABILITY_KINDS = frozenset(
    {
        RequirementKind.FILESYSTEM,
        RequirementKind.NETWORK_DENY_ALL,
        RequirementKind.NETWORK_ALLOW_LIST,
        RequirementKind.CHILD_SPAWN_DENY_NEW_TASKS,
        RequirementKind.CHILD_SPAWN_ALLOW_THREADS,
        RequirementKind.CHILD_SPAWN_ALLOW_DESCENDANTS,
        RequirementKind.ENVIRONMENT,
        RequirementKind.INHERITED_FDS_NONE,
        RequirementKind.INHERITED_FDS_ONLY,
    }
)

# Support membrane: requirement kind -> ceiling keys that must be Enforced for it to mean
# what it says.
_KILL_ATOMIC = kill_key(KillGuarantee.ATOMIC)
_SUPPORT: Mapping[RequirementKind, tuple[str, ...]] = {
    RequirementKind.CHILD_SPAWN_ALLOW_DESCENDANTS: (_KILL_ATOMIC,),
}


def ceiling_key(requirement: Requirement) -> str:
    """The ceiling cell a requirement is judged against (Kill splits by guarantee)."""
    if requirement.kind is RequirementKind.KILL:
        policy = requirement.policy
        guarantee = policy.get("guarantee") if isinstance(policy, Mapping) else None
        known = {g.value: g for g in KillGuarantee}
        if not isinstance(guarantee, str) or guarantee not in known:
            raise PlanRefusal(
                "invalid-policy", f"kill guarantee {guarantee!r} is not known", requirement="kill"
            )
        return kill_key(known[guarantee])
    return str(requirement.kind.value)


def _required_level(requirement: Requirement, key: str) -> Enforcement:
    if requirement.kind in _CAPABILITY_KINDS or key == _KILL_ATOMIC:
        return E
    return M


def _with_level(mechanism: str, level: Enforcement) -> str:
    head, sep, _ = mechanism.rpartition(":")
    return f"{head}:{level.title}" if sep else f"{mechanism}:{level.title}"


def _cell_difference(recorded: CeilingCell, derived: CeilingCell) -> str | None:
    """The first structured fact in which a recorded cell differs from the derived one.

    Compared: enforcement, mechanism, the evidence claims, and the missing host fact the
    reason names. The rest of ``reason`` is prose for people: rewording it must never make
    a recorded run fail its profile check.
    """
    facts = (
        ("enforcement", recorded.enforcement, derived.enforcement),
        ("mechanism", recorded.mechanism, derived.mechanism),
        ("evidence", recorded.evidence, derived.evidence),
        ("missing fact", missing_fact_of(recorded), missing_fact_of(derived)),
    )
    for name, was, now in facts:
        if was != now:
            return f"{name}: recorded {was!r}, these rules give {now!r}"
    return None


def check_profile(
    snapshot: ProfileSnapshot,
    derivations: Mapping[str, Callable[[HostFacts], tuple[CeilingCell, ...]]] = (
        CEILING_DERIVATIONS
    ),
) -> None:
    """Refuse a snapshot from an unknown backend or whose ceiling its facts do not derive.

    ``derivations`` are this version's; a later version passes its own ceilings.
    """
    derive = derivations.get(snapshot.backend)
    if derive is None:
        raise PlanRefusal(
            "unknown-backend",
            f"no admission rules for backend {snapshot.backend!r} "
            f"(known: {', '.join(sorted(derivations))})",
        )
    expected = {c.key: c for c in derive(snapshot.facts)}
    recorded = snapshot.cells()
    for key, cell in expected.items():
        if key not in recorded:
            raise PlanRefusal(
                "profile-insufficient",
                f"the profile has no ceiling cell {key!r}",
                requirement=key,
                missing_fact=key,
            )
        difference = _cell_difference(recorded[key], cell)
        if difference is not None:
            raise PlanRefusal(
                "profile-insufficient",
                f"ceiling cell {key!r} does not follow from the recorded facts ({difference})",
                requirement=key,
            )
    extra = sorted(set(recorded) - set(expected))
    if extra:
        raise PlanRefusal(
            "profile-insufficient",
            f"ceiling cell {extra[0]!r} is not one this backend derives",
            requirement=extra[0],
        )


def _check_policy(requirement: Requirement, key: str) -> None:
    """Policy details a ceiling cell cannot express, refused here (fail closed).

    Landlock rules always cover the whole hierarchy beneath a directory, so a
    non-recursive filesystem grant cannot be held without granting more than asked.
    """
    policy = requirement.policy
    if requirement.kind is RequirementKind.FILESYSTEM:
        if not isinstance(policy, Mapping) or not isinstance(policy.get("recursive"), bool):
            raise PlanRefusal(
                "invalid-policy", "filesystem policy lacks 'recursive'", requirement=key
            )
        if policy["recursive"] is False:
            raise PlanRefusal(
                "unsupported",
                "filesystem recursive=false cannot be held: Landlock rules always cover the "
                "whole tree beneath a directory",
                requirement=key,
            )


def _judge_requirement(requirement: Requirement, snapshot: ProfileSnapshot) -> RequirementDecision:
    key = ceiling_key(requirement)
    cell = require_cell(snapshot, key, key)
    best = FAMILY_BEST[requirement.kind]
    verdict = best.meet(cell.enforcement)
    required = _required_level(requirement, key)
    _check_policy(requirement, key)
    if verdict is U or not verdict.at_least(required):
        shortfall = (
            "cannot be held by this backend"
            if verdict is U
            else f"is only {verdict.title} here and needs {required.title}"
        )
        raise PlanRefusal(
            "unsupported",
            f"{key} {shortfall}: {cell.reason}",
            requirement=key,
            missing_fact=missing_fact_of(cell),
        )
    support = _SUPPORT.get(requirement.kind, ())
    for need in support:
        other = require_cell(snapshot, need, key)
        if other.enforcement is not E:
            raise PlanRefusal(
                "support-missing",
                f"{key} needs {need} to be Enforced, but it is {other.enforcement.title} "
                f"here: {other.reason}",
                requirement=key,
                missing_fact=missing_fact_of(other),
            )
    return RequirementDecision(
        key=key,
        policy=requirement.policy,
        family_best=best,
        required=required,
        cell=cell,
        verdict=verdict,
        mechanism=_with_level(cell.mechanism, verdict),
        support=support,
    )


def admit(spec: BoundarySpec, snapshot: ProfileSnapshot) -> AdmissionRecord:
    """Admit ``spec`` against ``snapshot`` or raise :class:`PlanRefusal` (pure)."""
    return admit_with(spec, snapshot, CEILING_DERIVATIONS, RULES_VERSION)


def admit_with(
    spec: BoundarySpec,
    snapshot: ProfileSnapshot,
    derivations: Mapping[str, Callable[[HostFacts], tuple[CeilingCell, ...]]],
    rules_version: int,
    check_spec: Callable[[BoundarySpec], None] = lambda spec: None,
    evidence_needs: Mapping[EvidenceClaim, tuple[RequirementKind, ...]] = EVIDENCE_NEEDS,
) -> AdmissionRecord:
    """Admission with a version's ceilings, number, extra spec checks and evidence needs.

    Later rules versions whose admission differs only in those reuse this body: it is
    frozen with v1, so what it decides for v1 can never change underneath them either.
    """
    if not isinstance(spec, BoundarySpec):
        raise PlanRefusal("invalid-policy", "the spec is not a BoundarySpec")
    check_profile(snapshot, derivations)
    if not isinstance(spec.workload, ProcessWorkload):
        raise PlanRefusal(
            "unsupported",
            f"the {snapshot.backend} backend runs only process workloads "
            f"(got {type(spec.workload).__name__})",
            requirement="workload",
        )
    check_spec(spec)
    requirements = requirements_of(spec)
    decisions = tuple(_judge_requirement(r, snapshot) for r in requirements)
    kinds = frozenset(r.kind for r in requirements)
    evidence = tuple(
        judge_evidence(claim, kinds, snapshot, evidence_needs)
        for claim in spec.evidence.sorted_claims()
    )
    budgets = tuple(
        judge_budget(dimension, budget, spec, snapshot)
        for dimension, budget in spec.budgets.items()
    )
    return AdmissionRecord(
        rules_version=rules_version,
        backend=snapshot.backend,
        workload="process",
        requirements=decisions,
        evidence=evidence,
        budgets=budgets,
    )
