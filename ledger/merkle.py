"""RFC 6962 / RFC 9162 Merkle tree hashing, proofs and proof checks. Pure: no I/O.

The ledger's transparency tree has one leaf per event, leaf *i* being the raw record bytes
of event *i* (docs/FORMATS.md, "Merkle tree")::

    leaf hash  = SHA-256(0x00 || record bytes)
    node hash  = SHA-256(0x01 || left || right)
    MTH({})    = SHA-256("")   (the empty tree)

A tree of ``n`` leaves splits at ``k``, the largest power of two below ``n``; so it is the
fold, from the right, of the perfect subtrees that the binary digits of ``n`` describe.
Everything here is written against one question — "the hash of the perfect subtree of
``2**level`` leaves starting at leaf ``index * 2**level``" — answered by a callable, so the
same code produces proofs from the ledger's stored nodes, from an in-memory tree, or from
anything else that can answer it. Every range the RFC's recursion asks about starts at a
multiple of a power of two at least as large as the range, so each is a fold of at most
log2(n) such perfect subtrees: a proof costs O(log n) questions, and with hashes of
perfect subtrees stored, O(log n) lookups.

Why SHA-256 and these prefixes rather than the ledger's BLAKE3 contexts: they are what
Certificate Transparency, Sigstore and Go's checksum database use, so any RFC 6962
verifier checks bvisor's proofs unchanged.

Which SHA-256: the interpreter's own (:mod:`bvisor.sha256`), so a run, which hashes a few
dozen records, never loads OpenSSL; a caller about to hash a whole ledger takes
:func:`bulk_leaf_hash`, the same leaf hash through OpenSSL's faster SHA-256.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final

from bvisor.sha256 import sha256 as _sha256

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "CompactRange",
    "MemoryTree",
    "PerfectHash",
    "ProofError",
    "bulk_leaf_hash",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "range_hash",
    "root_from_leaves",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE: Final = 32
EMPTY_ROOT: Final = _sha256(b"").digest()
_LEAF: Final = b"\x00"
_NODE: Final = b"\x01"

# perfect(level, index): hash of leaves [index << level, (index + 1) << level).
PerfectHash = Callable[[int, int], bytes]


class ProofError(ValueError):
    """A proof that does not prove what it claims, or a request no tree can answer."""


def leaf_hash(record: bytes) -> bytes:
    """The RFC 6962 leaf hash of one record."""
    return _sha256(_LEAF + record).digest()


def bulk_leaf_hash() -> Callable[[bytes], bytes]:
    """:func:`leaf_hash` for a caller about to hash many records (verify, a tree rebuilt
    from its records, a first checkpoint): OpenSSL's SHA-256, several times faster on
    records of a few hundred bytes and more, loaded (libcrypto) on this first call."""
    import hashlib

    openssl = hashlib.sha256
    leaf = _LEAF

    def hashed(record: bytes) -> bytes:
        return openssl(leaf + record).digest()

    return hashed


def node_hash(left: bytes, right: bytes) -> bytes:
    """The RFC 6962 interior node hash."""
    return _sha256(_NODE + left + right).digest()


def _split(size: int) -> int:
    """The largest power of two strictly below ``size`` (size >= 2)."""
    return 1 << ((size - 1).bit_length() - 1)


def range_hash(start: int, size: int, perfect: PerfectHash) -> bytes:
    """MTH of leaves [start, start + size); ``start`` must be aligned as the RFC's recursion
    makes it (a multiple of a power of two >= size), which every caller here guarantees."""
    if size == 0:
        return EMPTY_ROOT
    parts: list[bytes] = []
    offset = start
    for level in range(size.bit_length() - 1, -1, -1):
        if size >> level & 1:
            parts.append(perfect(level, offset >> level))
            offset += 1 << level
    result = parts[-1]
    for part in reversed(parts[:-1]):
        result = node_hash(part, result)
    return result


def inclusion_proof(index: int, size: int, perfect: PerfectHash) -> list[bytes]:
    """PATH(index, D[size]) of RFC 9162 §2.1.3.1, leaf-side sibling first."""
    if not 0 <= index < size:
        raise ProofError(f"leaf {index} is not in a tree of size {size}")
    path: list[bytes] = []
    start, count = 0, size
    # Walk from the root down, collecting siblings; reversed at the end (RFC order).
    while count > 1:
        k = _split(count)
        if index - start < k:
            path.append(range_hash(start + k, count - k, perfect))
            count = k
        else:
            path.append(range_hash(start, k, perfect))
            start, count = start + k, count - k
    path.reverse()
    return path


def consistency_proof(old: int, new: int, perfect: PerfectHash) -> list[bytes]:
    """PROOF(old, D[new]) of RFC 9162 §2.1.4.1 (empty when old is 0 or old == new)."""
    if not 0 <= old <= new:
        raise ProofError(f"no consistency proof from size {old} to size {new}")
    if old == 0 or old == new:
        return []
    proof: list[bytes] = []
    start, count, whole = 0, new, True
    while True:
        m = old - start
        if m == count:
            if not whole:
                proof.append(range_hash(start, count, perfect))
            break
        k = _split(count)
        if m <= k:
            proof.append(range_hash(start + k, count - k, perfect))
            count = k
        else:
            proof.append(range_hash(start, k, perfect))
            start, count, whole = start + k, count - k, False
    proof.reverse()
    return proof


def _shift_until_odd_or_zero(fn: int, sn: int) -> tuple[int, int]:
    while not fn & 1 and fn != 0:
        fn >>= 1
        sn >>= 1
    return fn, sn


def _check_hashes(name: str, hashes: Sequence[bytes]) -> None:
    for position, value in enumerate(hashes):
        if not isinstance(value, bytes) or len(value) != HASH_SIZE:
            raise ProofError(f"{name}[{position}] is not a {HASH_SIZE}-byte hash")


def verify_inclusion(
    leaf: bytes, index: int, size: int, path: Sequence[bytes], root: bytes
) -> None:
    """RFC 9162 §2.1.3.2; raises ProofError unless ``path`` proves leaf ``index`` in ``root``."""
    _check_hashes("inclusion proof", path)
    if not 0 <= index < size:
        raise ProofError(f"leaf {index} is not in a tree of size {size}")
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            raise ProofError("inclusion proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                fn, sn = _shift_until_odd_or_zero(fn, sn)
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("inclusion proof is shorter than the tree is deep")
    if r != root:
        raise ProofError(f"inclusion proof of leaf {index} does not lead to the root")


def verify_consistency(
    old: int, new: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """RFC 9162 §2.1.4.2; raises ProofError unless ``proof`` shows ``new`` extends ``old``."""
    _check_hashes("consistency proof", proof)
    if not 0 <= old <= new:
        raise ProofError(f"size {new} cannot extend size {old}")
    if old == new:
        if proof:
            raise ProofError("a proof between equal sizes must be empty")
        if old_root != new_root:
            raise ProofError(f"two different roots for the same tree size {old}")
        return
    if old == 0:
        if proof:
            raise ProofError("a proof from the empty tree must be empty")
        return
    if not proof:
        raise ProofError("the consistency proof is empty")
    path = list(proof)
    if old & (old - 1) == 0:  # an exact power of two: the old root is a node of the new tree
        path.insert(0, old_root)
    fn, sn = old - 1, new - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                fn, sn = _shift_until_odd_or_zero(fn, sn)
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("consistency proof is shorter than the tree is deep")
    if fr != old_root:
        raise ProofError(f"the proof does not lead to the old root (size {old})")
    if sr != new_root:
        raise ProofError(f"the proof does not lead to the new root (size {new})")


class CompactRange:
    """The right frontier of a growing tree: O(log n) hashes, leaves added one at a time.

    ``push`` returns the perfect subtrees the new leaf completed, as ``(level, index,
    hash)`` for levels >= 1, so a caller can compare them with stored nodes (verify) or
    store them (append); ``root()`` is the tree's root at the current size.
    """

    __slots__ = ("_stack", "size")

    def __init__(self) -> None:
        self._stack: list[bytes] = []  # perfect subtree hashes, largest first
        self.size = 0

    @classmethod
    def at(cls, size: int, perfect: PerfectHash) -> CompactRange:
        """The frontier of a tree of ``size`` leaves, read through ``perfect``."""
        frontier = cls()
        offset = 0
        for level in range(size.bit_length() - 1, -1, -1):
            if size >> level & 1:
                frontier._stack.append(perfect(level, offset >> level))
                offset += 1 << level
        frontier.size = size
        return frontier

    def add(self, leaf: bytes) -> None:
        """:meth:`push` without reporting the completed subtrees (the hot loop of verify)."""
        stack = self._stack
        value = leaf
        index = self.size
        while index & 1:
            value = _sha256(_NODE + stack.pop() + value).digest()
            index >>= 1
        stack.append(value)
        self.size += 1

    def push(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        completed: list[tuple[int, int, bytes]] = []
        value = leaf
        index = self.size
        level = 0
        while index & 1:
            value = node_hash(self._stack.pop(), value)
            level += 1
            index >>= 1
            completed.append((level, index, value))
        self._stack.append(value)
        self.size += 1
        return completed

    def frontier(self) -> list[bytes]:
        """The perfect subtree hashes making up the tree, largest (leftmost) first."""
        return list(self._stack)

    def root(self) -> bytes:
        if not self._stack:
            return EMPTY_ROOT
        result = self._stack[-1]
        for part in reversed(self._stack[:-1]):
            result = node_hash(part, result)
        return result


class MemoryTree:
    """Every perfect subtree hash of a tree held in memory (for ledgers without a stored
    tree, and for tests): O(n) memory, proofs at any size <= n like the stored tree."""

    def __init__(self, leaves: Sequence[bytes] = ()) -> None:
        self.levels: list[list[bytes]] = [[]]
        for leaf in leaves:
            self.append(leaf)

    @property
    def size(self) -> int:
        return len(self.levels[0])

    def append(self, leaf: bytes) -> None:
        self.levels[0].append(leaf)
        level, index = 0, len(self.levels[0]) - 1
        while index & 1:
            left, right = self.levels[level][index - 1], self.levels[level][index]
            level += 1
            index >>= 1
            if len(self.levels) == level:
                self.levels.append([])
            self.levels[level].append(node_hash(left, right))

    def perfect(self, level: int, index: int) -> bytes:
        try:
            return self.levels[level][index]
        except IndexError:
            raise ProofError(f"no perfect subtree at level {level} index {index}") from None

    def root(self, size: int | None = None) -> bytes:
        return range_hash(0, self.size if size is None else size, self.perfect)


def root_from_leaves(leaves: Sequence[bytes]) -> bytes:
    """MTH over ``leaves`` (leaf hashes), straight from the RFC's recursive definition."""
    if not leaves:
        return EMPTY_ROOT
    if len(leaves) == 1:
        return leaves[0]
    k = _split(len(leaves))
    return node_hash(root_from_leaves(leaves[:k]), root_from_leaves(leaves[k:]))
