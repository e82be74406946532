"""One run proven by an anchor reads its events where the runs index says: an index no
writer leaves is refused, never walked.

Whoever can write the ledger file can rewrite the ``runs`` index without touching a
record, so no signature or chain head speaks for it. ``bvisor-replay RUN --pub`` and
``--expect-head`` (and ``attest``, which audits the same way) take the run's span from its
first to its last listed seq; rows out of order made that span empty (a traceback), a row
naming seq 2**64-1 made it one no walk finishes (the command never returned), and a row
left out made the run shorter than recorded. The oracles are the records on disk and what
the commands print and exit with; the planted lie is the index edited through raw LMDB.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

import pytest

import bvisor.replay.anchored as anchored
from bvisor.front.api import run_confined
from bvisor.front.cli.ledger_cmd import main as ledger_main
from bvisor.front.cli.replay_cmd import main as replay_main
from bvisor.ledger import Ledger
from bvisor.replay.events import parse_run
from tests.replay.helpers import backend, base_spec
from tests.transparency.kit import call, keypair, raw


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path, bytes]:
    """One signed run: its ledger, private and public key, and its id."""
    base = tmp_path_factory.mktemp("signed")
    _signer, key, pub = keypair(base)
    path = base / "ledger"
    run = run_confined(base_spec(), ledger=path, key=key, backend=backend()).body.attempt_id
    return path, key, pub, run


def _rows(txn: object, dbs: dict[str, object], run: bytes) -> list[tuple[bytes, int]]:
    return [
        (bytes(k), int.from_bytes(v, "big"))
        for k, v in txn.cursor(db=dbs["runs"])  # type: ignore[attr-defined]
        if bytes(k).startswith(run)
    ]


def edit_index(path: Path, run: bytes, edit: Callable[[list[int]], list[int]]) -> None:
    """Replace the run's rows of the ``runs`` index with ``edit`` of its listed seqs."""
    with raw(path) as (txn, dbs):
        rows = _rows(txn, dbs, run)
        for key, _seq in rows:
            txn.delete(key, db=dbs["runs"])
        for index, seq in enumerate(edit([seq for _key, seq in rows])):
            txn.put(run + index.to_bytes(4, "big"), seq.to_bytes(8, "big"), db=dbs["runs"])


@contextmanager
def deadline(seconds: int) -> Iterator[None]:
    """Fail instead of hanging: a walk that never ends is the finding."""

    def expired(_signum: int, _frame: FrameType | None) -> None:
        raise AssertionError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _stream_seq(path: Path, run: bytes) -> int:
    with Ledger.open(path, readonly=True) as ledger:
        return next(e.seq for e in ledger.run_events(run) if e.kind == "run.streams")


@pytest.mark.parametrize("damage", ["reversed", "beyond", "left out"])
def test_a_runs_index_no_writer_leaves_is_refused_not_walked(
    signed: tuple[Path, Path, Path, bytes],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    damage: str,
) -> None:
    source, key, pub, run = signed
    path = tmp_path / "ledger"
    shutil.copytree(source, path)
    stream = _stream_seq(path, run)
    edits: dict[str, Callable[[list[int]], list[int]]] = {
        "reversed": lambda seqs: seqs[::-1],
        "beyond": lambda seqs: [*seqs, (1 << 64) - 1],
        "left out": lambda seqs: [seq for seq in seqs if seq != stream],
    }
    edit_index(path, run, edits[damage])
    with Ledger.open(path, readonly=True) as ledger:
        head = ledger.head()
    assert head is not None
    anchors = [["--pub", str(pub)], ["--expect-head", f"{head.seq}:{head.hash.hex()}"]]
    if damage == "left out":
        anchors.pop()  # the head's walk reads every event up to the head, listed or not
    for anchor in anchors:
        with deadline(20):
            code, out, err = call(
                capsys, replay_main, run.hex(), "--ledger", str(path), *anchor, "--json"
            )
        assert code == 1, err
        (shown,) = json.loads(out)["runs"]
        chain = next(check for check in shown["checks"] if check["name"] == "chain")
        assert shown["verdict"] != "verified" and "runs index" in chain["detail"], chain
    with deadline(20):
        code, out, err = call(
            capsys, ledger_main, "attest", run.hex(), "--ledger", str(path), "--key", str(key)
        )
    assert code != 0 and out == "" and "runs index" in err and "Traceback" not in err


