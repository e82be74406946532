"""One run costs O(that run + log n) given a trusted anchor: counted, not timed.

Times belong to ``benchmarks/``; here the work itself is counted — stored tree nodes read
for a proof, records decoded for ``log --run`` — so a test can fail when a lookup stops
being O(log n) on any machine. The proofs are shown at 1 000 and 100 000 events.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import pytest

from bvisor.front.cli.ledger_cmd import main as ledger_main
from bvisor.front.cli.replay_cmd import main as replay_main
from bvisor.ledger import Ledger
from bvisor.ledger import store as store_module
from bvisor.ledger.proofs import ProofSource
from bvisor.ledger.tree import StoredTree
from tests.replay.helpers import FakeRun, record_synthetic
from tests.transparency.kit import call, keypair, raw

_BATCH = 20_000


def _run_id(number: int) -> bytes:
    return hashlib.sha256(number.to_bytes(4, "big")).digest()[:8]


def _notes(path: Path, count: int) -> None:
    with Ledger.open(path, create=True) as ledger:
        for start in range(0, count, _BATCH):
            ledger.append_many(
                [("note.n", i, _run_id(i % 997)) for i in range(start, min(count, start + _BATCH))]
            )


@pytest.fixture(scope="module")
def sizes(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    built = {}
    for count in (1_000, 100_000):
        path = tmp_path_factory.mktemp("sizes") / f"l{count}"
        _notes(path, count)
        built[count] = path
    return built


def _lookups(path: Path, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Stored-tree reads for an inclusion proof of the first, middle and last event, and for
    a consistency proof from half the ledger to all of it."""
    counted: list[int] = [0]
    original = StoredTree.perfect

    def perfect(self: StoredTree, level: int, index: int) -> bytes:
        counted[-1] += 1
        return original(self, level, index)

    monkeypatch.setattr(StoredTree, "perfect", perfect)
    with Ledger.open(path, readonly=True) as ledger, ledger.snapshot() as snap:
        source = ProofSource(snap)
        n = source.events
        root = source.root(n)
        for seq in (0, n // 2, n - 1):
            counted.append(0)
            source.inclusion(seq, n, root)
        counted.append(0)
        source.consistency(n // 2, n, source.root(n // 2), root)
    monkeypatch.undo()
    return counted


def test_proofs_read_o_log_n_stored_nodes_at_1k_and_100k_events(
    sizes: dict[int, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    for count, path in sizes.items():
        bound = 2 * math.ceil(math.log2(count)) + 2
        counts = _lookups(path, monkeypatch)
        assert max(counts) <= bound, (count, counts, bound)
    small, large = _lookups(sizes[1_000], monkeypatch), _lookups(sizes[100_000], monkeypatch)
    assert max(large) <= max(small) + 2 * math.ceil(math.log2(100)) + 2  # log, not linear


def test_log_of_one_run_decodes_that_run_only(
    sizes: dict[int, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    decoded = [0]
    original = store_module.decode_record

    def counting(raw_record: bytes):  # type: ignore[no-untyped-def]
        decoded[0] += 1
        return original(raw_record)

    monkeypatch.setattr(store_module, "decode_record", counting)
    run = _run_id(5).hex()
    for count, path in sizes.items():
        decoded[0] = 0
        code, out, _ = call(capsys, ledger_main, "log", "--ledger", str(path), "--run", run[:9])
        events = len(out.splitlines())
        assert code == 0 and events == len(range(5, count, 997))
        assert decoded[0] == events, (count, decoded[0])  # nothing of the other 996 runs


@pytest.fixture
def runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, list[bytes], Path]:
    _signer, key, pub = keypair(tmp_path / "keys")
    path = tmp_path / "ledger"
    with Ledger.open(path, create=True) as ledger:
        made = [record_synthetic(ledger, fake=FakeRun()) for _ in range(4)]
    assert call(capsys, ledger_main, "checkpoint", "--ledger", str(path), "--key", str(key))[0] == 0
    return path, made, pub


def test_one_run_by_the_checkpoint_or_the_head(
    runs: tuple[Path, list[bytes], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    path, made, pub = runs
    ledger = str(path)
    code, out, _ = call(
        capsys, replay_main, "--ledger", ledger, "--pub", str(pub), made[1].hex()[:8]
    )
    assert code == 0 and "proven against the checkpoint" in out
    code, head_text, _ = call(capsys, ledger_main, "head", "--ledger", ledger)
    head = head_text.strip()
    code, out, _ = call(capsys, replay_main, "--ledger", ledger, "--expect-head", head, "--last")
    assert code == 0 and made[-1].hex()[:16] in out and "expected head" in out
    wrong = head.split(":")[0] + ":" + "00" * 32
    code, out, _ = call(capsys, replay_main, "--ledger", ledger, "--expect-head", wrong, "--last")
    assert code == 1 and "not the expected head" in out


def test_last_is_found_from_the_records_when_the_lookup_table_lies(
    runs: tuple[Path, list[bytes], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    path, made, pub = runs
    with raw(path) as (txn, dbs):  # the newest run's start taken out of the lookup table
        for key, value in list(txn.cursor(db=dbs["runstart"])):
            if bytes(value) == made[-1]:
                txn.delete(bytes(key), db=dbs["runstart"])
    code, out, _ = call(capsys, replay_main, "--ledger", str(path), "--pub", str(pub), "--last")
    assert code == 0 and made[-1].hex()[:16] in out and made[-2].hex()[:16] not in out
