"""The tamper catalogue: what an attacker with write access to the ledger but not the key
can do after a checkpoint, and which command catches it, naming the place.

| tamper                              | caught by                                              |
|-------------------------------------|--------------------------------------------------------|
| rewrite after a checkpoint          | verify (stored checkpoints), verify --checkpoint,      |
|   (re-chained, tree rebuilt)        | replay --checkpoint RUN, consistency, checkpoint,      |
|                                     | bvisor-witness (422)                                   |
| forged run appended after it        | verify --checkpoint/--pub names it "not yet covered"   |
|                                     | (--require-covered: exit 1), replay --checkpoint RUN   |
| deleted tail (checkpoints too)      | verify --checkpoint (checkpoint-beyond-head), replay   |
|                                     | --checkpoint, consistency, bvisor-witness (409/400)    |
| swapped key (attacker signs)        | verify --pub (checkpoint-signature), replay --bundle   |
|                                     | --pub, bvisor-witness (403), checkpoint (no --rotate)  |
| history replaced under a fresh id   | the key: checkpoint and run refuse to sign it (no      |
|   (checkpoints gone, even a link)   | --new-log); verify --checkpoint (another log)          |

The attacker is ``tests.transparency.kit``: every edit re-chains the ledger and rebuilds the
stored tree, so plain ``verify`` has nothing to find unless a signed checkpoint is kept.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from bvisor.contract.report import BoundaryReportBody
from bvisor.front.cli.ledger_cmd import main as ledger_main
from bvisor.front.cli.replay_cmd import main as replay_main
from bvisor.front.cli.witness_cmd import main as witness_main
from bvisor.ledger import Ledger, verify
from bvisor.ledger.keys import load_signer, load_verifier, remember, remembered
from bvisor.ledger.record import Event
from tests.replay.helpers import FakeRun, record_synthetic
from tests.transparency.kit import call, call_json, drop_tail, keypair, raw, rewrite_from


@dataclass
class Signed:
    """A ledger of three runs, each followed by a checkpoint (as ``bvisor run --key`` does),
    and what an auditor keeps elsewhere: the public key and the last checkpoint."""

    path: Path
    key: Path
    pub: Path
    runs: list[bytes]
    ends: list[int]  # tree size after each run
    kept: Path  # the last checkpoint, kept elsewhere


@pytest.fixture
def signed(tmp_path: Path) -> Signed:
    signer, key, pub = keypair(tmp_path / "keys")
    path = tmp_path / "ledger"
    runs, ends = [], []
    with Ledger.open(path, create=True) as ledger:
        for _ in range(3):  # each run's record, then its checkpoint, as the key's holder signs
            runs.append(record_synthetic(ledger, fake=FakeRun()))  # failed, exit 3
            memory = remembered(key, ledger.ledger_id, path, new_log=False)
            checkpoint = ledger.checkpoint(signer, remembered=memory)
            remember(key, checkpoint, path)
            ends.append(checkpoint.checkpoint.size)
        kept = tmp_path / "elsewhere.checkpoint"
        kept.write_text(ledger.checkpoints()[-1].text)
    return Signed(path, key, pub, runs, ends, kept)


def _completed(run_id: bytes):  # type: ignore[no-untyped-def]
    """The forger's edit: run ``run_id`` failed (exit 3); make it completed, resealed."""

    def edit(event: Event) -> object | None:
        if event.run_id != run_id or not isinstance(event.payload, dict):
            return None
        if event.kind == "run.terminal":
            return dict(event.payload, outcome="completed", exit={"code": 0, "signal": None})
        if event.kind == "report.sealed":
            body = dict(
                event.payload["body"], outcome="completed", exit={"code": 0, "signal": None}
            )  # type: ignore[arg-type]
            return {"body": body, "seal": BoundaryReportBody.from_value(body).seal()}
        return None

    return edit


def _delete_checkpoints(path: Path, larger_than: int) -> None:
    with raw(path) as (txn, dbs):
        for key, _ in list(txn.cursor(db=dbs["checkpoints"])):
            if int.from_bytes(bytes(key)[:8], "big") > larger_than:
                txn.delete(bytes(key), db=dbs["checkpoints"])


