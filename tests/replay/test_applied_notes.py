"""A run that reached exec must carry the note of every mechanism its plan scheduled.

The forger here removes (or alters) one mechanism's note from a real run's transcript,
and from the report's ``launcher_note`` facts, renumbers the lines, reseals the report
and re-chains the ledger: every digest and the seal re-derive, so only the requirement
that each scheduled mechanism says it was applied (:mod:`bvisor.replay.applied`) can
tell. Before that requirement each of these forgeries replayed as ``verified``.
A run that never reached exec (the host denied it, the launcher faulted) is required
nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bvisor.contract import ExitStatus, Outcome
from bvisor.contract.transcript import HAPPY_PATH
from bvisor.front.api import run_confined
from bvisor.ledger import Ledger, verify
from bvisor.replay import FAILED, VERIFIED, RunAudit, audit
from tests.features import require_feature
from tests.replay.helpers import (
    Copied,
    FakeRun,
    backend,
    base_spec,
    descendants_spec,
    forge,
    record_refusal,
    record_synthetic,
    renumber,
    reseal,
)

Change = Callable[[str], str | None]  # a note's new text, or None to remove it


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ledger]:
    """One real run of the default boundary (private root, Landlock, seccomp, namespaces)."""
    for feature in ("landlock", "seccomp", "userns", "utsns"):
        require_feature(feature)
    ledger = Ledger.open(tmp_path_factory.mktemp("applied") / "ledger", create=True)
    report = run_confined(base_spec(["-c", "echo hi"]), ledger=ledger, backend=backend())
    assert report.body.outcome is Outcome.COMPLETED, report.body
    yield ledger
    ledger.close()


def _notes(source: Ledger) -> list[str]:
    return [
        e.payload["line"][2:]
        for e in source.events()
        if e.kind == "launcher.phase" and e.payload["line"].startswith("# ")
    ]


def _rewrite(change: Change) -> Callable[[list[Copied]], list[Copied]]:
    """The forger: ``change`` every note, in the transcript and in the report's facts."""

    def edit(events: list[Copied]) -> list[Copied]:
        kept: list[Copied] = []
        for event in events:
            line = event.payload.get("line", "") if event.kind == "launcher.phase" else ""
            if line.startswith("# "):
                new = change(line[2:])
                if new is None:
                    continue
                event.payload["line"] = "# " + new
            if event.kind == "report.sealed":
                facts = []
                for fact in event.payload["body"]["observed"]:
                    if fact["kind"] == "launcher_note":
                        new = change(fact["detail"])
                        if new is None:
                            continue
                        fact = {**fact, "detail": new}
                    facts.append(fact)
                event.payload["body"]["observed"] = facts
            kept.append(event)
        renumber(kept, "launcher.phase")
        reseal(kept)
        return kept

    return edit


def _audit(source: Ledger, tmp_path: Path, change: Change) -> RunAudit:
    forged = forge(source, tmp_path / "forged", _rewrite(change))
    try:
        assert verify(forged).ok, "the forger re-chains the ledger"
        (run,) = audit(forged).runs
    finally:
        forged.close()
    return run


def _failed_transcript(run: RunAudit) -> str:
    assert run.verdict == FAILED, [(c.name, c.detail) for c in run.checks]
    failed = [c for c in run.checks if not c.ok]
    # The forgery is otherwise perfect: only the transcript check can tell.
    assert [c.name for c in failed] == ["transcript"], [(c.name, c.detail) for c in failed]
    return failed[0].detail


def _drop(starts: str) -> Change:
    return lambda note: None if note.startswith(starts) else note


def _sub(pattern: str, replacement: str) -> Change:
    def change(note: str) -> str:
        return re.sub(pattern, replacement, note, count=1)

    return change


