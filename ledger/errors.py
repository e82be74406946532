"""The ledger's error types: one base class, one subclass per thing a caller can act on.

Every refusal the ledger makes is a :class:`LedgerError` carrying a message that names the
bad field or the path, so the command line can print it and exit without a traceback, and
so callers can tell "you asked for something wrong" (nothing was written) from "the ledger
on disk is damaged" (run ``verify``).
"""

from __future__ import annotations

__all__ = [
    "EventNotFoundError",
    "InvalidKindError",
    "InvalidPayloadError",
    "InvalidRunIdError",
    "LedgerCorruptError",
    "LedgerDiskFullError",
    "LedgerError",
    "LedgerForkError",
    "LedgerFormatError",
    "LedgerNotFoundError",
    "LedgerUsageError",
    "PayloadTooLargeError",
    "RecordIncompleteError",
]


class LedgerError(Exception):
    """Base class for every error the ledger raises on purpose."""


class LedgerNotFoundError(LedgerError):
    """The path holds no ledger (missing, not a directory, or not a bvisor LMDB store)."""


class LedgerFormatError(LedgerError):
    """The store is a bvisor ledger of a format version this code does not know."""


class LedgerCorruptError(LedgerError):
    """Bytes on disk contradict the ledger's own rules; ``verify`` says exactly where."""


class LedgerUsageError(LedgerError):
    """The caller misused the API (closed handle, write on a read-only handle, bad range)."""


class InvalidKindError(LedgerError):
    """An event kind outside the dotted lower-case grammar; nothing was written."""


class InvalidRunIdError(LedgerError):
    """A run id that is not 1..64 bytes; nothing was written."""


class InvalidPayloadError(LedgerError):
    """A payload the canonical encoder refuses; nothing was written."""


class PayloadTooLargeError(InvalidPayloadError):
    """A payload whose canonical encoding exceeds the per-event bound; nothing was written."""


class LedgerForkError(LedgerError):
    """A ledger handle (or its LMDB environment) was used in a process forked after opening."""


class EventNotFoundError(LedgerError):
    """No event with the requested sequence number, or no events for the requested run."""


class LedgerDiskFullError(LedgerError):
    """A write failed because the ledger's filesystem is full; nothing of it was recorded."""


class RecordIncompleteError(LedgerError):
    """A run's record was begun (its first commit is durable) but a later part of it could
    not be written: the ledger holds the beginning, and replay shows the run as incomplete.

    The ledger knows events, not what they say: the message, made by whoever recorded the
    run (``bvisor.front.api``), says how the run ended; the ledger keeps only which run.
    """

    def __init__(self, message: str, run_id: bytes) -> None:
        super().__init__(message)
        self.run_id = run_id
