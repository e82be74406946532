"""Render canonical values as JSON for humans and other tools: bytes become lower-case hex.

One rendering for every command, so a digest printed by ``bvisor plan --json`` compares
equal, as text, to the same digest printed by ``bvisor-ledger show`` or ``bvisor-replay``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["dumps", "to_jsonable"]


def to_jsonable(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, Mapping):
        return {str(key): to_jsonable(item) for key, item in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [to_jsonable(item) for item in value]
    return value


def dumps(value: Any, *, indent: int | None = None) -> str:
    return json.dumps(to_jsonable(value), indent=indent, sort_keys=True, ensure_ascii=False)
