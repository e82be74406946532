"""Deterministic CBOR: one encoding per value, and a decoder that accepts nothing else.

Every digest in bvisor (h_p, h_a, h_l, plan ids, report seals, ledger event hashes) is
taken over bytes produced here, so two parties that hold the same value must produce the
same bytes, and a reader must never accept two different byte strings for one value —
otherwise a tamperer could re-encode a record without changing its meaning or its hash
check. The rules are RFC 8949 §4.2.1 "core deterministic encoding" narrowed further:

* integers in the shortest head form, within the 64-bit CBOR range (no bignum tags);
* byte strings, text strings (valid UTF-8), arrays and maps with definite lengths;
* map keys are text strings only, unique, sorted bytewise by their encoded form;
* ``true``, ``false`` and ``null`` are the only simple values;
* no floats, no tags, no ``undefined``, no indefinite lengths.

Encoding is delegated to ``cbor2`` (its canonical mode produces exactly this form once the
value has been checked to contain only the allowed types). Decoding is our own small
parser: it fails with :class:`CanonicalError` naming the byte offset and the rule broken,
bounds nesting depth and total size before allocating anything, and finally re-encodes
the value and demands the very same bytes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeAlias

import cbor2

__all__ = [
    "MAX_DEPTH",
    "MAX_INPUT_BYTES",
    "CanonicalError",
    "Value",
    "check_value",
    "decode",
    "encode",
]

# A canonical value: what encode() accepts and decode() returns (lists, never tuples).
Value: TypeAlias = bool | int | bytes | str | Sequence["Value"] | Mapping[str, "Value"] | None

MAX_DEPTH = 64
MAX_INPUT_BYTES = 64 * 1024 * 1024
_UINT64_MAX = (1 << 64) - 1
_NINT64_MIN = -(1 << 64)


class CanonicalError(ValueError):
    """A value cannot be encoded canonically, or bytes are not a canonical encoding."""


def check_value(value: object, path: str = "$", depth: int = 0) -> None:
    """Raise CanonicalError (naming the path) unless ``value`` is encodable canonically."""
    if depth > MAX_DEPTH:
        raise CanonicalError(f"{path}: nesting deeper than {MAX_DEPTH}")
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, int):
        if not _NINT64_MIN <= value <= _UINT64_MAX:
            raise CanonicalError(f"{path}: integer {value} outside the 64-bit CBOR range")
        return
    if isinstance(value, (bytes, str)):
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise CanonicalError(f"{path}: text is not valid UTF-8 ({exc.reason})") from None
        return
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            check_value(item, f"{path}[{index}]", depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise CanonicalError(f"{path}: map key {key!r} is not a text string")
            try:
                key.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise CanonicalError(
                    f"{path}: map key {key!r} is not valid UTF-8 ({exc.reason})"
                ) from None
            check_value(item, f"{path}.{key}", depth + 1)
        return
    raise CanonicalError(f"{path}: {type(value).__name__} has no canonical encoding")


def encode(value: object) -> bytes:
    """Encode ``value`` canonically; CanonicalError names the first offending path."""
    check_value(value)
    return cbor2.dumps(value, canonical=True)


def decode(data: bytes | bytearray | memoryview, *, max_bytes: int = MAX_INPUT_BYTES) -> Value:
    """Decode exactly one canonical CBOR item occupying all of ``data``."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise CanonicalError(f"expected bytes, got {type(data).__name__}")
    raw = bytes(data)
    if len(raw) > max_bytes:
        raise CanonicalError(f"input of {len(raw)} bytes exceeds the {max_bytes}-byte bound")
    if not raw:
        raise CanonicalError("offset 0: truncated (empty input)")
    parser = _Parser(raw)
    value = parser.item(0)
    if parser.pos != len(raw):
        raise CanonicalError(f"offset {parser.pos}: {len(raw) - parser.pos} trailing bytes")
    if cbor2.dumps(value, canonical=True) != raw:  # defence in depth: one encoding only
        raise CanonicalError("bytes do not re-encode identically (non-canonical form)")
    return value


class _Parser:
    """A bounded recursive-descent reader over one byte string."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def _take(self, count: int) -> bytes:
        end = self.pos + count
        if count < 0 or end > len(self.data):
            raise CanonicalError(
                f"offset {self.pos}: truncated (need {count} bytes, "
                f"{len(self.data) - self.pos} remain)"
            )
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def _head(self) -> tuple[int, int, int, int]:
        start = self.pos
        initial = self._take(1)[0]
        major, info = initial >> 5, initial & 0x1F
        if info < 24:
            return major, info, info, start
        if info > 27:
            if info == 31:
                raise CanonicalError(f"offset {start}: indefinite length is not allowed")
            raise CanonicalError(f"offset {start}: reserved additional information {info}")
        width = 1 << (info - 24)
        argument = int.from_bytes(self._take(width), "big")
        minimum = 24 if width == 1 else 1 << (8 * (width // 2))
        if major != 7 and argument < minimum:
            raise CanonicalError(f"offset {start}: integer head is not in shortest form")
        return major, info, argument, start

    def item(self, depth: int) -> Value:
        if depth > MAX_DEPTH:
            raise CanonicalError(f"offset {self.pos}: nesting deeper than {MAX_DEPTH}")
        major, info, argument, start = self._head()
        if major == 0:
            return argument
        if major == 1:
            return -1 - argument
        if major == 2:
            return self._take(argument)
        if major == 3:
            raw = self._take(argument)
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError:
                raise CanonicalError(f"offset {start}: text string is not valid UTF-8") from None
        if major == 4:
            self._check_count(argument, start)
            return [self.item(depth + 1) for _ in range(argument)]
        if major == 5:
            self._check_count(argument, start)
            return self._map(argument, depth, start)
        if major == 6:
            raise CanonicalError(f"offset {start}: tags are not allowed")
        return self._simple(info, argument, start)

    def _check_count(self, count: int, start: int) -> None:
        # Every element takes at least one byte: refuse absurd counts before looping.
        if count > len(self.data) - self.pos:
            raise CanonicalError(f"offset {start}: declares {count} items, not enough bytes")

    def _map(self, count: int, depth: int, start: int) -> dict[str, Value]:
        result: dict[str, Value] = {}
        previous: bytes | None = None
        for _ in range(count):
            key_start = self.pos
            key = self.item(depth + 1)
            if not isinstance(key, str):
                raise CanonicalError(f"offset {key_start}: map key is not a text string")
            encoded_key = self.data[key_start : self.pos]
            if previous is not None:
                if encoded_key == previous:
                    raise CanonicalError(f"offset {key_start}: duplicate map key {key!r}")
                if encoded_key < previous:
                    raise CanonicalError(f"offset {key_start}: map keys are not sorted")
            previous = encoded_key
            result[key] = self.item(depth + 1)
        return result

    def _simple(self, info: int, argument: int, start: int) -> Value:
        if info >= 25:
            raise CanonicalError(f"offset {start}: floating-point values are not allowed")
        if info == 24:
            raise CanonicalError(f"offset {start}: simple value {argument} is not allowed")
        if argument == 20:
            return False
        if argument == 21:
            return True
        if argument == 22:
            return None
        if argument == 23:
            raise CanonicalError(f"offset {start}: undefined is not allowed")
        raise CanonicalError(f"offset {start}: simple value {argument} is not allowed")
