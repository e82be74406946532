"""The evidence ledger: hash-chained events in LMDB, appended durably, verified from bytes.

``ledger`` knows events and bytes only — never plans or launchers. The record layout and
hashes are in :mod:`bvisor.ledger.record`, the store in :mod:`bvisor.ledger.store`, the
independent re-derivation in :mod:`bvisor.ledger.verify`, and the transparency tree,
checkpoints, proofs and witness in ``merkle``, ``tree``, ``notary``, ``checkpoint``,
``note``, ``proofs``, ``bundle``, ``dsse`` and ``witness``. Every byte format is specified
in ``docs/FORMATS.md``.
"""

from __future__ import annotations

from bvisor.ledger.errors import (
    EventNotFoundError,
    InvalidKindError,
    InvalidPayloadError,
    InvalidRunIdError,
    LedgerCorruptError,
    LedgerError,
    LedgerForkError,
    LedgerFormatError,
    LedgerNotFoundError,
    LedgerUsageError,
    PayloadTooLargeError,
)
from bvisor.ledger.paths import default_ledger_path
from bvisor.ledger.record import MAX_PAYLOAD_BYTES, Event, ProvenRecord
from bvisor.ledger.store import Head, Ledger, Receipt, RunSummary
from bvisor.ledger.verify import Finding, VerifyResult, parse_head, verify, verify_runs

__all__ = [
    "MAX_PAYLOAD_BYTES",
    "Event",
    "EventNotFoundError",
    "Finding",
    "Head",
    "InvalidKindError",
    "InvalidPayloadError",
    "InvalidRunIdError",
    "Ledger",
    "LedgerCorruptError",
    "LedgerError",
    "LedgerForkError",
    "LedgerFormatError",
    "LedgerNotFoundError",
    "LedgerUsageError",
    "PayloadTooLargeError",
    "ProvenRecord",
    "Receipt",
    "RunSummary",
    "VerifyResult",
    "default_ledger_path",
    "parse_head",
    "verify",
    "verify_runs",
]
