"""Denial evidence in the planner (rules v2): which hosts can report denials, and for which specs.

Pure tests over hand-built facts: the ceiling's two denial cells, admission with and
without a filesystem capability, the seccomp parameters a plan asking for denied
attempts lowers to, and that v1 (frozen) still refuses the claim.
"""

from __future__ import annotations

import dataclasses

import pytest

from bvisor.contract import (
    EvidenceRequirements,
    Filesystem,
    FsAccess,
    Network,
    NetworkDenyAll,
)
from bvisor.contract import mechanisms as mech
from bvisor.contract.enforcement import Enforcement
from bvisor.contract.evidence import EvidenceClaim
from bvisor.contract.profile import HostFacts, ProfileSnapshot
from bvisor.planner.errors import PlanRefusal
from bvisor.planner.planning import plan_boundary
from bvisor.planner.rules import v1, v2
from bvisor.planner.rules.v1.ceiling import missing_fact_of
from tests.planner.helpers import FIXED_FACTS, seed_spec

ROOT = dataclasses.replace(FIXED_FACTS, pidns=True, host_uid=0, host_gid=0)
USER = dataclasses.replace(FIXED_FACTS, pidns=True, audit_readable=False)
DENIED = EvidenceRequirements.of({EvidenceClaim.DENIED_ATTEMPTS})
KEY, FS_KEY = "evidence:denied_attempts", "evidence:denied_attempts:filesystem"


def _snapshot(facts: HostFacts) -> ProfileSnapshot:
    return ProfileSnapshot("linux", facts, v2.RULES.ceiling(facts))


def _cells(facts: HostFacts) -> dict[str, object]:
    return {cell.key: cell for cell in v2.RULES.ceiling(facts)}


@pytest.mark.parametrize("facts", [ROOT, USER], ids=["root", "normal-user"])
def test_user_notifications_make_denied_attempts_enforced_and_say_what_is_not_seen(
    facts: HostFacts,
) -> None:
    cell = _cells(facts)[KEY]
    assert cell.enforcement is Enforcement.ENFORCED  # type: ignore[attr-defined]
    assert cell.mechanism == "linux:seccomp_user_notif:Enforced"  # type: ignore[attr-defined]
    reason = cell.reason  # type: ignore[attr-defined]
    assert "seen:" in reason and "Not seen:" in reason
    for unseen in ("Landlock", "ENOENT", "EROFS", "kill rule", "clone3"):
        assert unseen in reason
    assert missing_fact_of(cell) is None  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "fact"),
    [
        ({"seccomp_filter": False}, "seccomp_filter"),
        ({"seccomp_actions": ("kill_process", "errno", "allow")}, "seccomp_actions"),
    ],
)
def test_without_user_notifications_the_claim_stays_refused(
    changes: dict[str, object], fact: str
) -> None:
    facts = dataclasses.replace(USER, **changes)  # type: ignore[arg-type]
    cell = _cells(facts)[KEY]
    assert cell.enforcement is Enforcement.UNSUPPORTED  # type: ignore[attr-defined]
    with pytest.raises(PlanRefusal) as caught:
        # No capability that needs seccomp itself: only the evidence is refused.
        plan_boundary(seed_spec(capabilities=(), evidence=DENIED), _snapshot(facts), v2.RULES)
    assert (caught.value.code, caught.value.requirement, caught.value.missing_fact) == (
        "evidence-unsatisfiable",
        KEY,
        fact,
    )


@pytest.mark.parametrize(
    ("facts", "fact"),
    [
        (USER, "audit_readable"),
        (dataclasses.replace(ROOT, audit_readable=None), "audit_readable"),
        (dataclasses.replace(ROOT, audit_readable=True, landlock_abi=6), "landlock_abi"),
        (dataclasses.replace(ROOT, audit_readable=True), None),
    ],
    ids=["normal-user", "unprobed", "old-landlock", "audit-readable"],
)
def test_a_filesystem_boundary_with_denied_attempts_is_refused_naming_why(
    facts: HostFacts, fact: str | None
) -> None:
    cell = _cells(facts)[FS_KEY]
    assert cell.enforcement is Enforcement.UNSUPPORTED  # type: ignore[attr-defined]
    spec = seed_spec(
        capabilities=(*seed_spec().capabilities, Filesystem(FsAccess.READ, ("/usr",))),
        evidence=DENIED,
    )
    with pytest.raises(PlanRefusal) as caught:
        plan_boundary(spec, _snapshot(facts), v2.RULES)
    refusal = caught.value
    assert (refusal.code, refusal.requirement, refusal.missing_fact) == (
        "evidence-unsatisfiable",
        FS_KEY,
        fact,
    )
    assert "ENOENT" in refusal.detail and "EROFS" in refusal.detail
    # The same spec without the claim is admitted: only the evidence is refused.
    plan_boundary(dataclasses.replace(spec, evidence=EvidenceRequirements()), _snapshot(facts))


@pytest.mark.parametrize("facts", [ROOT, USER], ids=["root", "normal-user"])
def test_a_plan_asking_for_denied_attempts_notifies_and_others_do_not(facts: HostFacts) -> None:
    spec = seed_spec(capabilities=(*seed_spec().capabilities, Network(NetworkDenyAll())))
    asked = plan_boundary(dataclasses.replace(spec, evidence=DENIED), _snapshot(facts), v2.RULES)
    plain = plan_boundary(spec, _snapshot(facts), v2.RULES)

    def seccomp(plan: object) -> mech.Seccomp:
        (params,) = [
            p.params
            for p in plan.lowering  # type: ignore[attr-defined]
            if p.entry.id == mech.SECCOMP.id
        ]
        return mech.Seccomp.from_value(params)  # type: ignore[no-any-return]

    assert seccomp(asked) == mech.Seccomp(True, True, False, True)
    assert seccomp(plain) == mech.Seccomp(True, True, False, False)
    decision = next(e for e in asked.admission.evidence if e.claim == "denied_attempts")
    assert decision.cell.key == KEY and decision.verdict is Enforcement.ENFORCED
    assert asked.h_l != plain.h_l


def test_frozen_v1_still_refuses_denied_attempts() -> None:
    snapshot = ProfileSnapshot("linux", FIXED_FACTS, v1.RULES.ceiling(FIXED_FACTS))
    with pytest.raises(PlanRefusal) as caught:
        plan_boundary(seed_spec(evidence=DENIED), snapshot, v1.RULES)
    assert (caught.value.code, caught.value.requirement) == ("evidence-unsatisfiable", KEY)


def test_a_profile_recorded_before_the_audit_fact_keeps_its_bytes() -> None:
    value = FIXED_FACTS.to_value()
    assert "audit_readable" not in value
    assert HostFacts.from_value(value) == FIXED_FACTS
    probed = dataclasses.replace(FIXED_FACTS, audit_readable=False)
    assert HostFacts.from_value(probed.to_value()) == probed
