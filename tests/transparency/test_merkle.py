"""The Merkle tree: RFC 6962 reference vectors, every proof of small trees, the stored tree.

Oracles from outside: Certificate Transparency's reference tree (``tests/vectors/
transparency/rfc6962.json``) and, for the shapes it does not cover, the RFC's recursive
definition written out here independently of ``bvisor.ledger.merkle``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from bvisor.ledger import Ledger
from bvisor.ledger.merkle import (
    EMPTY_ROOT,
    CompactRange,
    MemoryTree,
    ProofError,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    range_hash,
    verify_consistency,
    verify_inclusion,
)
from bvisor.ledger.tree import StoredTree
from tests.transparency.kit import REPO

VECTORS = json.loads((REPO / "tests/vectors/transparency/rfc6962.json").read_text())


def _mth(leaves: list[bytes]) -> bytes:
    """RFC 6962 §2.1, verbatim: the oracle for trees the vectors do not list."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hashlib.sha256(b"\x01" + _mth(leaves[:k]) + _mth(leaves[k:])).digest()


def _tree(count: int) -> tuple[list[bytes], MemoryTree]:
    leaves = [hashlib.sha256(b"\x00" + bytes([i, i * 7 % 256])).digest() for i in range(count)]
    return leaves, MemoryTree(leaves)


def test_empty_tree_root_is_the_rfc_6962_one() -> None:
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert MemoryTree().root() == EMPTY_ROOT
    assert CompactRange().root() == EMPTY_ROOT


def test_reference_roots_and_proofs() -> None:
    leaves = [leaf_hash(bytes.fromhex(x)) for x in VECTORS["leaves"]]
    tree = MemoryTree(leaves)
    for size, root in enumerate(VECTORS["roots"]):
        assert tree.root(size).hex() == root
    for case in VECTORS["inclusion"]:
        path = inclusion_proof(case["index"], case["size"], tree.perfect)
        assert [h.hex() for h in path] == case["proof"]
        root = bytes.fromhex(VECTORS["roots"][case["size"]])
        verify_inclusion(leaves[case["index"]], case["index"], case["size"], path, root)
    for case in VECTORS["consistency"]:
        proof = consistency_proof(case["old"], case["new"], tree.perfect)
        assert [h.hex() for h in proof] == case["proof"]
        old = bytes.fromhex(VECTORS["roots"][case["old"]])
        new = bytes.fromhex(VECTORS["roots"][case["new"]])
        verify_consistency(case["old"], case["new"], old, new, proof)


@pytest.mark.parametrize("count", [1, 2, 3, 5, 8, 13, 31, 32, 33])
def test_every_inclusion_proof_holds_and_no_other(count: int) -> None:
    leaves, tree = _tree(count)
    root = _mth(leaves)
    assert tree.root() == root
    for index in range(count):
        path = inclusion_proof(index, count, tree.perfect)
        verify_inclusion(leaves[index], index, count, path, root)
        with pytest.raises(ProofError):
            verify_inclusion(b"\xff" * 32, index, count, path, root)
        if path:
            bent = [path[0][::-1], *path[1:]]
            with pytest.raises(ProofError):
                verify_inclusion(leaves[index], index, count, bent, root)
        with pytest.raises(ProofError):
            verify_inclusion(leaves[index], index, count, [*path, root], root)


@pytest.mark.parametrize("count", [2, 7, 16, 21])
def test_every_consistency_proof_holds_and_fails_for_another_history(count: int) -> None:
    leaves, tree = _tree(count)
    for old in range(count + 1):
        for new in range(old, count + 1):
            proof = consistency_proof(old, new, tree.perfect)
            verify_consistency(old, new, _mth(leaves[:old]), _mth(leaves[:new]), proof)
            if 0 < old < new:
                forked = leaves[:]
                forked[old - 1] = b"\x00" * 32  # a different history of the first old
                with pytest.raises(ProofError):
                    verify_consistency(old, new, _mth(forked[:old]), _mth(leaves[:new]), proof)


def test_compact_range_matches_the_full_tree_at_every_size() -> None:
    leaves, tree = _tree(70)
    frontier = CompactRange()
    for size, leaf in enumerate(leaves, start=1):
        frontier.push(leaf)
        assert frontier.root() == _mth(leaves[:size])
        again = CompactRange.at(size, tree.perfect)
        assert again.root() == frontier.root()


def test_the_stored_tree_is_the_rfc_tree_of_the_records(tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "l", create=True) as ledger:
        for batch in range(9):
            ledger.append_many([("note.x", {"b": batch, "i": i}) for i in range(batch + 1)])
        records = [raw for _seq, raw in ledger.raw_events()]
        with ledger.snapshot() as snap:
            stored = snap.tree()
            assert stored is not None and snap.tree_size() == len(records)
            leaves = [leaf_hash(r) for r in records]
            for size in range(len(records) + 1):
                assert range_hash(0, size, stored.perfect) == _mth(leaves[:size])
            assert isinstance(stored, StoredTree)
