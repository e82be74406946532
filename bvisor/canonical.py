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
value has been checked to contain only the allowed types). Decoding is strict: the bytes are
first proven canonical, every rule above, with nesting bounded by ``MAX_DEPTH`` and size by
``max_bytes`` (default ``MAX_INPUT_BYTES``), declared counts checked against the bytes left
before any loop, and text exactly as Python's strict UTF-8 decoder defines it (no
surrogates, no overlong forms, nothing above U+10FFFF); a refusal is a
:class:`CanonicalError` reading ``offset N: <rule>`` (with ``.offset`` and ``.rule`` set).
Only then does ``cbor2`` build the value.

Two implementations do the proving and must agree on every input (same verdict, same
offset, same rule; tests/canonical checks this differentially):

* the native validator (``canonical_native.c``, one pass, no allocation, no recursion),
  used whenever it is available: it is what makes reading a ledger fast;
* the pure-Python reference parser below (:func:`reference_decode`), which is the
  specification in executable form and the oracle the native one is tested against.

If the native module is missing and cannot be built, bvisor falls back to the reference —
same results, only slower — and says so once with a ``RuntimeWarning``; :func:`backend`
names the one in use. Nothing falls back silently, and no input is ever judged by both.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from enum import Enum
from typing import Any, TypeAlias, cast

import cbor2

from bvisor import canonical_native

__all__ = [
    "MAX_DEPTH",
    "MAX_INPUT_BYTES",
    "CanonicalError",
    "Rule",
    "Value",
    "array_spans",
    "backend",
    "check_value",
    "decode",
    "encode",
    "map_spans",
    "reference_array_spans",
    "reference_decode",
    "reference_map_spans",
    "same_value",
    "validate",
]

# A canonical value: what encode() accepts and decode() returns (lists, never tuples).
Value: TypeAlias = bool | int | bytes | str | Sequence["Value"] | Mapping[str, "Value"] | None

MAX_DEPTH = 64
MAX_INPUT_BYTES = 64 * 1024 * 1024
_UINT64_MAX = (1 << 64) - 1
_NINT64_MIN = -(1 << 64)
_ARRAY, _MAP = 4, 5


class Rule(Enum):
    """Every rule a decoder refusal can name. The member names are the native validator's
    codes (``BV_CANON_<NAME>`` in canonical_native.c); :func:`_refused` words each one."""

    EMPTY = "empty input"
    TRUNCATED = "truncated"
    TRAILING = "trailing bytes"
    INDEFINITE = "indefinite length"
    RESERVED_INFO = "reserved additional information"
    NOT_SHORTEST = "non-shortest head"
    BAD_UTF8 = "invalid UTF-8"
    COUNT_TOO_LARGE = "count beyond the input"
    TAG = "tag"
    FLOAT = "floating-point value"
    SIMPLE = "simple value"
    UNDEFINED = "undefined"
    TOO_DEEP = "nesting too deep"
    KEY_NOT_TEXT = "non-text map key"
    KEY_DUPLICATE = "duplicate map key"
    KEY_UNSORTED = "unsorted map keys"
    NOT_REENCODED = "does not re-encode identically"


class CanonicalError(ValueError):
    """A value cannot be encoded canonically, or bytes are not a canonical encoding.

    A decoder refusal carries ``offset`` (where in the bytes) and ``rule`` (which rule);
    both are None for refusals that are not about a place in the bytes.
    """

    def __init__(self, message: str, *, offset: int | None = None, rule: Rule | None = None):
        super().__init__(message)
        self.offset = offset
        self.rule = rule


