"""Who recorded a run: a signed run's checkpoint names the run's events as its signer's own.

A signature says what the ledger held, not who appended it: whoever can write the ledger
file can append a run, and the owner's next signed run covered it like any other. Each
checkpoint ``bvisor run --key`` signs now carries a ``bvisor-recorded`` line naming every
event of the run it was signed for, so ``verify --pub`` and ``bvisor-replay --pub`` tell a
run the signer recorded from one it only covers. The oracles are the stored checkpoints'
signed text and the events on disk; the planted lie is a run appended without the key
(another writer) and an event added to a signer's run after it was signed.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest

from bvisor.front.api import run_confined
from bvisor.front.cli.ledger_cmd import main as ledger_main
from bvisor.front.cli.replay_cmd import main as replay_main
from bvisor.ledger import Ledger, verify
from bvisor.ledger.checkpoint import checkpoint_text, parse_checkpoint, seq_ranges
from bvisor.ledger.errors import LedgerCorruptError
from bvisor.ledger.keys import load_verifier
from bvisor.ledger.notary import SigningRequest
from bvisor.ledger.note import NoteError, generate_signer, sign_note
from tests.replay.helpers import backend, base_spec
from tests.transparency.kit import call, keypair

ORIGIN = "bvisor-ledger/" + "ab" * 16
ROOT = bytes(32)


def _text(*extensions: str, size: int = 100) -> str:
    base = checkpoint_text(ORIGIN, size, ROOT, None)
    return base + "".join(f"{line}\n" for line in extensions)


def test_the_recorded_line_round_trips_in_its_one_form() -> None:
    ranges = seq_ranges([3, 4, 5, 9, 11, 12])
    assert ranges == ((3, 5), (9, 9), (11, 12))
    text = checkpoint_text(ORIGIN, 20, ROOT, bytes(32), ((b"\x01" * 32, ranges),))
    assert text.endswith(f"bvisor-recorded {'01' * 32} 3-5,9,11-12\n")
    signer = generate_signer("test.example/ledger")
    parsed = parse_checkpoint(sign_note(text, signer)).checkpoint
    assert parsed.recorded == ((b"\x01" * 32, ranges),)
    assert parse_checkpoint(sign_note(_text(), signer)).checkpoint.recorded == ()


@pytest.mark.parametrize(
    "line",
    [
        "bvisor-recorded 0102 3,4",  # two parts that are one range
        "bvisor-recorded 0102 5,3",  # unordered
        "bvisor-recorded 0102 4-4",  # a range of one seq written as a range
        "bvisor-recorded 0102 100",  # beyond the tree's size
        "bvisor-recorded 0102 007",  # leading zeros
        "bvisor-recorded 0102 " + "9" * 5000,  # a number no int() should see
        "bvisor-recorded 0A02 1",  # uppercase hex
        "bvisor-recorded  1",  # no run id
        "bvisor-recorded " + "01" * 65 + " 1",  # a run id longer than the ledger allows
        "bvisor-recorded 0102",  # no seqs
        "bvisor-recorded 0102 1-",
    ],
)
def test_a_malformed_recorded_line_is_refused(line: str) -> None:
    signer = generate_signer("test.example/ledger")
    with pytest.raises(NoteError, match="bvisor-recorded"):
        parse_checkpoint(sign_note(_text(line), signer))


def test_two_lines_for_one_run_are_refused() -> None:
    signer = generate_signer("test.example/ledger")
    text = _text("bvisor-recorded 0102 1", "bvisor-recorded 0102 5")
    with pytest.raises(NoteError, match="two bvisor-recorded lines"):
        parse_checkpoint(sign_note(text, signer))


def test_a_signed_run_names_every_one_of_its_events(tmp_path: Path) -> None:
    _signer_key, key, pub = keypair(tmp_path / "keys")
    path = tmp_path / "ledger"
    report = run_confined(base_spec(), ledger=path, key=key, backend=backend())
    with Ledger.open(path, readonly=True) as ledger:
        seqs = [event.seq for event in ledger.run_events(report.body.attempt_id)]
        (stored,) = ledger.checkpoints()
    assert stored.checkpoint.recorded == ((report.body.attempt_id, seq_ranges(seqs)),)
    check = verify(path, verifiers=[load_verifier(pub)]).checkpoint
    assert check is not None and (check.recorded_runs, check.unrecorded_run_count) == (1, 0)


def test_a_run_appended_without_the_key_is_named_as_recorded_by_no_signer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The forged run (recorded by a writer without the key) is covered by the owner's
    next signed run, as before; verify and replay now say no signer recorded it."""
    _signer_key, key, pub = keypair(tmp_path / "keys")
    path = tmp_path / "ledger"
    forged = run_confined(base_spec(), ledger=path, backend=backend()).body.attempt_id
    honest = run_confined(base_spec(), ledger=path, key=key, backend=backend()).body.attempt_id
    check = verify(path, verifiers=[load_verifier(pub)]).checkpoint
    assert check is not None and check.uncovered is None
    assert (check.recorded_runs, check.unrecorded_runs) == (1, (forged,))
    code, out, _ = call(capsys, ledger_main, "verify", "--ledger", str(path), "--pub", str(pub))
    assert code == 0 and "no signer says it recorded itself" in out and forged.hex()[:16] in out
    code, out, _ = call(
        capsys, replay_main, forged.hex(), honest.hex(), "--ledger", str(path),
        "--pub", str(pub), "--json",
    )  # fmt: skip
    shown = {run["run_id"]: run["recorded_by_signer"] for run in json.loads(out)["runs"]}
    assert code == 0 and shown == {forged.hex(): False, honest.hex(): True}
    code, out, _ = call(capsys, replay_main, forged.hex(), "--ledger", str(path), "--pub", str(pub))
    assert code == 0 and "1 recorded by no signer itself" in out
    code, out, _ = call(capsys, replay_main, "--ledger", str(path), "--pub", str(pub), "--json")
    shown = {run["run_id"]: run["recorded_by_signer"] for run in json.loads(out)["runs"]}
    assert code == 0 and shown == {forged.hex(): False, honest.hex(): True}  # the whole chain
    code, out, _ = call(capsys, replay_main, "--ledger", str(path), "--json")
    assert code == 0 and all("recorded_by_signer" not in run for run in json.loads(out)["runs"])


