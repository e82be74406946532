"""bvisor's own text for a terminal: every character a terminal could obey shown, not sent.

bvisor's messages and tables name things it did not choose — a recorded spec's paths and
argv, a directory's name, a ledger's strings (which whoever could write the ledger
chose). Written raw, an ESC or a C1 control in such a name is a command to the caller's
terminal (retitle it, rewrite lines above, forge a verdict). ``visible`` writes each such
character — C0 and C1 controls, DEL, format characters (bidi overrides, zero-width marks),
line and paragraph separators, lone surrogates — as a Python-style escape (``\\x1b``,
``\\u202e``); everything else is unchanged. ``UNSAFE`` is the one list of those Unicode
categories, also used by :mod:`bvisor.front.jsonview`.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["UNSAFE", "visible"]

UNSAFE = frozenset(("Cc", "Cf", "Zl", "Zp", "Cs"))

# Printable ASCII and newline/tab are never looked at (one scan for ordinary text).
_CANDIDATE = re.compile("[^\x20-\x7e\n\t]")


def _escape(match: re.Match[str]) -> str:
    char = match.group(0)
    if unicodedata.category(char) not in UNSAFE:
        return char
    point = ord(char)
    return f"\\x{point:02x}" if point < 0x100 else f"\\u{point:04x}"


def visible(text: str) -> str:
    """``text`` with every character a terminal could obey written as an escape."""
    return _CANDIDATE.sub(_escape, text)