def _refused(rule: Rule, offset: int, arg: int, data: bytes) -> CanonicalError:
    """The one wording of each decoder refusal (``offset N: <rule>``), for both decoders.

    ``arg`` is the one number some rules report: bytes needed (TRUNCATED), bytes left over
    (TRAILING), the additional information (RESERVED_INFO), the declared count
    (COUNT_TOO_LARGE), the simple value (SIMPLE) or the depth bound (TOO_DEEP).
    """
    match rule:
        case Rule.EMPTY:
            detail = "truncated (empty input)"
        case Rule.TRUNCATED:
            detail = f"truncated (need {arg} bytes, {len(data) - offset} remain)"
        case Rule.TRAILING:
            detail = f"{arg} trailing bytes"
        case Rule.INDEFINITE:
            detail = "indefinite length is not allowed"
        case Rule.RESERVED_INFO:
            detail = f"reserved additional information {arg}"
        case Rule.NOT_SHORTEST:
            detail = "integer head is not in shortest form"
        case Rule.BAD_UTF8:
            detail = "text string is not valid UTF-8"
        case Rule.COUNT_TOO_LARGE:
            detail = f"declares {arg} items, not enough bytes"
        case Rule.TAG:
            detail = "tags are not allowed"
        case Rule.FLOAT:
            detail = "floating-point values are not allowed"
        case Rule.SIMPLE:
            detail = f"simple value {arg} is not allowed"
        case Rule.UNDEFINED:
            detail = "undefined is not allowed"
        case Rule.TOO_DEEP:
            detail = f"nesting deeper than {arg}"
        case Rule.KEY_NOT_TEXT:
            detail = "map key is not a text string"
        case Rule.KEY_DUPLICATE:
            detail = f"duplicate map key {_text_at(data, offset)!r}"
        case Rule.KEY_UNSORTED:
            detail = "map keys are not sorted"
        case Rule.NOT_REENCODED:
            return CanonicalError(
                "bytes do not re-encode identically (non-canonical form)", rule=rule
            )
    return CanonicalError(f"offset {offset}: {detail}", offset=offset, rule=rule)


def _text_at(data: bytes, offset: int) -> str:
    """The text string whose (already validated) encoding starts at ``offset``."""
    parser = _Parser(data)
    parser.pos = offset
    text = parser.item(0)
    return text if isinstance(text, str) else repr(text)


def check_value(value: object, path: str = "$", depth: int = 0) -> None:
    """Raise CanonicalError (naming the path) unless ``value`` is encodable canonically."""
    if _plainly_encodable(value, depth):
        return
    _check_naming(value, path, depth)


def _plainly_encodable(value: object, depth: int) -> bool:
    """True when ``value`` is made only of the exact built-in types :func:`check_value`
    accepts, within its bounds; False leaves the verdict (and the path in its message)
    to :func:`_check_naming`, which also judges subclasses. Every value a run encodes is
    plain, and building a path for each of its items was most of the cost of a check."""
    if depth > MAX_DEPTH:
        return False
    if type(value) is str:
        return value.isascii() or _utf8(value)
    if type(value) is int:
        return _NINT64_MIN <= value <= _UINT64_MAX
    if value is None or type(value) is bool or type(value) is bytes:
        return True
    if type(value) is dict:
        for key, item in value.items():
            if type(key) is not str or not (key.isascii() or _utf8(key)):
                return False
            if not _plainly_encodable(item, depth + 1):
                return False
        return True
    if type(value) is list or type(value) is tuple:
        for item in value:  # noqa: SIM110 - a loop: all() over a generator is half as fast
            if not _plainly_encodable(item, depth + 1):
                return False
        return True
    return False


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_naming(value: object, path: str = "$", depth: int = 0) -> None:
    """The check itself, naming the path of the first value it refuses."""
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
            _check_naming(item, f"{path}[{index}]", depth + 1)
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
            _check_naming(item, f"{path}.{key}", depth + 1)
        return
    raise CanonicalError(f"{path}: {type(value).__name__} has no canonical encoding")


_SCALARS = frozenset({bytes, str, int, bool, type(None)})


def same_value(a: object, b: object) -> bool:
    """Whether ``a`` and ``b`` have the same canonical encoding (CanonicalError when one
    has none and the other is not built exactly alike).

    Decided without encoding when they are built alike: scalars of one exact type and
    equal (Python's ``True == 1`` is not enough: their encodings differ), maps with the
    same text keys and alike values, lists or tuples (both arrays) of alike items — the
    encoding is a function of exactly that structure. Otherwise both are encoded.
    """
    if _alike(a, b):
        return True
    try:
        return bool(cbor2.dumps(a, canonical=True) == cbor2.dumps(b, canonical=True))
    except Exception:  # cbor2 raises several types for what it cannot encode
        return encode(a) == encode(b)


