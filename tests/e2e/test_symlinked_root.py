"""A filesystem root is granted by its real path only: a root that is (or passes through)
a symbolic link is refused before anything runs, so swapping a directory for a link
cannot re-point a grant."""

from __future__ import annotations

from pathlib import Path

from bvisor.contract import (
    BoundarySpec,
    BudgetRequirements,
    EvidenceRequirements,
    Filesystem,
    FsAccess,
    LaunchWorkload,
    Outcome,
    ProcessWorkload,
)
from bvisor.front.api import run_confined
from tests.features import require_feature


def _spec(root: Path, marker: Path) -> BoundarySpec:
    return BoundarySpec(
        workload=ProcessWorkload(exe="/bin/sh", args=("-c", f": > {marker}")),
        capabilities=(Filesystem(access=FsAccess.READ_WRITE, roots=(str(root),)),),
        controls=(LaunchWorkload(),),
        budgets=BudgetRequirements.none(),
        evidence=EvidenceRequirements(),
    )


def test_a_symlinked_root_is_refused_and_nothing_runs(tmp_path: Path) -> None:
    require_feature("landlock")
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    report = run_confined(_spec(link, real / "ran"), ledger=False)
    assert report.body.outcome is Outcome.DENIED
    refused = [f.detail for f in report.body.observed if f.kind == "launch_refused_by_host"]
    assert refused and "symbolic link" in refused[0], refused
    assert not (real / "ran").exists()


def test_the_same_root_by_its_real_path_is_granted(tmp_path: Path) -> None:
    require_feature("landlock")
    real = tmp_path / "real"
    real.mkdir()
    report = run_confined(_spec(real, real / "ran"), ledger=False)
    assert report.body.outcome is Outcome.COMPLETED, report.body.observed
    assert (real / "ran").exists()
