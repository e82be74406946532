"""The Merkle tree as the ledger stores it: perfect subtree hashes in the ``tree`` database.

Layout (docs/FORMATS.md, "Storage"): key ``level (1 byte) || index (8 bytes, big-endian)``
-> the 32-byte hash of the perfect subtree of ``2**level`` leaves starting at leaf
``index * 2**level``, for every level >= 1 whose subtree is complete. Level 0 — the leaf
hashes — is not stored: leaf *i* is ``SHA-256(0x00 || record i)``, read from ``events``.
``meta`` key ``tree_size`` (8 bytes) is the number of leaves the stored nodes cover, which
equals the number of events in a ledger every writer of which kept the tree.

With every perfect subtree stored, the root at any size <= n, and an inclusion or
consistency proof between any two sizes, costs O(log n) lookups (``bvisor.ledger.merkle``).
Appending k leaves stores about k nodes (one per completed subtree) and reads the
O(log n) frontier once, inside the appender's own transaction.

The stored tree is a cache of what the records determine, never evidence by itself:
readers that must not trust it (``verify``, checkpoint signing) recompute it from records.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from bvisor.ledger.environment import META_TREE_SIZE, Environment, seq_key
from bvisor.ledger.merkle import CompactRange, ProofError, leaf_hash

__all__ = ["StoredTree", "node_key", "stored_tree_size"]

_LEVEL_LIMIT: Final = 64


def node_key(level: int, index: int) -> bytes:
    """The ``tree`` key of a perfect subtree."""
    return bytes((level,)) + index.to_bytes(8, "big")


def stored_tree_size(txn: Any, environment: Environment) -> int | None:
    """``meta.tree_size``; None for a ledger without a tree (or a malformed value)."""
    value = txn.get(META_TREE_SIZE, db=environment.meta)
    if value is None or len(value) != 8 or environment.tree is None:
        return None
    return int.from_bytes(value, "big")


class StoredTree:
    """Read (and, in a write transaction, extend) the stored tree of one transaction."""

    def __init__(self, txn: Any, environment: Environment) -> None:
        self._txn = txn
        self._env = environment
        self._pending: dict[bytes, bytes] = {}

    def leaf(self, index: int) -> bytes:
        raw = self._txn.get(seq_key(index), db=self._env.events)
        if raw is None:
            raise ProofError(f"event {index} is missing, so its leaf cannot be hashed")
        return leaf_hash(bytes(raw))

    def perfect(self, level: int, index: int) -> bytes:
        """The hash of a perfect subtree; ProofError when the store lacks it."""
        if level == 0:
            return self.leaf(index)
        if not 0 < level < _LEVEL_LIMIT or self._env.tree is None:
            raise ProofError(f"no stored tree node at level {level}")
        key = node_key(level, index)
        value = self._pending.get(key)
        if value is None:
            stored = self._txn.get(key, db=self._env.tree)
            if stored is None or len(stored) != 32:
                raise ProofError(
                    f"the stored tree lacks the node over events {index << level}.."
                    f"{((index + 1) << level) - 1} (run bvisor-ledger verify)"
                )
            value = bytes(stored)
        return value

    def getter(self) -> Callable[[int, int], bytes]:
        return self.perfect

    def extend(self, size: int, records: list[bytes]) -> int:
        """Add ``records`` (the raw records of events ``size``...) as leaves; the new size."""
        frontier = CompactRange.at(size, self.perfect)
        for record in records:
            for level, index, value in frontier.push(leaf_hash(record)):
                key = node_key(level, index)
                self._pending[key] = value
                self._txn.put(key, value, db=self._env.tree)
        self._txn.put(META_TREE_SIZE, seq_key(frontier.size), db=self._env.meta)
        return frontier.size