# (mechanism's entry id, the note's opening words, an alteration the plan contradicts)
CASES = [
    ("linux.rootfs.v1", "private root: ", _sub(r" /usr=/usr:read$", "")),
    ("linux.rootfs.v1", "pivot_root: ", _sub(r"cwd .*$", "cwd /tmp")),
    ("linux.landlock.apply.v2", "landlock abi=", _sub(r"^landlock abi=\d+", "landlock abi=1")),
    ("linux.seccomp.apply.v2", "seccomp denylist", _sub(r"deny_new_tasks=1", "deny_new_tasks=0")),
    ("linux.userns.create.v1", "userns uid_map=", _sub(r"uid_map='0 \d+ 1'", "uid_map='0 7 1'")),
    ("linux.pidns.init.v1", "pid namespace created", _sub(r"^.*$", "pid namespace skipped")),
    ("linux.ipcns.create.v1", "ipc namespace created", _sub(r"created", "shared")),
    # rules v4: the note names the plan's hostname; the host's (or any other) fails
    ("linux.utsns.v1", "uts namespace created", _sub(r"hostname=sandbox", "hostname=buildhost")),
    ("linux.utsns.v1", "uts namespace created", _sub(r"domainname=\(none\)", "domainname=corp")),
    ("linux.caps.drop.v1", "capabilities dropped", _sub(r"bounding, ", "")),
]
IDS = [f"{entry}:{words.strip()}" for entry, words, _ in CASES]


def test_the_honest_run_replays_verified(source: Ledger, tmp_path: Path) -> None:
    (run,) = audit(source).runs
    assert run.verdict == VERIFIED, [(c.name, c.detail) for c in run.checks]
    transcript = next(c for c in run.checks if c.name == "transcript")
    assert "every scheduled mechanism noted as applied" in transcript.detail
    unchanged = _audit(source, tmp_path, lambda note: note)  # the forger's own control
    assert unchanged.verdict == VERIFIED


@pytest.mark.parametrize(("entry", "words", "alter"), CASES, ids=IDS)
def test_a_removed_note_fails_the_run_naming_its_mechanism(
    source: Ledger, tmp_path: Path, entry: str, words: str, alter: Change
) -> None:
    assert any(note.startswith(words) for note in _notes(source)), _notes(source)
    detail = _failed_transcript(_audit(source, tmp_path, _drop(words)))
    assert f"{entry}: no note says it was applied" in detail, detail


@pytest.mark.parametrize(("entry", "words", "alter"), CASES, ids=IDS)
def test_an_altered_note_fails_the_run_naming_its_mechanism(
    source: Ledger, tmp_path: Path, entry: str, words: str, alter: Change
) -> None:
    def change(note: str) -> str:
        return alter(note) if note.startswith(words) else note

    assert any(change(n) != n for n in _notes(source)), "the alteration must change a note"
    detail = _failed_transcript(_audit(source, tmp_path, change))
    assert f"{entry}: " in detail, detail


def test_a_note_moved_past_exec_fails(source: Ledger, tmp_path: Path) -> None:
    def move(events: list[Copied]) -> list[Copied]:
        phases = [e for e in events if e.kind == "launcher.phase"]
        landlock = next(e for e in phases if e.payload["line"].startswith("# landlock abi="))
        events.remove(landlock)
        ready = next(e for e in events if e.payload.get("line") == "ExecSucceeded")
        events.insert(events.index(ready) + 1, landlock)
        renumber(events, "launcher.phase")
        return events

    forged = forge(source, tmp_path / "forged", move)
    try:
        (run,) = audit(forged).runs
    finally:
        forged.close()
    check = next(c for c in run.checks if c.name == "transcript")
    assert run.verdict == FAILED and not check.ok, check
    assert "linux.landlock.apply.v2" in check.detail and "outside the phase" in check.detail


def test_runs_that_never_reached_exec_are_required_nothing(tmp_path: Path) -> None:
    faulted = (
        *HAPPY_PATH[:6],
        "# fault mechanism=landlock errno=38 name=ENOSYS: x",
        "SetupFaulted",
    )
    with Ledger.open(tmp_path / "ledger", create=True) as ledger:
        run_confined(
            descendants_spec(["-c", "true"], exe="/nonexistent/tool"),
            ledger=ledger,
            backend=backend(),
        )
        fake = FakeRun(Outcome.SUPERVISOR_FAULT, None, faulted, b"", applied=False)
        record_synthetic(ledger, fake=fake)
        record_refusal(ledger)
        runs = audit(ledger).runs
    assert [r.verdict for r in runs] == [VERIFIED] * 3, [
        [(c.name, c.detail) for c in r.checks if not c.ok] for r in runs
    ]


