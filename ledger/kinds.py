"""Event kinds: the grammar every kind must follow, and the names the runner writes.

A kind is a dotted lower-case name such as ``plan.admitted`` or ``note.external``: at least
two segments, the first a plain identifier, later ones may also contain ``-``. The grammar
is strict so that kinds can be matched, grouped and shown without escaping, and so that a
typo such as ``Plan.Admitted`` is refused at the door instead of silently forming a second
vocabulary. The run kinds below are those of docs/FORMATS.md §2, in the order a run writes them.
"""

from __future__ import annotations

import re
from typing import Final

from bvisor.ledger.errors import InvalidKindError

__all__ = [
    "KIND_PATTERN",
    "LAUNCHER_PHASE",
    "LOWERING_ENTRY",
    "MAX_KIND_LENGTH",
    "NOTE_EXTERNAL",
    "PLAN_ADMITTED",
    "PLAN_REFUSED",
    "REPORT_SEALED",
    "RUN_DENIED",
    "RUN_KINDS",
    "RUN_STREAMS",
    "RUN_TERMINAL",
    "check_kind",
    "is_valid_kind",
]

KIND_PATTERN: Final = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_-]*)+")
MAX_KIND_LENGTH: Final = 128

PLAN_ADMITTED: Final = "plan.admitted"
PLAN_REFUSED: Final = "plan.refused"
LOWERING_ENTRY: Final = "lowering.entry"
LAUNCHER_PHASE: Final = "launcher.phase"
RUN_TERMINAL: Final = "run.terminal"
RUN_DENIED: Final = "run.denied"  # one per denied-attempt entry of the report
RUN_STREAMS: Final = "run.streams"
REPORT_SEALED: Final = "report.sealed"
NOTE_EXTERNAL: Final = "note.external"

RUN_KINDS: Final = (
    PLAN_ADMITTED,
    PLAN_REFUSED,
    LOWERING_ENTRY,
    LAUNCHER_PHASE,
    RUN_TERMINAL,
    RUN_DENIED,
    RUN_STREAMS,
    REPORT_SEALED,
)


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
