"""``bvisor-replay --rerun RUN``: re-execute a recorded run here and compare, and the link.

Real runs (the ordinary API path, the real kernel) for what reproduces and what does
not; the oracles are the digests replay re-derives and the ledger's own events. The
link a rerun records (``plan.admitted``'s ``rerun_of``) is forged by hand through the
store API — every hash recomputed, ``ledger verify`` clean — so only the ``rerun_of``
check can catch it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from bvisor.contract import (
    BoundarySpec,
    BudgetRequirements,
    CaptureStreams,
    EnvEntry,
    Environment,
    EnvLiteral,
    EnvPolicy,
    EvidenceRequirements,
    ExitStatus,
    Filesystem,
    FsAccess,
    LaunchWorkload,
    Outcome,
    ProcessWorkload,
    SecretLease,
    StdStreams,
)
from bvisor.contract.profile import ProfileSnapshot
from bvisor.contract.rerun import RerunLink
from bvisor.front.api import run_confined
from bvisor.front.cli.replay_cmd import main
from bvisor.ledger import Ledger, verify
from bvisor.replay import FAILED, VERIFIED, audit
from bvisor.replay.anchored import HeadAnchor, audit_anchored
from tests.features import require_feature
from tests.replay.helpers import (
    SUCCESS_LINES,
    Copied,
    FakeRun,
    forge,
    make_plan,
    record_refusal,
    record_synthetic,
    reseal,
    snapshot,
)

SECRET = "s3cret-lease-value-7f1c"


def _spec(script: str, *, cwd: str | None = None, env: Sequence[EnvEntry] = ()) -> BoundarySpec:
    """``/bin/sh -c script``, no filesystem capability (the host's files), captured output."""
    return BoundarySpec(
        workload=ProcessWorkload(exe="/bin/sh", args=("-c", script), cwd=cwd),
        capabilities=(
            Environment(
                policy=EnvPolicy.exact((EnvEntry("PATH", EnvLiteral("/usr/bin:/bin")), *env))
            ),
        ),
        controls=(LaunchWorkload(), CaptureStreams(streams=StdStreams.capture_out_err())),
        budgets=BudgetRequirements.none(),
        evidence=EvidenceRequirements(),
    )


def _record(ledger: Path, spec: BoundarySpec, **kwargs: Any) -> bytes:
    report = run_confined(spec, ledger=ledger, key=False, **kwargs)
    return report.body.attempt_id


def _cli(capsys: pytest.CaptureFixture[str], ledger: Path, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["--ledger", str(ledger), *args])
    out, err = capsys.readouterr()
    return code, out, err


def _runs(ledger: Path) -> list[Any]:
    with Ledger.open(ledger, readonly=True) as store:
        return audit(store).runs


def _rows(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["name"]: row for row in document["rows"]}


# -- what reproduces -----------------------------------------------------------------------


def test_a_deterministic_run_reproduces(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ledger = tmp_path / "ledger"
    old = _record(ledger, _spec("echo hello; echo to-err >&2"))
    code, out, err = _cli(capsys, ledger, "--json", "--rerun", old.hex()[:10])
    assert code == 0, (out, err)
    document = json.loads(out)
    assert set(document) == {
        "recorded_run", "rerun_run", "same", "rows", "differs", "profile_differences", "notes",
    }  # fmt: skip
    assert document["recorded_run"] == old.hex() and document["same"] is True
    assert document["differs"] == [] and document["profile_differences"] == []
    rows = _rows(document)
    for name in ("h_p", "h_a", "h_l", "plan_id", "rules", "outcome", "exit"):
        assert rows[name]["same"], rows[name]
    assert rows["exit"]["rerun"] == "code 0" and rows["outcome"]["rerun"] == "completed"
    assert rows["stream stdout"]["recorded"] == rows["stream stdout"]["rerun"]
    assert rows["stream stdout"]["recorded"].endswith("(6 bytes)")
    # The rerun is an ordinary run of the same ledger, naming the run it re-executes.
    runs = _runs(ledger)
    assert [r.run_id for r in runs] == [old, bytes.fromhex(document["rerun_run"])]
    assert [r.verdict for r in runs] == [VERIFIED, VERIFIED], [r.checks for r in runs]
    link = runs[1].checks[-1]
    assert link.name == "rerun_of" and link.ok and old.hex()[:16] in link.detail
    assert "rerun_of" not in [c.name for c in runs[0].checks]
    with Ledger.open(ledger, readonly=True) as store:
        kinds = [e.kind for e in store.run_events(runs[1].run_id)]
        admitted = store.run_events(runs[1].run_id)[0].payload
    assert kinds[0] == "plan.admitted" and kinds[-1] == "report.sealed"
    assert admitted["rerun_of"]["run_id"] == old
    # The table says the same.
    code, out, _ = _cli(capsys, ledger, "--rerun", old.hex()[:10])
    assert code == 0 and "everything compared matches" in out and "= stream stdout" in out


def test_a_random_run_differs_by_its_stream_digest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ledger = tmp_path / "ledger"
    old = _record(ledger, _spec("head -c 16 /dev/urandom | od -An -tx1"))
    code, out, err = _cli(capsys, ledger, "--json", "--rerun", old.hex())
    assert code == 1, (out, err)
    document = json.loads(out)
    assert document["same"] is False and document["differs"] == ["stream stdout"]
    stdout = _rows(document)["stream stdout"]
    assert stdout["recorded"] != stdout["rerun"]
    assert len(stdout["recorded"].split()[0]) == 64 and len(stdout["rerun"].split()[0]) == 64
    code, out, _ = _cli(capsys, ledger, "--rerun", old.hex())
    assert code == 1 and "1 differ" in out and "! stream stdout" in out


def test_leases_are_asked_for_again_and_never_read_from_the_ledger(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = tmp_path / "ledger"
    spec = _spec('printf %s "$TOKEN" | wc -c', env=(EnvEntry("TOKEN", SecretLease("api-token")),))
    old = _record(ledger, spec, secrets={"api-token": SECRET})
    code, out, err = _cli(capsys, ledger, "--json", "--rerun", old.hex())
    assert code == 125 and "'api-token'" in err and "--lease api-token=HOSTVAR" in err
    assert json.loads(out)["error"]["code"] == "lease-missing"
    assert len(_runs(ledger)) == 1  # refused before anything was planned or recorded
    code, _, err = _cli(capsys, ledger, "--rerun", old.hex(), "--lease", "other=HOME")
    assert code == 2 and "no secret lease 'other'" in err
    monkeypatch.setenv("RERUN_TEST_TOKEN", SECRET)
    code, out, err = _cli(
        capsys, ledger, "--json", "--rerun", old.hex(), "--lease", "api-token=RERUN_TEST_TOKEN"
    )
    assert code == 0, (out, err)
    assert [r.verdict for r in _runs(ledger)] == [VERIFIED, VERIFIED]
    data = b"".join(p.read_bytes() for p in ledger.iterdir() if p.is_file())
    assert SECRET.encode() not in data


# -- what cannot be re-executed --------------------------------------------------------------


def test_a_recorded_working_directory_that_is_gone_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ledger, work = tmp_path / "ledger", tmp_path / "work"
    work.mkdir()
    old = _record(ledger, _spec("pwd", cwd=str(work)))
    shutil.rmtree(work)
    code, out, err = _cli(capsys, ledger, "--json", "--rerun", old.hex())
    assert code == 125 and f"{work}, which no longer exists" in err
    assert json.loads(out)["error"]["code"] == "root-missing"
    assert len(_runs(ledger)) == 1


def _v1_profile() -> ProfileSnapshot:
    from bvisor.planner.rules.v1.ceiling import linux_ceiling

    real = snapshot()
    return ProfileSnapshot(
        backend=real.backend, facts=real.facts, ceiling=linux_ceiling(real.facts)
    )


def test_a_spec_these_rules_refuse_is_refused_naming_the_planners_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run recorded by rules v1 whose spec the current rules refuse (a root in /proc)."""
    from bvisor.planner.planning import plan_boundary
    from bvisor.planner.rules import RELEASED

    base = _spec("true")
    spec = BoundarySpec(
        workload=base.workload,
        capabilities=(*base.capabilities, Filesystem(access=FsAccess.READ, roots=("/proc",))),
        controls=base.controls,
        budgets=base.budgets,
        evidence=base.evidence,
    )
    plan = plan_boundary(spec, _v1_profile(), RELEASED[1])
    ledger = tmp_path / "ledger"
    with Ledger.open(ledger, create=True) as store:
        old = record_synthetic(store, plan=plan, fake=_completed())
    assert [r.verdict for r in _runs(ledger)] == [VERIFIED]
    code, out, err = _cli(capsys, ledger, "--json", "--rerun", old.hex())
    assert code == 125, (out, err)
    assert "this host refuses the recorded spec: invalid-policy [filesystem]" in err
    error = json.loads(out)["error"]
    assert error["code"] == "invalid-policy" and error["requirement"] == "filesystem"
    # The refusal is recorded as any refusal is (and names no run: nothing ran).
    runs = _runs(ledger)
    assert [(r.verdict, r.outcome) for r in runs] == [
        (VERIFIED, "completed"),
        (VERIFIED, "refused"),
    ]


def _completed(stdout: bytes = b"") -> FakeRun:
    return FakeRun(
        outcome=Outcome.COMPLETED,
        exit=ExitStatus.exited(0),
        lines=(*SUCCESS_LINES, "# workload exit code=0"),
        stdout=stdout,
    )


def test_a_run_that_does_not_verify_is_not_re_executed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "source"
    old = _record(source, _spec("echo hello"))

    def lie(events: list[Copied]) -> None:
        for event in events:
            if event.kind in ("run.terminal", "report.sealed"):
                value = event.payload if event.kind == "run.terminal" else event.payload["body"]
                value["exit"] = {"code": 7, "signal": None}
                value["outcome"] = "failed"
        reseal(events)

    with Ledger.open(source, readonly=True) as store:
        forge(store, tmp_path / "forged", lie).close()
    code, out, err = _cli(capsys, tmp_path / "forged", "--json", "--rerun", old.hex())
    assert code == 1 and "does not verify (failed): report:" in err
    assert json.loads(out)["error"]["code"] == "not-verified"
    assert len(_runs(tmp_path / "forged")) == 1


def test_unknown_ambiguous_and_refused_runs_are_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ledger = tmp_path / "ledger"
    with Ledger.open(ledger, create=True) as store:
        for tail in (b"\x01", b"\x02"):
            record_synthetic(store, attempt_id=b"\xab" + tail * 31)
        refused = record_refusal(store)
    code, out, err = _cli(capsys, ledger, "--json", "--rerun", "ab")
    assert code == 2 and "ab" in err and json.loads(out)["error"]["code"] == "usage"
    unknown = "cd" if not refused.hex().startswith("cd") else "ce"
    code, _, err = _cli(capsys, ledger, "--rerun", unknown)
    assert code == 2 and "no run" in err
    code, _, err = _cli(capsys, ledger, "--rerun", refused.hex())
    assert code == 2 and "refused at admission" in err
    code, _, err = _cli(capsys, ledger, "--rerun", "ab01", "--last")
    assert code == 2 and "--rerun" in err
    code, _, err = _cli(capsys, ledger, "--lease", "a=HOME")
    assert code == 2 and "--lease is for --rerun" in err
    code, _, err = _cli(capsys, ledger, "--rerun", "ab01", "--lease", "nonsense")
    assert code == 2 and "REF=HOSTVAR" in err


# -- the link, forged -------------------------------------------------------------------------


@pytest.fixture
def linked(tmp_path: Path) -> tuple[Ledger, bytes, RerunLink]:
    """A ledger with one synthetic run and the link a rerun of it records."""
    store = Ledger.open(tmp_path / "linked", create=True)
    old = record_synthetic(store, fake=_completed(b"hi\n"))
    events = store.run_events(old)
    link = RerunLink(old, events[0].payload["plan_id"], events[-1].payload["seal"])
    return store, old, link


def _link_check(store: Ledger, run_id: bytes) -> Any:
    assert verify(store).ok
    (run,) = [r for r in audit(store).runs if r.run_id == run_id]
    check = run.checks[-1]
    assert check.name == "rerun_of"
    return run, check


def test_an_honest_hand_written_link_verifies(linked: tuple[Ledger, bytes, RerunLink]) -> None:
    store, _, link = linked
    new = record_synthetic(store, fake=_completed(b"hi\n"), rerun_of=link)
    run, check = _link_check(store, new)
    assert run.verdict == VERIFIED and check.ok, run.checks
    # Proven by an anchor (O(run + log n)), the link is checked the same way.
    (anchored,) = audit_anchored(store, [new], HeadAnchor(_head(store))).runs
    assert anchored.verdict == VERIFIED and anchored.checks[-1].name == "rerun_of"


def _head(store: Ledger) -> Any:
    head = store.head()
    assert head is not None
    return head


def _zeroed(value: bytes) -> bytes:
    return bytes(32) if value != bytes(32) else b"\x01" * 32


@pytest.mark.parametrize(
    ("forgery", "said"),
    [
        ("nonexistent", "the ledger holds no such run"),
        ("plan_id", "is not run"),
        ("seal", "is not run"),
        ("itself", "names itself"),
        ("later", "a rerun re-executes a run recorded before it"),
        ("refused", "which was refused"),
    ],
)
def test_a_forged_link_fails_replay(
    linked: tuple[Ledger, bytes, RerunLink], forgery: str, said: str
) -> None:
    store, old, link = linked
    attempt = os.urandom(32)
    later = os.urandom(32)
    if forgery == "nonexistent":
        link = RerunLink(os.urandom(32), link.plan_id, link.seal)
    elif forgery == "plan_id":
        link = RerunLink(old, _zeroed(link.plan_id), link.seal)
    elif forgery == "seal":
        link = RerunLink(old, link.plan_id, _zeroed(link.seal))
    elif forgery == "itself":
        link = RerunLink(attempt, link.plan_id, link.seal)
    elif forgery == "later":
        link = RerunLink(later, link.plan_id, link.seal)
    elif forgery == "refused":
        link = RerunLink(record_refusal(store), link.plan_id, link.seal)
    record_synthetic(store, fake=_completed(b"hi\n"), attempt_id=attempt, rerun_of=link)
    if forgery == "later":
        record_synthetic(store, fake=_completed(b"hi\n"), attempt_id=later)
    run, check = _link_check(store, attempt)
    assert run.verdict == FAILED and not check.ok and said in check.detail, check
    (anchored,) = audit_anchored(store, [attempt], HeadAnchor(_head(store))).runs
    assert anchored.verdict == FAILED and said in anchored.checks[-1].detail
    # Every other check passes: only the link is the lie.
    assert all(c.ok for c in run.checks if c.name != "rerun_of"), run.checks


def test_the_old_run_rewritten_after_the_rerun_breaks_the_link(
    linked: tuple[Ledger, bytes, RerunLink], tmp_path: Path
) -> None:
    """A forger who edits the re-executed run's report (and reseals it) cuts the link."""
    store, old, link = linked
    new = record_synthetic(store, fake=_completed(b"hi\n"), rerun_of=link)

    def edit(events: list[Copied]) -> None:
        for event in events:
            if event.run_id == old and event.kind == "report.sealed":
                event.payload["body"]["findings"] = ["nothing to see"]
        reseal(events)

    forged = forge(store, tmp_path / "forged", edit)
    try:
        _, check = _link_check(forged, new)
        assert not check.ok and "seal" in check.detail
    finally:
        forged.close()


def test_the_link_is_read_strictly(linked: tuple[Ledger, bytes, RerunLink], tmp_path: Path) -> None:
    """An extra key in the link, or a link on a refusal, is not a run replay accepts."""
    store, _, link = linked
    new = record_synthetic(store, fake=_completed(b"hi\n"), rerun_of=link)

    def extra(events: list[Copied]) -> None:
        for event in events:
            if event.run_id == new and event.kind == "plan.admitted":
                event.payload["rerun_of"]["note"] = "trust me"

    forged = forge(store, tmp_path / "extra", extra)
    try:
        (run,) = [r for r in audit(forged).runs if r.run_id == new]
        grammar = next(c for c in run.checks if c.name == "grammar")
        assert not grammar.ok and "rerun_of.note" in grammar.detail
    finally:
        forged.close()
    refused = record_refusal(store)

    def on_refusal(events: list[Copied]) -> None:
        for event in events:
            if event.run_id == refused:
                event.payload["rerun_of"] = link.to_value()

    forged = forge(store, tmp_path / "refused", on_refusal)
    try:
        (run,) = [r for r in audit(forged).runs if r.run_id == refused]
        grammar = next(c for c in run.checks if c.name == "grammar")
        assert not grammar.ok and "rerun_of" in grammar.detail
    finally:
        forged.close()


# -- outputs ----------------------------------------------------------------------------------


def test_listed_outputs_and_artifacts_are_compared_by_digest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from bvisor.contract import CommitArtifact, Durability, ListOutputs
    from bvisor.front.defaults import default_spec

    for feature in ("landlock", "pidns", "seccomp", "netns"):
        require_feature(feature)
    work, ledger = tmp_path / "work", tmp_path / "ledger"
    work.mkdir()
    monkeypatch.setenv("BVISOR_ARTIFACTS", str(tmp_path / "artifacts"))
    script = "printf fixed > /tmp/same.txt; head -c 16 /dev/urandom > /tmp/random.bin"
    spec = default_spec(["/bin/sh", "-c", script], cwd=str(work))
    spec = dataclasses.replace(
        spec, controls=(*spec.controls, ListOutputs(), CommitArtifact(Durability.BEST_EFFORT))
    )
    old = _record(ledger, spec)
    code, out, err = _cli(capsys, ledger, "--json", "--rerun", old.hex())
    assert code == 1, (out, err)
    rows = _rows(json.loads(out))
    listed = {name: row for name, row in rows.items() if name.startswith(("output ", "artifact "))}
    same = sorted(name for name, row in listed.items() if row["same"])
    differ = sorted(name for name, row in listed.items() if not row["same"])
    assert [n.rsplit("/", 1)[-1].rsplit(" ", 1)[-1] for n in same] == ["same.txt", "same.txt"]
    assert [n.rsplit("/", 1)[-1].rsplit(" ", 1)[-1] for n in differ] == ["random.bin"] * 2
    fixed = hashlib.sha256(b"fixed").hexdigest()
    assert all(row["recorded"] == fixed for name, row in listed.items() if name in same)
    assert json.loads(out)["differs"] == differ


# -- what the caller's terminal is sent ----------------------------------------------------

HOSTILE = "w\x1b]0;PWNED\x07\x1b[31mred\x9b2J\u202e"


def test_a_recorded_name_reaches_the_terminal_shown_not_obeyed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A recorded spec names a working directory whose name holds an OSC (retitle the
    terminal), a CSI, a one-character C1 CSI and a bidi override — a name any user can
    give a directory, recorded honestly. When it is gone, the refusal names it: every
    character a terminal obeys is written as an escape on stderr (JSON escapes it too),
    and the table of a rerun that ran carries no control character either."""
    ledger, work = tmp_path / "ledger", tmp_path / HOSTILE
    work.mkdir()
    old = _record(ledger, _spec("pwd", cwd=str(work)))
    code, out, err = _cli(capsys, ledger, "--rerun", old.hex())
    assert code == 0, (out, err)
    shown = out + err
    assert not [c for c in shown if (ord(c) < 0x20 and c != "\n") or 0x7F <= ord(c) < 0xA0]
    shutil.rmtree(work)
    code, out, err = _cli(capsys, ledger, "--rerun", old.hex())
    assert code == 125 and "\x1b" not in err and "\x9b" not in err and "\u202e" not in err
    assert "w\\x1b]0;PWNED\\x07\\x1b[31mred\\x9b2J\\u202e, which no longer exists" in err
    code, out, err = _cli(capsys, ledger, "--json", "--rerun", old.hex())
    assert code == 125 and "\x1b" not in out + err
    assert json.loads(out)["error"]["message"].endswith(
        f"{work}, which no longer exists on this host"
    )


def test_a_run_that_had_a_terminal_is_refused_not_recorded_as_denied(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run recorded with ``bvisor run --tty`` planned a terminal for the workload; a
    rerun lends none (it reads empty stdin), so re-executing it could only be denied by
    the host and recorded as a denied run that "differs". It is refused (125) naming
    why, and nothing is recorded."""
    import pty
    import subprocess
    import sys

    ledger, work = tmp_path / "ledger", tmp_path / "work"
    work.mkdir()
    master, slave = pty.openpty()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "bvisor.front.cli.main", "run", "--tty",
             "--ledger", str(ledger), "--", "/bin/true"],
            cwd=work, stdin=slave, stdout=slave, stderr=slave, timeout=120,
            env={**os.environ, "BVISOR_SERVE": "0"},
        )  # fmt: skip
    finally:
        os.close(slave)
        os.close(master)
    assert done.returncode == 0
    (old,) = [run.run_id for run in _runs(ledger)]
    code, out, err = _cli(capsys, ledger, "--json", "--rerun", old.hex())
    assert code == 125, (out, err)
    assert "terminal" in err and json.loads(out)["error"]["code"] == "terminal"
    assert len(_runs(ledger)) == 1


def test_what_a_rerun_will_run_is_said_before_it_runs(tmp_path: Path) -> None:
    """A verified chain proves order, not authorship: whoever could write the ledger chose
    the recorded spec (a write root over your home, no filesystem capability at all), and
    the rerun runs it as you. Found by attack: the rerun said nothing of what it was about
    to run, only the digests afterwards. Its command, working directory, roots, network
    and the families it leaves unconfined are now on stderr before it starts: the oracle
    is the disk (the workload's marker does not exist yet when the lines arrive), and a
    recorded newline cannot add a line of its own."""
    import subprocess
    import sys

    ledger, work = tmp_path / "ledger", tmp_path / "work"
    work.mkdir()
    marker = work / "ran"
    old = _record(ledger, _spec(f"sleep 1; touch {marker}\nFAKE LINE", cwd=str(work)))
    marker.unlink()
    process = subprocess.Popen(
        [sys.executable, "-m", "bvisor.front.cli.replay_cmd", "--ledger", str(ledger),
         "--rerun", old.hex()],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "BVISOR_SERVE": "0"},
    )  # fmt: skip
    assert process.stderr is not None and process.stdout is not None
    first = process.stderr.readline()
    ran_before = marker.exists()
    process.stdout.read()
    err = process.stderr.read()
    process.wait(timeout=120)
    assert process.returncode in (0, 1), (first, err)
    assert not ran_before, "the announcement came after the workload ran"
    assert first.startswith(f"bvisor-replay: rerunning {old.hex()[:16]} as recorded: /bin/sh -c")
    assert "\\nFAKE LINE" in first and f"(in {work})" in first
    assert "not confined: filesystem, network" in err
    assert not [line for line in (first + err).splitlines() if line.startswith("FAKE")]
    assert marker.exists()


