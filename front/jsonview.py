"""Render canonical values as JSON for humans and other tools: bytes become lower-case hex.

One rendering for every command, so a digest printed by ``bvisor plan --json`` compares
equal, as text, to the same digest printed by ``bvisor-ledger show`` or ``bvisor-replay``.

Strings may be the workload's (its output, its file names): every character a terminal
could obey or that reorders a line — C0 and C1 controls, DEL, format characters (bidi
overrides, zero-width marks) and the line and paragraph separators — is written as a
``\\uXXXX`` escape, never raw. JSON decodes it to the same text; other non-ASCII stays
readable.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

from bvisor.front.visible import UNSAFE

__all__ = ["dumps", "to_jsonable"]


def to_jsonable(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, Mapping):
        return {str(key): to_jsonable(item) for key, item in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [to_jsonable(item) for item in value]
    return value


# Outside a JSON string every character is ASCII, so escaping by pattern is safe; only
# non-ASCII characters (and DEL) are looked at, so ASCII output costs one scan.
_CANDIDATE = re.compile("[^\x00-\x7e]")


def _escape(match: re.Match[str]) -> str:
    char = match.group(0)
    if unicodedata.category(char) not in UNSAFE:
        return char
    units = char.encode("utf-16-be")
    return "".join(f"\\u{units[i]:02x}{units[i + 1]:02x}" for i in range(0, len(units), 2))


def dumps(value: Any, *, indent: int | None = None) -> str:
    text = json.dumps(to_jsonable(value), indent=indent, sort_keys=True, ensure_ascii=False)
    return _CANDIDATE.sub(_escape, text)
