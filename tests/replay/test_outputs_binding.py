"""A report's outputs facts and artifacts are bound to the launcher notes the ledger holds.

One real run lists and commits its temp root into a ledger; the forger (``forge``: every
hash and the chain recomputed, each report resealed) then edits what a liar would — an
artifact's digest, an artifact more or fewer, a listed size, the commit fact, a note and
its fact together — and the ``report`` check must fail, naming what disagrees.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bvisor.contract import CommitArtifact, Durability, ListOutputs
from bvisor.contract import outputs as g
from bvisor.front.api import run_confined
from bvisor.front.defaults import default_spec
from bvisor.ledger import Ledger, verify
from bvisor.replay import FAILED, VERIFIED, audit
from tests.features import require_feature
from tests.replay.helpers import Copied, backend, forge, reseal

Edit = Callable[[list[Copied]], None]
SCRIPT = "printf one > /tmp/one; mkdir -p $HOME/d; printf two > $HOME/d/two; printf w > w.txt"


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ledger]:
    for feature in ("landlock", "pidns", "seccomp", "netns"):
        require_feature(feature)
    base = tmp_path_factory.mktemp("outputs-binding")
    work = base / "work"
    work.mkdir()
    spec = default_spec(["/bin/sh", "-c", SCRIPT], cwd=str(work))
    spec = dataclasses.replace(
        spec, controls=(*spec.controls, ListOutputs(), CommitArtifact(Durability.BEST_EFFORT))
    )
    report = run_confined(
        spec, ledger=base / "ledger", artifacts=base / "artifacts", backend=backend()
    )
    assert len(report.body.artifacts) == 2, report.body.observed
    ledger = Ledger.open(base / "ledger")
    yield ledger
    ledger.close()


def _audit(source: Ledger, tmp_path: Path, edit: Edit) -> Any:
    def apply(events: list[Copied]) -> None:
        edit(events)
        reseal(events)

    forged = forge(source, tmp_path / "forged", apply)
    try:
        assert verify(forged).ok
        (run,) = audit(forged).runs
        return run
    finally:
        forged.close()


def _body(events: list[Copied]) -> dict[str, Any]:
    (sealed,) = [e.payload for e in events if e.kind == "report.sealed"]
    return sealed["body"]  # type: ignore[no-any-return]


def _report_fails(run: Any) -> str:
    check = next(c for c in run.checks if c.name == "report")
    assert run.verdict == FAILED and not check.ok, run.checks
    return str(check.detail)


def test_the_honest_run_is_verified(source: Ledger, tmp_path: Path) -> None:
    run = _audit(source, tmp_path, lambda events: None)
    assert run.verdict == VERIFIED, run.checks


def _flip(text: str, field: str) -> str:
    head, _, rest = text.partition(f"{field}:")
    digit = "1" if rest[0] != "1" else "2"
    return f"{head}{field}:{digit}{rest[1:]}"


@pytest.mark.parametrize("field", ["sha256", "blake3"])
def test_a_changed_artifact_digest_fails_report(source: Ledger, tmp_path: Path, field: str) -> None:
    def edit(events: list[Copied]) -> None:
        body = _body(events)
        body["artifacts"][0] = _flip(body["artifacts"][0], field)

    assert "artifacts" in _report_fails(_audit(source, tmp_path, edit))


def test_an_artifact_dropped_or_added_fails_report(source: Ledger, tmp_path: Path) -> None:
    def drop(events: list[Copied]) -> None:
        _body(events)["artifacts"].pop()

    assert "artifacts" in _report_fails(_audit(source, tmp_path / "a", drop))

    def add(events: list[Copied]) -> None:
        body = _body(events)
        body["artifacts"].append(body["artifacts"][0].replace("path:", "path:x"))

    assert "artifacts" in _report_fails(_audit(source, tmp_path / "b", add))


def test_a_changed_listed_size_fails_report(source: Ledger, tmp_path: Path) -> None:
    def edit(events: list[Copied]) -> None:
        for fact in _body(events)["observed"]:
            if fact["kind"] == g.LISTED:
                fact["detail"] = fact["detail"].replace("size:3", "size:4", 1)

    assert "outputs facts" in _report_fails(_audit(source, tmp_path, edit))


def test_artifacts_without_the_commit_fact_fail_report(source: Ledger, tmp_path: Path) -> None:
    def edit(events: list[Copied]) -> None:
        body = _body(events)
        body["observed"] = [f for f in body["observed"] if f["kind"] != g.COMMITTED]

    assert "committed none" in _report_fails(_audit(source, tmp_path, edit))


def test_a_note_and_its_fact_forged_together_still_fail_report(
    source: Ledger, tmp_path: Path
) -> None:
    """The forger changes an artifact's digest everywhere it is written down — the note,
    the note's fact, the report's artifacts — but not the listing it must match."""

    def edit(events: list[Copied]) -> None:
        body = _body(events)
        old = body["artifacts"][0]
        new = _flip(old, "sha256")
        body["artifacts"][0] = new
        for event in events:
            if event.kind == "launcher.phase" and event.payload["line"] == f"# artifact {old}":
                event.payload["line"] = f"# artifact {new}"
        for fact in body["observed"]:
            if fact["kind"] == "launcher_note" and fact["detail"] == f"artifact {old}":
                fact["detail"] = f"artifact {new}"

    detail = _report_fails(_audit(source, tmp_path, edit))
    assert "not the temp-root file listed just before it" in detail, detail


def test_a_summary_that_miscounts_fails_report(source: Ledger, tmp_path: Path) -> None:
    def edit(events: list[Copied]) -> None:
        body = _body(events)
        for event in events:
            line = event.payload.get("line", "") if event.kind == "launcher.phase" else ""
            if line.startswith(f"# {g.SUMMARY} "):
                event.payload["line"] = line.replace("listed:3", "listed:2")
        for fact in body["observed"]:
            if fact["kind"] in ("launcher_note", g.SUMMARY) and "listed:3" in fact["detail"]:
                fact["detail"] = fact["detail"].replace("listed:3", "listed:2")

    assert "outputs_listed listed:2" in _report_fails(_audit(source, tmp_path, edit))