def test_attest_states_the_events_it_proved_not_a_second_read_of_the_index(
    signed: tuple[Path, Path, Path, bytes],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """attest audited the run, then read its events again through the runs index to build
    the statement: an index edited in between (another process, as the ledger's other
    writer would) left the stdout chunk out of a statement vouched for as verified. The
    subjects must be the digests of the streams the records hold."""
    source, key, _pub, run = signed
    path = tmp_path / "ledger"
    shutil.copytree(source, path)
    stream = _stream_seq(path, run)
    with Ledger.open(path, readonly=True) as ledger:
        parsed = parse_run(run, ledger.run_events(run))
    recorded: dict[str, bytearray] = {}
    for chunk in parsed.streams:
        recorded.setdefault(chunk.stream, bytearray()).extend(chunk.data)
    assert recorded.get("stdout")
    expected = {name: hashlib.sha256(bytes(data)).hexdigest() for name, data in recorded.items()}
    original = anchored.audit_anchored
    edit = (
        "import sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]);"
        "from tests.transparency.test_damaged_index import edit_index;"
        "edit_index(Path(sys.argv[2]), bytes.fromhex(sys.argv[3]),"
        " lambda seqs: [s for s in seqs if s != int(sys.argv[4])])"
    )
    root = str(Path(__file__).resolve().parents[2])

    def then_edited(*args: object, **kwargs: object) -> object:
        report = original(*args, **kwargs)  # type: ignore[arg-type]
        subprocess.run(
            [sys.executable, "-c", edit, root, str(path), run.hex(), str(stream)], check=True
        )
        return report

    monkeypatch.setattr(anchored, "audit_anchored", then_edited)
    code, out, err = call(
        capsys, ledger_main, "attest", run.hex(), "--ledger", str(path), "--key", str(key)
    )
    assert code == 0, err
    payload = json.loads(base64.b64decode(json.loads(out)["payload"]))
    stated = {subject["name"]: subject["digest"]["sha256"] for subject in payload["subject"]}
    assert stated == expected
    events = payload["predicate"]["inclusion"]["events"]
    assert stream in {event["seq"] for event in events}
    with Ledger.open(path, readonly=True) as ledger:  # the edit did happen
        assert stream not in ledger.run_seqs(run)


def _two_signed_runs(base: Path) -> tuple[Path, Path, Path, bytes]:
    _signer, key, pub = keypair(base / "keys")
    path = base / "ledger"
    for _ in range(2):
        run = run_confined(base_spec(), ledger=path, key=key, backend=backend()).body.attempt_id
    return path, key, pub, run


@pytest.mark.parametrize("planted", ["an old note on top", "another ledger's note on top"])
def test_a_checkpoint_row_not_kept_under_its_own_size_is_no_candidate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], planted: str
) -> None:
    """The lookups by size (the latest for --pub, prove and attest; the run's own for
    recorded_by_signer) took a row's key for what its note says. One row under size
    2**64-1, holding a genuine note of this key (an older one of this ledger, or one of
    another ledger it signs), made the newest honest run fail replay --pub (not covered)
    or every run unprovable (another log), and attest refuse it; verify, which judges each
    note by itself, found nothing wrong."""
    from bvisor.ledger.keys import load_signer

    recorded, key, pub, run = _two_signed_runs(tmp_path)
    path = tmp_path / "copy"  # not open in this process: raw LMDB may write it
    shutil.copytree(recorded, path)
    with Ledger.open(path, readonly=True) as ledger:
        first = ledger.checkpoints()[0]
    note = first.text.encode()
    if planted == "another ledger's note on top":
        with Ledger.open(tmp_path / "other", create=True) as other:
            other.append_many([("note.external", {"n": n}) for n in range(500)])
            note = other.checkpoint(load_signer(key)).text.encode()
    key_id = first.note.signatures[0].key_id
    with raw(path) as (txn, dbs):
        txn.put(b"\xff" * 8 + key_id, note, db=dbs["checkpoints"])
    code, out, err = call(
        capsys, replay_main, run.hex(), "--ledger", str(path), "--pub", str(pub), "--json"
    )
    assert code == 0, out + err
    (shown,) = json.loads(out)["runs"]
    assert shown["verdict"] == "verified" and shown["recorded_by_signer"] is True
    code, out, err = call(
        capsys, ledger_main, "attest", run.hex(), "--ledger", str(path), "--key", str(key)
    )
    assert code == 0 and err == "", err
    predicate = json.loads(base64.b64decode(json.loads(out)["payload"]))["predicate"]
    assert predicate["recorded_by_signer"] is True
    with Ledger.open(path, readonly=True) as ledger:
        head = ledger.head()
    assert head is not None and predicate["inclusion"]["tree_size"] == head.seq + 1