def _alike(a: Any, b: Any) -> bool:
    if a is b:
        return True
    kind = type(a)
    if kind in _SCALARS:
        return kind is type(b) and bool(a == b)
    if kind is dict:
        if type(b) is not dict or len(a) != len(b):
            return False
        for key, value in a.items():  # loops: all() over a generator is half as fast here
            if type(key) is not str or key not in b or not _alike(value, b[key]):
                return False
        return True
    if kind is list or kind is tuple:
        if (type(b) is not list and type(b) is not tuple) or len(a) != len(b):
            return False
        for x, y in zip(a, b, strict=True):  # noqa: SIM110 - as above
            if not _alike(x, y):
                return False
        return True
    return False


def encode(value: object) -> bytes:
    """Encode ``value`` canonically; CanonicalError names the first offending path."""
    check_value(value)
    return cbor2.dumps(value, canonical=True)


def _input(data: object, max_bytes: int) -> bytes:
    """``data`` as an immutable ``bytes`` within the size bound.

    A bytearray or memoryview is copied first: the bytes proven canonical must be the very
    bytes the value is built from, and a mutable buffer could change in between.
    """
    if type(data) is bytes:  # the common case, without a copy
        size = len(data)
    elif isinstance(data, (bytes, bytearray, memoryview)):
        size = data.nbytes if isinstance(data, memoryview) else len(data)
    else:
        raise CanonicalError(f"expected bytes, got {type(data).__name__}")
    if size > max_bytes:
        raise CanonicalError(f"input of {size} bytes exceeds the {max_bytes}-byte bound")
    return data if type(data) is bytes else bytes(data)


_decided = False  # whether _native() has chosen; then _validator is its choice
_validator: canonical_native.Validator | None = None


def _native() -> canonical_native.Validator | None:
    """The native validator if usable; else None, said once as a RuntimeWarning."""
    global _decided, _validator
    if _decided:
        return _validator
    found = canonical_native.validator()
    reason = canonical_native.unavailable_reason()
    if found is not None:
        codes = set(found.rules.values()) - {"OK", "BAD_CALL"}
        ours = set(Rule.__members__) - {Rule.NOT_REENCODED.name}
        if codes != ours or found.depth_cap < MAX_DEPTH:
            found, reason = None, f"its rules {sorted(codes)} are not {sorted(ours)}"
    if found is None:
        warnings.warn(
            f"bvisor.canonical: the native validator is unavailable ({reason}); using the "
            "pure-Python reference decoder (same results, slower)",
            RuntimeWarning,
            stacklevel=3,
        )
    _validator, _decided = found, True
    return found


def backend() -> str:
    """``"native"`` or ``"python"``: which implementation proves bytes canonical here."""
    return "python" if _native() is None else "native"


def _native_refusal(native: canonical_native.Validator, raw: bytes) -> CanonicalError:
    verdict = native.check(raw, MAX_DEPTH)
    if not isinstance(verdict, canonical_native.Refused):  # pragma: no cover - C disagrees
        return CanonicalError("native validator refused without a reason")
    return _refused(Rule[verdict.rule], verdict.offset, verdict.arg, raw)


def validate(data: bytes | bytearray | memoryview, *, max_bytes: int = MAX_INPUT_BYTES) -> None:
    """Raise CanonicalError unless ``data`` is exactly one canonical CBOR item; build nothing."""
    raw = _input(data, max_bytes)
    native = _validator if _decided else _native()
    if native is None:
        _reference_parse(raw)
    elif not native.ok(raw, MAX_DEPTH):
        raise _native_refusal(native, raw)


