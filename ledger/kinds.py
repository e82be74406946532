"""Event kinds: the grammar every kind must follow.

A kind is a dotted lower-case name such as ``plan.admitted`` or ``note.external``: at least
two segments, the first a plain identifier, later ones may also contain ``-``. The grammar
is strict so that kinds can be matched, grouped and shown without escaping, and so that a
typo such as ``Plan.Admitted`` is refused at the door instead of silently forming a second
vocabulary. Which kinds a *run* writes, with their payloads and order, is not the ledger's
business (it knows events, not runs): that is :mod:`bvisor.contract.events`.
"""

from __future__ import annotations

import re
from typing import Final

from bvisor.ledger.errors import InvalidKindError

__all__ = ["KIND_PATTERN", "MAX_KIND_LENGTH", "check_kind", "is_valid_kind"]

KIND_PATTERN: Final = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_-]*)+")
MAX_KIND_LENGTH: Final = 128


def is_valid_kind(kind: object) -> bool:
    """True when ``kind`` is a text string in the kind grammar and length bound."""
    return (
        isinstance(kind, str)
        and len(kind) <= MAX_KIND_LENGTH
        and KIND_PATTERN.fullmatch(kind) is not None
    )


def check_kind(kind: object) -> str:
    """Return ``kind`` unchanged, or raise InvalidKindError saying what is wrong with it."""
    if not isinstance(kind, str):
        raise InvalidKindError(f"kind: expected text, got {type(kind).__name__}")
    if len(kind) > MAX_KIND_LENGTH:
        raise InvalidKindError(f"kind: longer than {MAX_KIND_LENGTH} characters")
    if KIND_PATTERN.fullmatch(kind) is None:
        raise InvalidKindError(
            f"kind: {kind!r} is not a dotted lower-case name such as 'note.external' "
            f"(pattern {KIND_PATTERN.pattern})"
        )
    return kind