def test_an_event_added_to_a_signed_run_makes_it_recorded_by_no_signer(tmp_path: Path) -> None:
    _signer_key, key, pub = keypair(tmp_path / "keys")
    path = tmp_path / "ledger"
    run = run_confined(base_spec(), ledger=path, key=key, backend=backend()).body.attempt_id
    with Ledger.open(path) as ledger:
        ledger.append("note.external", {"added": "later"}, run_id=run)
    from bvisor.ledger.keys import load_signer

    with Ledger.open(path) as ledger:  # the owner signs again: the note is covered now
        ledger.checkpoint(load_signer(key))
    check = verify(path, verifiers=[load_verifier(pub)]).checkpoint
    assert check is not None and check.unrecorded_runs == (run,)


def test_the_signer_never_names_an_event_of_another_run_as_its_own(tmp_path: Path) -> None:
    signer, _key, _pub = keypair(tmp_path / "keys")
    path = tmp_path / "ledger"
    mine, theirs = b"\x01" * 32, b"\x02" * 32
    with Ledger.open(path, create=True) as ledger:
        receipt = ledger.append("note.external", {"n": 0}, run_id=theirs)
        request = SigningRequest(signer, recorded={mine: {0: receipt.hash}})
        with pytest.raises(LedgerCorruptError, match="is not of run 0101"):
            ledger.append_many([("note.external", {"n": 1}, mine)], sign=request)
        head = ledger.head()
        assert head is not None and head.seq == 0  # nothing was appended


