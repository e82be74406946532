"""Say *where* two canonical values first differ, for one-line check details.

"h_a differs" tells an auditor that something changed; ``requirements[2].verdict:
recorded 'enforced', re-derived 'mediated'`` tells them what. Values are canonical
(maps with text keys, lists, scalars), so a plain recursive walk in key order is enough.
"""

from __future__ import annotations

from collections.abc import Mapping

from bvisor import canonical

__all__ = ["first_difference", "show"]


def show(value: object, limit: int = 48) -> str:
    """A value for a detail line: bytes as hex, long text cut with an ellipsis."""
    text = value.hex() if isinstance(value, bytes) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def first_difference(recorded: object, derived: object, path: str = "") -> str | None:
    """None when equal; else ``"<path>: recorded X, re-derived Y"`` at the first difference."""
    where = path or "value"
    if isinstance(recorded, Mapping) and isinstance(derived, Mapping):
        for key in sorted(set(recorded) | set(derived)):
            if key not in derived:
                return f"{_join(path, key)}: recorded but not re-derived"
            if key not in recorded:
                return f"{_join(path, key)}: re-derived but not recorded"
            found = first_difference(recorded[key], derived[key], _join(path, key))
            if found is not None:
                return found
        return None
    if isinstance(recorded, list | tuple) and isinstance(derived, list | tuple):
        for index, (a, b) in enumerate(zip(recorded, derived, strict=False)):
            found = first_difference(a, b, f"{path}[{index}]")
            if found is not None:
                return found
        if len(recorded) != len(derived):
            return f"{where}: recorded {len(recorded)} items, re-derived {len(derived)}"
        return None
    if type(recorded) is type(derived) and _encode(recorded) == _encode(derived):
        return None
    return f"{where}: recorded {show(recorded)}, re-derived {show(derived)}"


def _encode(value: object) -> bytes | None:
    try:
        return canonical.encode(value)
    except canonical.CanonicalError:
        return None