def test_a_synthetic_run_without_its_notes_fails(tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "ledger", create=True) as ledger:
        record_synthetic(ledger, fake=FakeRun(exit=ExitStatus.exited(3), applied=False))
        (run,) = audit(ledger).runs
    detail = _failed_transcript(run)
    assert "linux.seccomp.apply.v2: no note says it was applied" in detail, detail


def test_every_launcher_side_mechanism_that_notes_before_exec_is_required() -> None:
    from bvisor.contract import mechanisms as mech
    from bvisor.replay.applied import required_ids

    # exec notes nothing (ExecSucceeded is its evidence); outputs notes after the workload.
    unnoted = {mech.EXEC.id, mech.OUTPUTS.id}
    launcher_side = {p.id for p in mech.CATALOGUE if p.launcher_side} - unnoted
    assert launcher_side <= required_ids(), sorted(launcher_side - required_ids())


def test_a_released_rules_v1_run_stripped_of_its_launcher_and_notes_fails(
    tmp_path: Path,
) -> None:
    """Found by attack: runs naming no measured launcher were exempt (for a frozen test
    ledger), so a real rules-v1 run with its identity note and every mechanism note
    removed, re-chained, replayed verified. Nothing is exempt now."""
    import shutil

    recorded = Path(__file__).resolve().parents[1] / "compat" / "ledgers" / "v1-31a116f"
    copy = tmp_path / "v1"
    copy.mkdir()
    shutil.copy(recorded / "data.mdb", copy / "data.mdb")
    keep = ("workload pid", "workload exit", "workload rusage", "mounts read-only")

    def strip(note: str) -> str | None:
        return note if note.startswith(keep) else None

    with Ledger.open(copy, readonly=True) as source:
        first = audit(source).runs[0].run_id

        def only_first(events: list[Copied]) -> list[Copied]:
            ran = [e for e in events if e.run_id == first]
            return _rewrite(strip)(ran)

        forged = forge(source, tmp_path / "forged", only_first)
    try:
        assert verify(forged).ok
        (run,) = audit(forged).runs
    finally:
        forged.close()
    assert "no note says it was applied" in _failed_transcript(run)


WEAKER = [
    ("linux.landlock.apply.v2", _sub(r" handled=0x[0-9a-f]+ ", " handled=0x1 ")),
    ("linux.landlock.apply.v2", _sub(r" scoped=0x3$", " scoped=0x1")),
    ("linux.seccomp.apply.v2", _sub(r"badarch=kill_process", "badarch=allow")),
    ("linux.seccomp.apply.v2", _sub(r" denied=.*$", " denied=none")),
    # Found by attack: only "something is denied" was checked, and the arch not at all.
    ("linux.seccomp.apply.v2", _sub(r",clone3,", ",")),
    ("linux.seccomp.apply.v2", _sub(r",vfork$", "")),
    ("linux.seccomp.apply.v2", _sub(r"(denied=[^,]+),.*$", r"\1")),
    ("linux.seccomp.apply.v2", _sub(r" arch=\S+ ", " arch=aarch64 ")),
]


@pytest.mark.parametrize(("entry", "alter"), WEAKER, ids=[str(i) for i in range(len(WEAKER))])
def test_a_note_describing_a_weaker_boundary_fails(
    source: Ledger, tmp_path: Path, entry: str, alter: Change
) -> None:
    """Found by attack: a Landlock domain handling only EXECUTE, a scope mask with one of
    the plan's two scopes, a seccomp filter letting other architectures through or
    denying nothing, each replayed verified; then a filter whose flags deny sockets while
    its list denies none, one denying only the baseline group, one built for another
    machine. Oracle: the kernel's own values (the ABI's rights, the scope bits) and what
    a filter of the note's flags denies, as the contract holds them."""
    words = "landlock abi=" if "landlock" in entry else "seccomp denylist"

    def change(note: str) -> str:
        return alter(note) if note.startswith(words) and "rules=0 " not in note else note

    assert any(change(n) != n for n in _notes(source)), "the alteration must change a note"
    assert f"{entry}: " in _failed_transcript(_audit(source, tmp_path, change))