def test_an_event_rewritten_between_a_runs_two_commits_is_not_signed_as_the_signers(
    tmp_path: Path,
) -> None:
    """A run's first events commit before its workload runs and the rest, with the
    checkpoint, after: in between, whoever could write the ledger may rewrite them (here
    the first, re-chained with the head and tree made to agree, as the kit's attacker
    does). The signer named the seqs it wrote and the notary checked only that they held
    an event of the run, so the forged event was signed as the signer's own and verify
    counted the run as recorded by it. The oracle is the stored checkpoints and the
    events on disk."""
    from bvisor.ledger.keys import load_verifier
    from tests.transparency.kit import rewrite_from

    signer, _key, pub = keypair(tmp_path / "keys")
    path = tmp_path / "ledger"
    run = b"\x07" * 32
    with Ledger.open(path, create=True) as ledger:
        (first,) = ledger.append_many([("note.external", {"mine": "plan"}, run)])
    assert rewrite_from(path, lambda e: {"theirs": "forged"} if e.seq == 0 else None) == [0]
    with Ledger.open(path) as ledger:
        request = SigningRequest(signer, recorded={run: {first.seq: first.hash}}, tolerate=True)
        ledger.append_many([("note.external", {"mine": "end"}, run)], sign=request)
        assert request.signed is None and request.problem is not None
        assert "is not the one this signer appended" in request.problem
        assert ledger.run_events(run)[0].payload == {"theirs": "forged"}
        assert ledger.checkpoints() == []
    check = verify(path, verifiers=[load_verifier(pub)]).checkpoint
    assert check is not None and check.recorded_runs == 0


def test_an_attestation_says_whether_its_signer_recorded_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """attest names the run's recorder in its predicate: true for a run signed as it was
    recorded (found in that run's own checkpoint, not the latest), false, with a warning,
    for a run recorded without the key and covered since."""
    _signer_key, key, _pub = keypair(tmp_path / "keys")
    path = tmp_path / "ledger"
    honest = run_confined(base_spec(), ledger=path, key=key, backend=backend()).body.attempt_id
    forged = run_confined(base_spec(), ledger=path, backend=backend()).body.attempt_id
    run_confined(base_spec(), ledger=path, key=key, backend=backend())  # the latest checkpoint
    said: dict[bytes, tuple[object, str]] = {}
    for run in (honest, forged):
        code, out, err = call(
            capsys, ledger_main, "attest", run.hex(), "--ledger", str(path), "--key", str(key)
        )
        assert code == 0, err
        payload = json.loads(base64.b64decode(json.loads(out)["payload"]))
        said[run] = (payload["predicate"]["recorded_by_signer"], err)
    assert said[honest] == (True, "")
    assert said[forged][0] is False and "recorded_by_signer: false" in said[forged][1]


def _many_checkpoints(tmp_path: Path, count: int) -> tuple[Path, Path, bytes]:
    """A ledger of one signed run and then ``count`` more signed checkpoints, as a ledger
    signed at every run holds; returns its path, the public key and the run."""
    signer, key, pub = keypair(tmp_path / "keys")
    path = tmp_path / "ledger"
    run = run_confined(base_spec(), ledger=path, key=key, backend=backend()).body.attempt_id
    with Ledger.open(path) as ledger:
        for index in range(count):
            ledger.append("note.external", {"n": index})
            ledger.checkpoint(signer)
    return path, pub, run


