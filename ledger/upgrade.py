"""Adding the Merkle tree to a ledger that lacks it — only to one that verifies.

Ledgers written before the transparency tree (or appended to by such a writer since) have
no stored tree, or one that covers fewer events than there are. Readers never write: they
compute the tree from the records when they need it. A *writer*, before appending, brings
the tree up to date inside its own write transaction, atomically with the append:

1. a stored tree or checkpoint larger than the ledger means events it covered are gone —
   refused;
2. the whole ledger is verified (``bvisor.ledger.verify``) in that transaction; any finding
   refuses the append (a store that is not a valid ledger is never written to);
3. the tree and the run lookup tables are rebuilt from the records and the ``runs`` index.

This runs once per ledger (or once after an older bvisor appended to it), costing one
verify; every later append extends the tree in O(log n).
"""

from __future__ import annotations

from typing import Any

from bvisor.ledger.environment import META_TREE_SIZE, Environment, seq_key
from bvisor.ledger.errors import LedgerCorruptError

__all__ = ["add_tree"]

_CHUNK = 4096


def add_tree(txn: Any, environment: Environment, events: int) -> None:
    """Verify the ledger in ``txn`` and store its tree and lookup tables (see module)."""
    from bvisor.ledger import notary
    from bvisor.ledger.store import Snapshot
    from bvisor.ledger.tree import StoredTree, stored_tree_size
    from bvisor.ledger.verify import verify_snapshot

    stored = stored_tree_size(txn, environment)
    if stored is not None and stored > events:
        raise LedgerCorruptError(
            f"ledger {environment.path}: its Merkle tree covers {stored} events but it holds "
            f"{events}: events were removed; refusing to write (run verify)"
        )
    largest = notary.largest_size(txn, environment)
    if largest is not None and largest > events:
        raise LedgerCorruptError(
            f"ledger {environment.path}: a stored checkpoint covers {largest} events but the "
            f"ledger holds {events}: events were removed; refusing to write (run verify)"
        )
    result = verify_snapshot(Snapshot(environment, txn))
    if not result.ok:
        first = result.findings[0]
        where = "-" if first.seq is None else str(first.seq)
        raise LedgerCorruptError(
            f"ledger {environment.path} does not verify (seq {where}: {first.code}: "
            f"{first.detail}); refusing to write to it (run verify)"
        )
    if environment.tree is None:
        environment.open_optional(txn)
    for db in (environment.tree, environment.runids, environment.runstart):
        txn.drop(db, delete=False)
    txn.put(META_TREE_SIZE, seq_key(0), db=environment.meta)
    tree = StoredTree(txn, environment)
    size = 0
    chunk: list[bytes] = []
    for _key, value in txn.cursor(db=environment.events):
        chunk.append(bytes(value))
        if len(chunk) >= _CHUNK:
            size = tree.extend(size, chunk)
            chunk = []
    tree.extend(size, chunk)
    starts: dict[bytes, bytes] = {}
    for key, value in txn.cursor(db=environment.runs):
        row = bytes(key)
        if len(row) >= 5 and row[-4:] == b"\x00\x00\x00\x00":
            starts[row[:-4]] = bytes(value)
    for run_id, first_key in starts.items():
        txn.put(run_id, first_key, db=environment.runids)
        txn.put(first_key, run_id, db=environment.runstart)
