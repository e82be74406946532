"""Strict readers for canonical values, shared by every ``from_value``.

A decoded canonical value is plain data (maps, lists, text, ints, bytes, bools, null).
Turning it back into contract types must be as strict as the CBOR decoder itself: every
key known, every type exact (``True`` is not an integer here), every enum text one of
its variants. Each reader takes the key path of the value so the error names it.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping, Sequence
from enum import Enum
from typing import TypeVar

from bvisor.contract.errors import ContractError, join_path

__all__ = [
    "U64_MAX",
    "as_tuple",
    "check_abs_path",
    "check_no_nul",
    "enum_choices",
    "expect_array",
    "expect_bool",
    "expect_bytes",
    "expect_enum",
    "expect_int",
    "expect_map",
    "expect_text",
    "expect_variant",
]

E = TypeVar("E", bound=Enum)

U64_MAX = (1 << 64) - 1


def type_name(value: object) -> str:
    """A user-facing name for the type of a (decoded or parsed) value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (bytes, bytearray)):
        return "byte string"
    if isinstance(value, Mapping):
        return "table"
    if isinstance(value, (list, tuple)):
        return "array"
    return type(value).__name__


def expect_map(
    value: object,
    path: str,
    required: Sequence[str] = (),
    optional: Sequence[str] = (),
) -> Mapping[str, object]:
    """A map with exactly the ``required`` keys plus any of ``optional``, and no others."""
    if not isinstance(value, Mapping):
        raise ContractError(path, f"expected a table, got {type_name(value)}", "wrong-type")
    for key in value:
        if not isinstance(key, str):
            raise ContractError(path, f"key {key!r} is not a string", "wrong-type")
        if key not in required and key not in optional:
            allowed = ", ".join(sorted([*required, *optional])) or "no keys"
            raise ContractError(
                join_path(path, key), f"unknown key (allowed: {allowed})", "unknown-key"
            )
    for key in required:
        if key not in value:
            raise ContractError(join_path(path, key), "missing required key", "missing-key")
    return value


def expect_text(value: object, path: str, *, nonempty: bool = False) -> str:
    if not isinstance(value, str):
        raise ContractError(path, f"expected a string, got {type_name(value)}", "wrong-type")
    if nonempty and not value:
        raise ContractError(path, "must not be empty", "empty")
    return value


def expect_int(
    value: object, path: str, *, minimum: int | None = None, maximum: int | None = None
) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ContractError(path, f"expected an integer, got {type_name(value)}", "wrong-type")
    if minimum is not None and value < minimum:
        raise ContractError(path, f"must be at least {minimum} (got {value})", "out-of-range")
    if maximum is not None and value > maximum:
        raise ContractError(path, f"must be at most {maximum} (got {value})", "out-of-range")
    return value


def expect_bool(value: object, path: str) -> bool:
    if not isinstance(value, bool):
        raise ContractError(path, f"expected a boolean, got {type_name(value)}", "wrong-type")
    return value


def expect_bytes(value: object, path: str, *, size: int | None = None) -> bytes:
    if not isinstance(value, bytes):
        raise ContractError(path, f"expected a byte string, got {type_name(value)}", "wrong-type")
    if size is not None and len(value) != size:
        raise ContractError(path, f"must be {size} bytes (got {len(value)})", "wrong-size")
    return value


def expect_array(value: object, path: str) -> Sequence[object]:
    if not isinstance(value, (list, tuple)):
        raise ContractError(path, f"expected an array, got {type_name(value)}", "wrong-type")
    return value


def enum_choices(enum_cls: type[Enum]) -> str:
    return ", ".join(str(member.value) for member in enum_cls)


def expect_enum(enum_cls: type[E], value: object, path: str) -> E:
    """The member of ``enum_cls`` whose text value is ``value``."""
    if isinstance(value, str):
        member = enum_cls._value2member_map_.get(value)  # the member with that value
        if member is not None and member.value == value:
            return member  # type: ignore[return-value]
    shown = repr(value) if isinstance(value, str) else type_name(value)
    raise ContractError(
        path, f"expected one of {enum_choices(enum_cls)} (got {shown})", "bad-variant"
    )


def expect_variant(value: object, path: str, choices: Sequence[str]) -> tuple[str, object]:
    """Split an enum-with-data value: ``"unit"`` -> (unit, None); ``{name: x}`` -> (name, x)."""
    if isinstance(value, str):
        name, payload = value, None
    elif isinstance(value, Mapping) and len(value) == 1:
        ((name, payload),) = value.items()
    else:
        raise ContractError(
            path,
            f"expected a variant name or a one-entry table, got {type_name(value)}",
            "wrong-type",
        )
    if name not in choices:
        raise ContractError(
            path, f"expected one of {', '.join(choices)} (got {name!r})", "bad-variant"
        )
    return str(name), payload


def check_no_nul(text: str, path: str) -> None:
    if "\x00" in text:
        raise ContractError(path, "must not contain a NUL byte", "nul-byte")


def check_abs_path(value: object, path: str, *, normalized: bool = True) -> str:
    """An absolute path without NUL; with ``normalized``, also in lexical normal form.

    Non-normal paths are refused rather than silently rewritten: ``/a/b/..`` names
    ``/a`` only when ``b`` is not a symlink, so a lexical rewrite could change which
    object the kernel would confine.
    """
    text = expect_text(value, path, nonempty=True)
    check_no_nul(text, path)
    if not text.startswith("/"):
        raise ContractError(path, f"must be an absolute path (got {text!r})", "relative-path")
    if normalized:
        norm = posixpath.normpath(text)
        if norm.startswith("//"):
            norm = "/" + norm.lstrip("/")
        parts = text.split("/")
        if norm != text or ".." in parts:
            raise ContractError(
                path,
                f"must be a normalized path (got {text!r}, did you mean {norm!r}?)",
                "unnormalized-path",
            )
    return text


def as_tuple(value: object, path: str) -> tuple[object, ...]:
    """Accept any list/tuple for a sequence field and freeze it as a tuple."""
    if isinstance(value, tuple):
        return value
    if isinstance(value, list):
        return tuple(value)
    raise ContractError(path, f"expected a sequence, got {type_name(value)}", "wrong-type")