def test_the_announcement_names_argv0_and_the_whole_environment() -> None:
    """Found by attack on the announcement: a recorded spec chose an argv[0] and an
    environment the lines never named, so "/bin/sh -c 'echo hi'" was said of a run whose
    shell first sourced BASH_ENV, or whose multi-call binary ran as another program.
    The lines now name argv[0] when the spec sets one, and every environment entry (a
    lease by its reference, never a value), each escaped as the rest."""
    from bvisor.front.cli.rerun_cmd import announcement

    spec = BoundarySpec(
        workload=ProcessWorkload(exe="/bin/sh", args=("-c", "echo hi"), argv0="-sh"),
        capabilities=(
            Environment(
                policy=EnvPolicy.exact(
                    (
                        EnvEntry("BASH_ENV", EnvLiteral("/tmp/their script.sh")),
                        EnvEntry("TOKEN", SecretLease("api")),
                    )
                )
            ),
        ),
        controls=(LaunchWorkload(), CaptureStreams(streams=StdStreams.capture_out_err())),
        budgets=BudgetRequirements.none(),
        evidence=EvidenceRequirements(),
    )
    lines = announcement(b"\x01" * 32, make_plan(spec))
    assert lines[0].endswith("as recorded: /bin/sh -c 'echo hi' (as argv[0] -sh)"), lines
    assert "  environment: 'BASH_ENV=/tmp/their script.sh', TOKEN from lease api" in lines