def test_one_run_reads_a_few_checkpoints_however_many_are_stored(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``bvisor-replay RUN --pub`` checked the signature of every stored checkpoint first:
    O(runs) for a ledger signed at every run (400 ms more at 3,000). Now the latest and
    the run's own are found by their sizes; the count of signatures checked is the oracle."""
    from bvisor.ledger.checkpoint import SignedCheckpoint

    path, pub, run = _many_checkpoints(tmp_path, 40)
    checked: list[int] = []
    original = SignedCheckpoint.verified_by

    def counted(self: SignedCheckpoint, verifiers: list[object]) -> list[object]:
        checked.append(self.checkpoint.size)
        return original(self, verifiers)  # type: ignore[arg-type]

    monkeypatch.setattr(SignedCheckpoint, "verified_by", counted)
    code, out, _ = call(
        capsys, replay_main, run.hex(), "--ledger", str(path), "--pub", str(pub), "--json"
    )
    (shown,) = json.loads(out)["runs"]
    assert code == 0 and shown["verdict"] == "verified" and shown["recorded_by_signer"] is True
    assert len(checked) <= 3, checked


def test_checkpoint_rows_are_found_by_size_both_ways(tmp_path: Path) -> None:
    path, _pub, _run = _many_checkpoints(tmp_path, 6)
    with Ledger.open(path, readonly=True) as ledger, ledger.snapshot() as snap:
        sizes = [int.from_bytes(key[:8], "big") for key, _ in snap.checkpoint_rows()]
        assert len(sizes) == 7 and sizes == sorted(sizes)

        def between(first: int, stop: int | None, newest_first: bool = False) -> list[int]:
            rows = snap.checkpoint_rows_between(first, stop, newest_first=newest_first)
            return [int.from_bytes(key[:8], "big") for key, _ in rows]

        assert between(0, None) == sizes
        assert between(0, None, newest_first=True) == sizes[::-1]
        assert between(sizes[2], sizes[4]) == sizes[2:4]
        assert between(sizes[2], sizes[4], newest_first=True) == sizes[3:1:-1]
        assert between(sizes[2] + 1, sizes[2] + 1) == []
        assert between(sizes[-1] + 1, None) == between(sizes[-1] + 1, None, True) == []
        assert between(0, sizes[0], newest_first=True) == []
        assert between(sizes[-1], 1 << 64, newest_first=True) == [sizes[-1]]


def ledger_origin_of(path: Path) -> str:
    with Ledger.open(path, readonly=True) as ledger:
        return "bvisor-ledger/" + ledger.ledger_id.hex()


def test_a_checkpoint_of_another_ledger_planted_in_this_one_is_passed_over(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same key signs the owner's other ledger; a writer of this one copies that
    ledger's larger checkpoint into it. It was taken as the latest trusted checkpoint, and
    one-run replay then refused this ledger ("for another log"); it is passed over now."""
    _signer_key, key, pub = keypair(tmp_path / "keys")
    mine, other = tmp_path / "mine", tmp_path / "other"
    run = run_confined(base_spec(), ledger=mine, key=key, backend=backend()).body.attempt_id
    for _ in range(2):
        run_confined(base_spec(), ledger=other, key=key, backend=backend())
    with Ledger.open(other, readonly=True) as ledger:
        foreign = max(ledger.checkpoints(), key=lambda c: c.checkpoint.size)
    planting = (  # another process: this one holds the ledger's LMDB environment open
        "import sys, lmdb\n"
        "env = lmdb.open(sys.argv[1], max_dbs=8, create=False)\n"
        "db = env.open_db(b'checkpoints', create=False)\n"
        "with env.begin(write=True) as txn:\n"
        "    txn.put(bytes.fromhex(sys.argv[2]), sys.argv[3].encode(), db=db)\n"
    )
    row = foreign.checkpoint.size.to_bytes(8, "big") + b"\xff" * 4
    subprocess.run(
        [sys.executable, "-c", planting, str(mine), row.hex(), foreign.text],
        check=True,
        timeout=60,
    )
    code, out, err = call(capsys, replay_main, run.hex(), "--ledger", str(mine), "--pub", str(pub))
    assert code == 0 and "1 verified" in out, (out, err)
    code, out, err = call(
        capsys, ledger_main, "attest", run.hex(), "--ledger", str(mine), "--key", str(key)
    )
    assert code == 0 and json.loads(out)["payloadType"], err
    code, out, err = call(capsys, ledger_main, "prove", run.hex(), "--ledger", str(mine))
    bundle = json.loads(out)
    assert code == 0 and bundle["checkpoint"].startswith(ledger_origin_of(mine)), err