def test_the_attacker_leaves_nothing_for_plain_verify_or_replay(signed: Signed) -> None:
    rewrite_from(signed.path, _completed(signed.runs[1]))
    _delete_checkpoints(signed.path, 0)
    assert verify(signed.path).ok  # a re-chained ledger is a valid chain
    assert replay_main(["--ledger", str(signed.path)]) == 0  # and a meaningful one


# -- 1. rewrite after a checkpoint ------------------------------------------------------------


def test_rewrite_is_located_by_the_checkpoints_the_ledger_still_holds(
    signed: Signed, capsys: pytest.CaptureFixture[str]
) -> None:
    changed = rewrite_from(signed.path, _completed(signed.runs[1]))
    assert changed and signed.ends[0] <= changed[0] < signed.ends[1]
    code, doc = call_json(capsys, ledger_main, "verify", "--ledger", str(signed.path))
    assert code == 1
    found = [f for f in doc["findings"] if f["code"] == "checkpoint-mismatch"]
    assert found and found[0]["seq"] == signed.ends[0]
    assert signed.runs[1].hex()[:16] in found[0]["detail"]
    assert signed.runs[0].hex()[:16] not in found[0]["detail"]
    assert {"from": signed.ends[0], "to": signed.ends[1] - 1} in doc["rewritten"]
    # the runs before the change are still proven, the changed one is not
    code, doc = call_json(capsys, replay_main, "--ledger", str(signed.path))
    verdicts = {r["run_id"]: r["verdict"] for r in doc["runs"]}
    assert verdicts[signed.runs[0].hex()] == "verified"
    assert verdicts[signed.runs[1].hex()] == "failed"


def test_rewrite_with_the_checkpoints_deleted_is_caught_by_one_kept_elsewhere(
    signed: Signed, capsys: pytest.CaptureFixture[str]
) -> None:
    rewrite_from(signed.path, _completed(signed.runs[1]))
    _delete_checkpoints(signed.path, signed.ends[0])  # a careful attacker
    pub, kept, ledger = str(signed.pub), str(signed.kept), str(signed.path)
    code, doc = call_json(
        capsys, ledger_main, "verify", "--ledger", ledger, "--checkpoint", kept, "--pub", pub
    )
    assert code == 1
    (found,) = [f for f in doc["findings"] if f["code"] == "checkpoint-mismatch"]
    # the first checkpoint still holds, so the change lies after it
    assert found["seq"] == signed.ends[0] and signed.runs[1].hex()[:16] in found["detail"]
    # one run against the kept checkpoint: O(run + log n), and named
    code, out, _ = call(
        capsys,
        replay_main,
        "--ledger",
        ledger,
        "--checkpoint",
        kept,
        "--pub",
        pub,
        signed.runs[1].hex(),
    )
    assert code == 1 and "no longer has the signed root" in out
    code, out, _ = call(
        capsys,
        replay_main,
        "--ledger",
        ledger,
        "--checkpoint",
        kept,
        "--pub",
        pub,
        signed.runs[0].hex(),
    )
    assert code == 0 and "verified" in out
    # no consistency proof from the kept checkpoint exists any more
    code, _, err = call(capsys, ledger_main, "consistency", kept, "--ledger", ledger)
    assert code == 1 and "does not extend OLD" in err and "changed" in err
    # and the owner's next checkpoint is refused: the tree no longer extends the last one
    code, _, err = call(
        capsys, ledger_main, "checkpoint", "--ledger", ledger, "--key", str(signed.key)
    )
    assert code == 1 and "refusing to sign" in err


