"""Planner rules v2 for a run's outputs: the cells, the refusals, and the walk scheduled.

Pure tests over hand-built host facts (see ``test_rules_v2``): listing is an observation
(Mediated), commit and discard are Enforced with a private root, their evidence is
producible only when their controls are asked for, and what cannot be held is refused
at admission — v1 keeps refusing all of it, exactly as it did.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from bvisor.contract import (
    BoundarySpec,
    CommitArtifact,
    DiscardArtifact,
    Durability,
    EvidenceClaim,
    EvidenceRequirements,
    ExposePath,
    Filesystem,
    FsAccess,
    ListOutputs,
    TempRoot,
)
from bvisor.contract import mechanisms as mech
from bvisor.contract.enforcement import Enforcement
from bvisor.contract.profile import ProfileSnapshot
from bvisor.front.defaults import default_spec
from bvisor.planner.errors import PlanRefusal
from bvisor.planner.planning import plan_boundary
from bvisor.planner.rules import v1, v2
from bvisor.planner.rules.v2 import outputs as rules
from tests.planner.helpers import FIXED_FACTS
from tests.planner.test_rules_v2 import ROOT, USER, _cells, _plan, _refusal, _snapshot, _with


def _spec(
    *controls: Any, evidence: set[EvidenceClaim] | None = None, facts: Any = ROOT
) -> BoundarySpec:
    base = default_spec(["/bin/true"], cwd="/srv/work", snapshot=_snapshot(facts))
    spec = _with(base, *controls)
    if evidence is not None:
        spec = dataclasses.replace(spec, evidence=EvidenceRequirements.of(evidence))
    return spec


def _outputs(spec: BoundarySpec, facts: Any = ROOT) -> mech.Outputs | None:
    plan = _plan(spec, facts)
    value = next((p.params for p in plan.lowering if p.entry.id == mech.OUTPUTS.id), None)
    return None if value is None else mech.Outputs.from_value(value)


@pytest.mark.parametrize("facts", [ROOT, USER], ids=["root", "normal-user"])
def test_outputs_cells_with_a_private_root(facts: Any) -> None:
    cells = _cells(facts)
    assert cells["list_outputs"].enforcement is Enforcement.MEDIATED
    for key in ("commit_artifact", "discard_artifact"):
        assert cells[key].enforcement is Enforcement.ENFORCED, cells[key]
    for claim in ("filesystem_delta", "artifact_lineage"):
        assert cells[f"evidence:{claim}"].enforcement is Enforcement.ENFORCED


def test_without_a_private_root_the_outputs_cells_name_the_missing_fact() -> None:
    cells = _cells(dataclasses.replace(ROOT, pidns=False))
    for key in ("list_outputs", "commit_artifact", "discard_artifact", "evidence:artifact_lineage"):
        assert cells[key].enforcement is Enforcement.UNSUPPORTED
        assert "missing fact: pidns" in cells[key].reason


def test_listing_lists_the_temp_root_and_every_write_root_with_named_bounds() -> None:
    spec = _spec(
        ListOutputs(),
        ExposePath(source="/srv/scratch", dest="/scratch", access=FsAccess.READ_WRITE),
        ExposePath(source="/srv/data", dest="/data", access=FsAccess.READ),
    )
    outputs = _outputs(spec)
    assert outputs is not None
    assert {(r.path, r.kind) for r in outputs.roots} == {
        ("/tmp", "temp"),
        ("/srv/work", "write"),
        ("/scratch", "write"),
    }
    bounds = (outputs.max_files, outputs.max_bytes, outputs.max_depth, outputs.max_entries)
    assert (*bounds, outputs.max_path_bytes) == (
        rules.MAX_FILES,
        rules.MAX_BYTES,
        rules.MAX_DEPTH,
        rules.MAX_ENTRIES,
        rules.MAX_PATH_BYTES,
    )
    assert outputs.commit is None


def test_a_commit_alone_walks_the_temp_root_with_its_durability() -> None:
    outputs = _outputs(_spec(CommitArtifact(Durability.SYNCED), facts=USER), USER)
    assert outputs is not None
    assert [(r.path, r.kind) for r in outputs.roots] == [("/tmp", "temp")]
    assert outputs.commit == "synced"


def test_nothing_is_walked_unless_listed_or_committed() -> None:
    assert _outputs(_spec()) is None
    assert _outputs(_spec(DiscardArtifact())) is None  # the tmpfs goes with the namespace


def _bare(*controls: Any) -> BoundarySpec:
    spec = default_spec(["/bin/true"], cwd="/srv/work", snapshot=_snapshot(ROOT))
    kept = tuple(c for c in spec.controls if not isinstance(c, TempRoot))
    return dataclasses.replace(spec, controls=(*kept, *controls))


@pytest.mark.parametrize(
    "spec, requirement",
    [
        (_bare(CommitArtifact(Durability.BEST_EFFORT)), "commit_artifact"),
        (_bare(DiscardArtifact()), "discard_artifact"),
    ],
    ids=["commit-without-temp-root", "discard-without-temp-root"],
)
def test_what_cannot_be_held_is_refused_at_admission(spec: BoundarySpec, requirement: str) -> None:
    err = _refusal(spec)
    assert (err.code, err.requirement) == ("invalid-policy", requirement), err


def test_listing_without_a_private_root_is_refused() -> None:
    spec = _spec(ListOutputs())
    spec = dataclasses.replace(
        spec,
        capabilities=tuple(c for c in spec.capabilities if not isinstance(c, Filesystem)),
        controls=tuple(c for c in spec.controls if not isinstance(c, TempRoot)),
    )
    err = _refusal(spec)
    assert (err.code, err.requirement) == ("invalid-policy", "list_outputs")


@pytest.mark.parametrize(
    "claim, control, needs",
    [
        (EvidenceClaim.FILESYSTEM_DELTA, ListOutputs(), "list_outputs"),
        (EvidenceClaim.ARTIFACT_LINEAGE, CommitArtifact(Durability.SYNCED), "commit_artifact"),
    ],
)
def test_outputs_evidence_needs_its_control(claim: EvidenceClaim, control: Any, needs: str) -> None:
    err = _refusal(_spec(evidence={claim}))
    assert (err.code, err.requirement) == ("evidence-unsatisfiable", f"evidence:{claim.value}")
    assert needs in err.detail
    plan = _plan(_spec(control, evidence={claim}))
    (decision,) = plan.admission.evidence
    assert decision.needs == (needs,) and decision.verdict is Enforcement.ENFORCED


def test_the_admitted_verdicts_and_mechanisms() -> None:
    plan = _plan(_spec(ListOutputs(), CommitArtifact(Durability.BEST_EFFORT)))
    by_key = {d.key: d for d in plan.admission.requirements}
    assert by_key["list_outputs"].verdict is Enforcement.MEDIATED
    assert by_key["commit_artifact"].mechanism == "linux:artifact_commit:Enforced"


def test_v1_still_refuses_the_outputs_controls_as_before() -> None:
    snapshot = ProfileSnapshot("linux", FIXED_FACTS, v1.RULES.ceiling(FIXED_FACTS))
    spec = _spec(ListOutputs())
    with pytest.raises(PlanRefusal) as info:
        plan_boundary(spec, snapshot, v1.RULES)
    assert info.value.code == "unsupported"
    v2_cells = {c.key for c in v2.RULES.ceiling(ROOT)}
    v1_cells = {c.key for c in v1.RULES.ceiling(FIXED_FACTS)}
    # The outputs cells are v1's, with new verdicts; v2 adds only the filesystem denial cell.
    assert v2_cells - v1_cells == {"evidence:denied_attempts:filesystem"}, v2_cells - v1_cells
    assert v1_cells <= v2_cells