def decode(data: bytes | bytearray | memoryview, *, max_bytes: int = MAX_INPUT_BYTES) -> Value:
    """Decode exactly one canonical CBOR item occupying all of ``data``."""
    raw = _input(data, max_bytes)
    native = _validator if _decided else _native()
    if native is None:
        return _reference_parse(raw)
    if not native.ok(raw, MAX_DEPTH):
        raise _native_refusal(native, raw)
    # Proven canonical, so cbor2's reader sees only the types above: int, bytes, str,
    # list, dict with str keys, bool, None (tests/canonical pins each type).
    return cast(Value, cbor2.loads(raw))


def array_spans(
    data: bytes | bytearray | memoryview, *, max_items: int, max_bytes: int = MAX_INPUT_BYTES
) -> list[tuple[int, int]] | None:
    """Validate ``data`` like :func:`validate`; if it is an array of at most ``max_items``
    items, return each item's ``(offset, length)`` within ``data``, in order.

    Returns None for canonical bytes of any other shape (not an array, or a longer one):
    :func:`decode` them to learn more. Each span is itself one canonical item, and the
    spans tile the array after its head: ``data[offset : offset + length]`` are an item's
    exact bytes, so a caller can hash or decode one item without touching the others.
    """
    return _spans(data, max_items, max_bytes, _ARRAY)


def map_spans(
    data: bytes | bytearray | memoryview, *, max_entries: int, max_bytes: int = MAX_INPUT_BYTES
) -> list[tuple[int, int]] | None:
    """:func:`array_spans` for a map: validate ``data`` like :func:`validate`; if it is a
    map of at most ``max_entries`` entries, return its keys' and values' ``(offset,
    length)``, alternating (entry 0's key, its value, entry 1's key, ...), in the order
    they are stored (the canonical one). None for canonical bytes of any other shape.

    Each span is one canonical item, so a caller can compare a value's exact bytes with
    what it expects, or decode one value without touching the others.
    """
    return _spans(data, max_entries, max_bytes, _MAP)


def _spans(
    data: bytes | bytearray | memoryview, count: int, max_bytes: int, major: int
) -> list[tuple[int, int]] | None:
    native = _validator if _decided else _native()
    if type(data) is not bytes or len(data) > max_bytes or count < 0 or native is None:
        return _spans_slowly(data, count, max_bytes, major)
    if major == _ARRAY:
        spans = native.array_spans(data, MAX_DEPTH, count)
    else:
        spans = native.map_spans(data, MAX_DEPTH, 2 * count)
    if spans is None or type(spans) is list:
        return spans
    assert isinstance(spans, canonical_native.Refused)
    raise _refused(Rule[spans.rule], spans.offset, spans.arg, data)


def _spans_slowly(
    data: bytes | bytearray | memoryview, count: int, max_bytes: int, major: int
) -> list[tuple[int, int]] | None:
    """:func:`_spans` for every case but the common one (bytes, native validator)."""
    if count < 0:
        name = "max_items" if major == _ARRAY else "max_entries"
        raise ValueError(f"{name}: {count} is negative")
    raw = _input(data, max_bytes)
    if _native() is None:
        return _reference_spans(raw, count, major)
    return _spans(raw, count, max_bytes, major)


def reference_decode(
    data: bytes | bytearray | memoryview, *, max_bytes: int = MAX_INPUT_BYTES
) -> Value:
    """:func:`decode` by the pure-Python reference parser alone (the native one's oracle)."""
    return _reference_parse(_input(data, max_bytes))


def reference_array_spans(
    data: bytes | bytearray | memoryview, *, max_items: int, max_bytes: int = MAX_INPUT_BYTES
) -> list[tuple[int, int]] | None:
    """:func:`array_spans` by the pure-Python reference parser alone."""
    return _reference_spans(_input(data, max_bytes), max_items, _ARRAY)


def reference_map_spans(
    data: bytes | bytearray | memoryview, *, max_entries: int, max_bytes: int = MAX_INPUT_BYTES
) -> list[tuple[int, int]] | None:
    """:func:`map_spans` by the pure-Python reference parser alone."""
    return _reference_spans(_input(data, max_bytes), max_entries, _MAP)