def test_a_witness_refuses_the_rewritten_history(
    signed: Signed, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state, ledger, kept = str(tmp_path / "witness"), str(signed.path), str(signed.kept)
    origin = signed.kept.read_text().splitlines()[0]
    assert call(capsys, witness_main, "--state", state, "init", "--name", "w.example/w")[0] == 0
    assert (
        call(capsys, witness_main, "--state", state, "add-log", origin, "--pub", str(signed.pub))[0]
        == 0
    )
    request = tmp_path / "request"
    code, out, _ = call(
        capsys, ledger_main, "consistency", "--old-size", "0", kept, "--ledger", ledger
    )
    request.write_text(out)
    assert call(capsys, witness_main, "--state", state, "add-checkpoint", str(request))[0] == 0
    # the attacker rewrites run 2 and gets the owner to sign the rewritten tree: refused
    # above; so the attacker can only replay old checkpoints or forge proofs
    with Ledger.open(signed.path) as handle:
        record_synthetic(handle, fake=FakeRun())
        honest = handle.checkpoint(load_signer(signed.key))
    rewrite_from(signed.path, _completed(signed.runs[1]))
    forged = tmp_path / "forged-request"
    forged.write_text(  # the old size the witness holds, a made-up proof, the honest checkpoint
        f"old {signed.ends[-1]}\n"
        + "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n"
        + honest.text
    )
    code, out, err = call(capsys, witness_main, "--state", state, "add-checkpoint", str(forged))
    assert code == 1 and "(422)" in err


# -- 2. a forged run appended after the checkpoint --------------------------------------------


def test_forged_run_after_the_checkpoint_is_named_not_yet_covered(
    signed: Signed, capsys: pytest.CaptureFixture[str]
) -> None:
    with Ledger.open(signed.path) as handle:  # the attacker can append; not sign
        forged = record_synthetic(handle, fake=FakeRun())
    ledger, kept, pub = str(signed.path), str(signed.kept), str(signed.pub)
    code, out, _ = call(
        capsys, ledger_main, "verify", "--ledger", ledger, "--checkpoint", kept, "--pub", pub
    )
    assert (
        code == 0 and "not yet covered by a signed checkpoint" in out and forged.hex()[:16] in out
    )
    code, doc = call_json(
        capsys, ledger_main, "verify", "--ledger", ledger, "--pub", pub, "--require-covered"
    )
    assert code == 1 and doc["checkpoint"]["uncovered_runs"] == [forged.hex()]
    assert doc["checkpoint"]["uncovered"]["from"] == signed.ends[-1]
    code, out, _ = call(capsys, replay_main, "--ledger", ledger, "--pub", pub, "--last")
    assert code == 1 and "not yet covered by a signed checkpoint" in out
    code, out, _ = call(capsys, replay_main, "--ledger", ledger, "--pub", pub)
    assert code == 1 and "not yet covered by a signed checkpoint" in out
    assert call(capsys, replay_main, "--ledger", ledger, "--pub", pub, signed.runs[2].hex())[0] == 0


def test_coverage_by_checkpoints_whose_signatures_nobody_checked_is_said_so(
    signed: Signed, capsys: pytest.CaptureFixture[str]
) -> None:
    """Found by attack: ``verify --checkpoint FILE`` without ``--pub`` said "signature not
    checked" and then "signed checkpoints cover all N events"."""
    ledger, kept = str(signed.path), str(signed.kept)
    code, out, _ = call(capsys, ledger_main, "verify", "--ledger", ledger, "--checkpoint", kept)
    assert code == 0 and "signed checkpoints" not in out, out
    assert "checkpoints cover all" in out and "signatures not checked: no --pub" in out, out
    code, doc = call_json(capsys, ledger_main, "verify", "--ledger", ledger, "--checkpoint", kept)
    assert doc["checkpoint"]["signatures_checked"] is False
    code, doc = call_json(
        capsys, ledger_main, "verify", "--ledger", ledger, "--pub", str(signed.pub)
    )
    assert doc["checkpoint"]["signatures_checked"] is True


# -- 3. the tail deleted ----------------------------------------------------------------------


def test_deleted_tail_is_caught_by_the_checkpoint_kept_elsewhere(
    signed: Signed, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    drop_tail(signed.path, signed.ends[1])  # run 3 and its checkpoint gone, head fixed
    ledger, kept, pub = str(signed.path), str(signed.kept), str(signed.pub)
    assert verify(signed.path).ok  # a shorter chain is a valid chain
    code, doc = call_json(
        capsys, ledger_main, "verify", "--ledger", ledger, "--checkpoint", kept, "--pub", pub
    )
    assert code == 1
    (found,) = [f for f in doc["findings"] if f["code"] == "checkpoint-beyond-head"]
    assert found["seq"] == signed.ends[1]
    assert f"events {signed.ends[1]}..{signed.ends[2] - 1} were removed" in found["detail"]
    code, out, _ = call(capsys, replay_main, "--ledger", ledger, "--checkpoint", kept, "--last")
    assert code == 1 and "were removed" in out
    code, _, err = call(capsys, ledger_main, "consistency", kept, "--ledger", ledger)
    assert code == 1 and "larger than the ledger" in err


# -- 4. a swapped key -------------------------------------------------------------------------


def test_swapped_key_is_caught_wherever_the_trusted_key_is_asked(
    signed: Signed, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _mine, their_key, _their_pub = keypair(tmp_path / "attacker", "attacker.example/key")
    rewrite_from(signed.path, _completed(signed.runs[1]))
    _delete_checkpoints(signed.path, signed.ends[0])
    ledger, pub = str(signed.path), str(signed.pub)
    # without --rotate a new key is refused outright; the attacker rotates to their own
    code, _, err = call(
        capsys, ledger_main, "checkpoint", "--ledger", ledger, "--key", str(their_key)
    )
    assert code == 2 and "--rotate" in err
    forged = tmp_path / "forged.checkpoint"
    code, out, _ = call(
        capsys,
        ledger_main,
        "checkpoint",
        "--ledger",
        ledger,
        "--key",
        str(their_key),
        "--rotate",
        "--out",
        str(forged),
    )
    assert code == 0  # the rewrite lies after the last checkpoint left, so it extends that
    code, doc = call_json(
        capsys, ledger_main, "verify", "--ledger", ledger, "--checkpoint", str(forged), "--pub", pub
    )
    assert code == 1
    codes = {f["code"] for f in doc["findings"]}
    assert "checkpoint-signature" in codes
    assert "attacker.example/key" in next(
        f["detail"] for f in doc["findings"] if f["code"] == "checkpoint-signature"
    )
    # a bundle proven against the attacker's checkpoint is refused offline
    bundle = tmp_path / "bundle.json"
    assert (
        call(
            capsys,
            ledger_main,
            "prove",
            signed.runs[1].hex(),
            "--ledger",
            ledger,
            "--out",
            str(bundle),
        )[0]
        == 0
    )
    code, out, _ = call(capsys, replay_main, "--bundle", str(bundle), "--pub", pub)
    assert code == 1 and "no signature by a trusted key" in out
    # and a witness that trusts the real key answers 403
    state = str(tmp_path / "witness")
    origin = forged.read_text().splitlines()[0]
    call(capsys, witness_main, "--state", state, "init", "--name", "w.example/w")
    call(capsys, witness_main, "--state", state, "add-log", origin, "--pub", pub)
    request = tmp_path / "request"
    request.write_text("old 0\n\n" + forged.read_text())
    code, _, err = call(capsys, witness_main, "--state", state, "add-checkpoint", str(request))
    assert code == 1 and "(403)" in err
    assert load_verifier(signed.pub).name == "test.example/ledger"


# -- 5. the history replaced under a fresh ledger id ---------------------------------------


def test_a_history_replaced_under_a_fresh_id_is_not_signed_by_the_key(
    signed: Signed, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Found by attack: the key's memory is kept per ledger id, so a writer of the ledger
    file who put a forged history under a fresh random id (no checkpoints stored) was a
    new log to the key, and the holder's next checkpoint signed the forgery. The key now
    remembers the log it signs at each place. Oracles: the checkpoints stored in the
    forged ledger (none), the command's refusal, and the kept checkpoint's verdict."""
    honest = tmp_path / "honest-ledger"
    os.rename(signed.path, honest)
    with Ledger.open(signed.path, create=True) as forged:  # a fresh id: a new log to a reader
        record_synthetic(forged, fake=FakeRun())
    ledger, key = str(signed.path), str(signed.key)
    code, _, err = call(capsys, ledger_main, "checkpoint", "--ledger", ledger, "--key", key)
    assert code == 2 and "rewritten under a fresh id" in err and "--new-log" in err
    with Ledger.open(signed.path, readonly=True) as forged:
        assert forged.checkpoints() == []  # nothing signed over the forgery
    # A link swapped in at the same name is the same place to the key.
    linked = tmp_path / "linked"
    os.symlink(honest, linked)
    with Ledger.open(linked) as through_link:
        memory = remembered(signed.key, through_link.ledger_id, linked, new_log=False)
        remember(
            signed.key, through_link.checkpoint(load_signer(signed.key), remembered=memory), linked
        )
    linked.unlink()
    os.symlink(signed.path, linked)
    code, _, err = call(capsys, ledger_main, "checkpoint", "--ledger", str(linked), "--key", key)
    assert code == 2 and "rewritten under a fresh id" in err
    # The kept checkpoint names another log than the forgery.
    code, doc = call_json(
        capsys, ledger_main, "verify", "--ledger", ledger, "--checkpoint", str(signed.kept)
    )
    assert code == 1 and doc["findings"]
    # A new ledger there on purpose is signed once asked, and then stays bound.
    code, _, _ = call(
        capsys, ledger_main, "checkpoint", "--ledger", ledger, "--key", key, "--new-log"
    )
    assert code == 0
    code, _, _ = call(capsys, ledger_main, "checkpoint", "--ledger", ledger, "--key", key)
    assert code == 0


def test_a_memory_from_before_places_does_not_trust_a_fresh_id_on_first_use(
    signed: Signed, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Found by attack: a key's memory written before it kept places holds only its
    checkpoints, so the first signing after the upgrade trusted whatever log stood at
    the path, a history rewritten under a fresh id included. While a log it signed has
    no place, a log it never signed at a place it does not know is refused. Oracles: the
    forged ledger's stored checkpoints (none) and the command's refusal."""
    memory = signed.key.parent / f"{signed.key.stem}.signed"
    shutil.rmtree(memory / "places")  # the memory as an earlier bvisor left it
    honest = tmp_path / "honest-ledger"
    os.rename(signed.path, honest)
    with Ledger.open(signed.path, create=True) as forged:
        record_synthetic(forged, fake=FakeRun())
    ledger, key = str(signed.path), str(signed.key)
    code, _, err = call(capsys, ledger_main, "checkpoint", "--ledger", ledger, "--key", key)
    assert code == 2 and "before it kept where each is" in err and "--new-log" in err, err
    with Ledger.open(signed.path, readonly=True) as forged:
        assert forged.checkpoints() == []
    # The log it did sign is signed again at its place, which binds it there; a new
    # ledger elsewhere is then a new log, as for a memory that always kept places.
    code, _, err = call(capsys, ledger_main, "checkpoint", "--ledger", str(honest), "--key", key)
    assert code == 0, err
    elsewhere = tmp_path / "another-ledger"
    with Ledger.open(elsewhere, create=True) as other:
        record_synthetic(other, fake=FakeRun())
    code, _, err = call(capsys, ledger_main, "checkpoint", "--ledger", str(elsewhere), "--key", key)
    assert code == 0, err


# -- how the verdicts read ----------------------------------------------------------------


def test_another_logs_checkpoint_is_named_as_such_and_proves_nothing(
    signed: Signed, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Found by attack: a checkpoint of another ledger was reported as a failed signature
    (it is never checked: its origin is refused first), and replay against it printed
    "proven against the checkpoint" under its own error."""
    other = tmp_path / "other"
    with Ledger.open(other, create=True) as ledger:
        record_synthetic(ledger, fake=FakeRun())
    pub, kept = str(signed.pub), str(signed.kept)
    code, out, _ = call(
        capsys, ledger_main, "verify", "--ledger", str(other), "--checkpoint", kept, "--pub", pub
    )
    assert code == 1 and "checkpoint-origin" in out
    assert "signature not checked (the checkpoint is for another log)" in out
    assert "signature FAILED" not in out and "(seq none)" not in out
    code, out, _ = call(
        capsys, replay_main, "--ledger", str(other), "--checkpoint", kept, "--pub", pub, "--last"
    )
    assert code == 1 and "nothing was proven against the checkpoint" in out
    assert "proven against the checkpoint of" not in out.replace("nothing was proven", "")


def test_a_rewrite_located_by_a_checkpoint_is_not_said_to_be_one_event(
    signed: Signed, capsys: pytest.CaptureFixture[str]
) -> None:
    """Found by attack: the summary of a checkpoint mismatch said the damage was
    "confined to the events named (seq N)": a rewrite it locates spans a range, and
    every later event chains to it."""
    rewrite_from(signed.path, _completed(signed.runs[1]))
    code, out, _ = call(capsys, ledger_main, "verify", "--ledger", str(signed.path))
    assert code == 1 and "confined to the events named" not in out
    assert f"the change lies in events {signed.ends[0]}..{signed.ends[1] - 1}, and" in out
    assert f"events 0..{signed.ends[0] - 1} are proven except those named; from event" in out


def test_a_signer_remembering_an_older_checkpoint_last_does_not_roll_the_memory_back(
    signed: Signed, capsys: pytest.CaptureFixture[str]
) -> None:
    """Found by attack: two signers at once, the one with the older checkpoint writing
    the key's memory last, rolled it back; a history rewritten between the two was then
    signed. The memory keeps the larger checkpoint. Oracle: the next checkpoint over a
    rewrite after the older one is refused."""
    signer = load_signer(signed.key)
    with Ledger.open(signed.path) as ledger:
        older = ledger.checkpoints()[-1]
        record_synthetic(ledger, fake=FakeRun())
        newer = ledger.checkpoint(
            signer, remembered=remembered(signed.key, ledger.ledger_id, signed.path, new_log=False)
        )
    remember(signed.key, newer, signed.path)
    remember(signed.key, older, signed.path)  # the slower signer, last
    with Ledger.open(signed.path, readonly=True) as ledger:
        kept = remembered(signed.key, ledger.ledger_id, signed.path, new_log=False)
    assert kept is not None and kept.text == newer.text
    rewrite_from(signed.path, _completed(signed.runs[2]))  # after the older, before the newer
    _delete_checkpoints(signed.path, 0)
    code, _, err = call(
        capsys, ledger_main, "checkpoint", "--ledger", str(signed.path), "--key", str(signed.key)
    )
    assert code == 1 and "refusing to sign" in err


def test_a_rewrite_hidden_behind_a_cut_tail_is_not_said_to_be_proven(
    signed: Signed, capsys: pytest.CaptureFixture[str]
) -> None:
    """Found by attack: a run rewritten after the second checkpoint, then the tail cut
    below the third (kept elsewhere), left the chain intact, and verify said every event
    up to the cut was proven. Only what a checkpoint that still holds covers is."""
    rewrite_from(signed.path, _completed(signed.runs[2]))  # changes events from ends[1] on
    drop_tail(signed.path, signed.ends[2] - 2)
    code, out, _ = call(
        capsys,
        ledger_main,
        "verify",
        "--ledger",
        str(signed.path),
        "--checkpoint",
        str(signed.kept),
    )
    assert code == 1 and "checkpoint-beyond-head" in out
    assert f"events 0..{signed.ends[1] - 1} are proven except those named" in out, out
    assert f"events 0..{signed.ends[2] - 3} are proven" not in out


def test_replay_against_a_checkpoint_claims_only_the_runs_it_proved(
    signed: Signed, capsys: pytest.CaptureFixture[str]
) -> None:
    """Found by attack: a run past the checkpoint failed ("not yet covered"), yet the
    footer said the replay was "proven against the checkpoint"."""
    with Ledger.open(signed.path) as ledger:
        extra = record_synthetic(ledger, fake=FakeRun())
    ledger, kept, pub = str(signed.path), str(signed.kept), str(signed.pub)
    code, out, _ = call(
        capsys, replay_main, "--ledger", ledger, "--checkpoint", kept, "--pub", pub, extra.hex()
    )
    assert code == 1 and "nothing was proven against the checkpoint" in out, out
    code, out, _ = call(
        capsys,
        replay_main,
        "--ledger",
        ledger,
        "--checkpoint",
        kept,
        "--pub",
        pub,
        signed.runs[0].hex(),
        extra.hex(),
    )
    assert code == 1 and "only the verified runs are proven against the checkpoint" in out, out


def test_a_bind_mount_of_the_ledger_is_the_same_place_to_the_key(
    signed: Signed, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Found by attack: a bind mount of the ledger's directory is another path to it, so
    a forged history put there under a fresh id was signed through the alias. The key
    binds the directory by device and inode too. Oracle: the forged ledger's stored
    checkpoints (none)."""
    import subprocess

    alias = tmp_path / "alias"
    alias.mkdir()
    mounted = subprocess.run(
        ["mount", "--bind", str(signed.path), str(alias)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot bind-mount here: {mounted.stderr.strip()}")
    try:
        for name in ("data.mdb", "lock.mdb"):  # the forger replaces the files in place
            (signed.path / name).unlink()
        with Ledger.open(signed.path, create=True) as forged:
            record_synthetic(forged, fake=FakeRun())
        code, _, err = call(
            capsys, ledger_main, "checkpoint", "--ledger", str(alias), "--key", str(signed.key)
        )
        assert code == 2 and "rewritten under a fresh id" in err, err
        with Ledger.open(alias, readonly=True) as ledger:
            assert ledger.checkpoints() == []
    finally:
        subprocess.run(["umount", str(alias)], check=False)
