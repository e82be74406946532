"""Naming a recorded run by a unique prefix of its hex id, as people do with git commits.

Both ``bvisor-ledger`` and ``bvisor-replay`` accept such prefixes, so the rule (hex only,
exactly one match, an ambiguous prefix lists candidates) lives here once.
:func:`resolve_in_ledger` asks the ledger's ``runids`` table (O(log n + matches));
:func:`resolve_run_prefix` looks through summaries a caller already has.
"""

from __future__ import annotations

from collections.abc import Sequence

from bvisor.ledger.store import Ledger, RunSummary

__all__ = ["RunLookupError", "RunNotFound", "resolve_in_ledger", "resolve_run_prefix"]


class RunLookupError(ValueError):
    """No run, or more than one, starts with the given prefix (or it is not hex)."""


class RunNotFound(RunLookupError):
    """The prefix is well formed but no recorded run starts with it."""


def _prefix(text: str) -> str:
    prefix = text.strip().lower()
    if not prefix or any(c not in "0123456789abcdef" for c in prefix):
        raise RunLookupError(f"run id {text!r}: expected hexadecimal digits")
    return prefix


def _one(text: str, matches: Sequence[bytes]) -> bytes:
    if not matches:
        raise RunNotFound(f"run id {text!r}: no run in the ledger starts with it")
    if len(matches) > 1:
        shown = ", ".join(m.hex()[:16] for m in matches[:5])
        more = f" and {len(matches) - 5} more" if len(matches) > 5 else ""
        raise RunLookupError(
            f"run id {text!r} is ambiguous: {len(matches)} runs start with it "
            f"({shown}{more}); give more digits"
        )
    return matches[0]


def resolve_run_prefix(text: str, runs: Sequence[RunSummary]) -> bytes:
    """The one run id in ``runs`` whose hex form starts with ``text``."""
    prefix = _prefix(text)
    return _one(text, [run.run_id for run in runs if run.run_id.hex().startswith(prefix)])


def resolve_in_ledger(text: str, ledger: Ledger) -> bytes:
    """The one run id recorded in ``ledger`` whose hex form starts with ``text``."""
    prefix = _prefix(text)
    whole = bytes.fromhex(prefix[: len(prefix) // 2 * 2])
    nibble = int(prefix[-1], 16) if len(prefix) % 2 else None
    return _one(text, ledger.run_ids_with_prefix(whole, nibble))