def test_a_rerun_names_the_runs_its_checkpoint_is_the_first_to_cover(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rerun with a key configured signs its record like any run; found by attack, it
    dropped what the signer said of it, so a run forged since the last checkpoint (by
    whoever could write the ledger, holding no key) was covered by the rerun's checkpoint
    with nothing said, and the owner's next run no longer names it either. The oracle is
    the ledger: its newest checkpoint is the rerun's and covers the forged run, whose id
    the rerun's stderr names."""
    from tests.replay.helpers import backend, base_spec
    from tests.transparency.kit import keypair

    _signer, key, _pub = keypair(tmp_path / "keys")
    ledger = tmp_path / "ledger"
    old = run_confined(base_spec(), ledger=ledger, key=key, backend=backend()).body.attempt_id
    with Ledger.open(ledger) as handle:  # a writer without the key
        forged = record_synthetic(handle, fake=FakeRun())
    monkeypatch.setenv("BVISOR_KEY", str(key))
    code, out, err = _cli(capsys, ledger, "--rerun", old.hex())
    assert code == 0, (out, err)
    with Ledger.open(ledger, readonly=True) as handle:
        newest = handle.checkpoints()[-1].checkpoint
        forged_last = handle.run_events(forged)[-1].seq
        rerun_last = handle.head()
    assert rerun_last is not None and newest.size == rerun_last.seq + 1 > forged_last
    assert "warning:" in err and forged.hex()[:16] in err, err
    assert old.hex()[:16] not in err.split("warning:", 1)[1]


def test_a_key_that_cannot_be_used_refuses_the_rerun_before_it_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A configured key that cannot be loaded refuses the rerun with nothing run or
    recorded (the ledger's own count is the oracle); it was reported as "the rerun's
    record is incomplete", as if the workload had run."""
    ledger = tmp_path / "ledger"
    old = _record(ledger, _spec("true"))
    monkeypatch.setenv("BVISOR_KEY", str(tmp_path / "no-such-key"))
    code, out, err = _cli(capsys, ledger, "--rerun", old.hex())
    assert code == 125 and "refused:" in err and "incomplete" not in err, (out, err)
    assert len(_runs(ledger)) == 1