def _reference_spans(raw: bytes, count: int, major: int) -> list[tuple[int, int]] | None:
    value = _reference_parse(raw)
    if not isinstance(value, list if major == _ARRAY else dict) or len(value) > count:
        return None
    parser = _Parser(raw)
    parser._head()
    spans: list[tuple[int, int]] = []
    for _ in range(len(value) * (1 if major == _ARRAY else 2)):
        start = parser.pos
        parser.item(1)
        spans.append((start, parser.pos - start))
    return spans


def _reference_parse(raw: bytes) -> Value:
    """The reference decoder over bytes already within the size bound."""
    if not raw:
        raise _refused(Rule.EMPTY, 0, 0, raw)
    parser = _Parser(raw)
    value = parser.item(0)
    if parser.pos != len(raw):
        raise parser.fail(Rule.TRAILING, parser.pos, len(raw) - parser.pos)
    if cbor2.dumps(value, canonical=True) != raw:  # defence in depth: one encoding only
        raise _refused(Rule.NOT_REENCODED, 0, 0, raw)
    return value


class _Parser:
    """A bounded recursive-descent reader over one byte string (the reference decoder).

    The native validator checks the same rules in the same order; keep the two in step.
    """

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def fail(self, rule: Rule, offset: int, arg: int = 0) -> CanonicalError:
        return _refused(rule, offset, arg, self.data)

    def _take(self, count: int) -> bytes:
        end = self.pos + count
        if count < 0 or end > len(self.data):
            raise self.fail(Rule.TRUNCATED, self.pos, count)
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
                raise self.fail(Rule.INDEFINITE, start)
            raise self.fail(Rule.RESERVED_INFO, start, info)
        width = 1 << (info - 24)
        argument = int.from_bytes(self._take(width), "big")
        minimum = 24 if width == 1 else 1 << (8 * (width // 2))
        if major != 7 and argument < minimum:
            raise self.fail(Rule.NOT_SHORTEST, start)
        return major, info, argument, start

    def item(self, depth: int) -> Value:
        if depth > MAX_DEPTH:
            raise self.fail(Rule.TOO_DEEP, self.pos, MAX_DEPTH)
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
                raise self.fail(Rule.BAD_UTF8, start) from None
        if major == 4:
            self._check_count(argument, start)
            return [self.item(depth + 1) for _ in range(argument)]
        if major == 5:
            self._check_count(argument, start)
            return self._map(argument, depth)
        if major == 6:
            raise self.fail(Rule.TAG, start)
        return self._simple(info, argument, start)

    def _check_count(self, count: int, start: int) -> None:
        # Every element takes at least one byte: refuse absurd counts before looping.
        if count > len(self.data) - self.pos:
            raise self.fail(Rule.COUNT_TOO_LARGE, start, count)

    def _map(self, count: int, depth: int) -> dict[str, Value]:
        result: dict[str, Value] = {}
        previous: bytes | None = None
        for _ in range(count):
            key_start = self.pos
            key = self.item(depth + 1)
            if not isinstance(key, str):
                raise self.fail(Rule.KEY_NOT_TEXT, key_start)
            encoded_key = self.data[key_start : self.pos]
            if previous is not None:
                if encoded_key == previous:
                    raise self.fail(Rule.KEY_DUPLICATE, key_start)
                if encoded_key < previous:
                    raise self.fail(Rule.KEY_UNSORTED, key_start)
            previous = encoded_key
            result[key] = self.item(depth + 1)
        return result

    def _simple(self, info: int, argument: int, start: int) -> Value:
        if info >= 25:
            raise self.fail(Rule.FLOAT, start)
        if info == 24:
            raise self.fail(Rule.SIMPLE, start, argument)
        if argument == 20:
            return False
        if argument == 21:
            return True
        if argument == 22:
            return None
        if argument == 23:
            raise self.fail(Rule.UNDEFINED, start)
        raise self.fail(Rule.SIMPLE, start, argument)
