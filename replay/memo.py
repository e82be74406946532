"""Bounded memos for replay's pure derivations, keyed on the exact bytes of their inputs.

Replay re-derives everything from the ledger, and one host's ledger repeats the same
inputs constantly: the same profile in every run, the same spec, admission and lowering
in every run of one command, most launcher lines and report facts. Decoding and judging
them is a pure function of their canonical bytes, so a memo keyed on those bytes returns
exactly what a fresh derivation would.

The rule that makes a memo sound: its key is the *complete* input of what it remembers,
as exact bytes (or values decoded from them), never a digest or an id the ledger states
— a ledger could state anything — and only successes are kept (a failure is derived
again, so its message names the event it is about).

Bounded: a memo holds at most ``limit`` entries whose keys hold at most ``budget`` bytes
in all, and is cleared wholesale when either would be passed; a key of more than
``max_bytes`` is never kept — a hostile ledger of distinct multi-megabyte inputs must not
be held in memory all at once, only one run's worth.
"""

from __future__ import annotations

from typing import Generic, TypeVar

__all__ = ["Memo"]

K = TypeVar("K")
V = TypeVar("V")


class Memo(Generic[K, V]):
    """One bounded memo (see module). ``table`` is the dict itself, for lookups in loops
    that run once per event (``memo.table.get(key)``); entries go in through :meth:`put`."""

    __slots__ = ("budget", "held", "limit", "max_bytes", "table")

    def __init__(self, limit: int, max_bytes: int, budget: int = 4 << 20) -> None:
        self.limit = limit
        self.max_bytes = max_bytes
        self.budget = budget
        self.held = 0
        self.table: dict[K, V] = {}

    def get(self, key: K) -> V | None:
        return self.table.get(key)

    def put(self, key: K, value: V, size: int) -> V:
        """Keep ``value`` under ``key`` (``size``: the bytes the key holds); returns it."""
        if size <= self.max_bytes:
            if len(self.table) >= self.limit or self.held + size > self.budget:
                self.clear()
            self.table[key] = value
            self.held += size
        return value

    def clear(self) -> None:
        self.table.clear()
        self.held = 0
