"""Property tests for the canonical codec: one encoding per value, and nothing else accepted.

The unit tests pin each rule with hand-built bytes; these tests attack the codec with
generated values and systematically derived *non-canonical variants* of their encodings
(a widened head, two map entries swapped, an indefinite length, a repeated key, a
trailing byte). Each variant is checked against cbor2's lenient reader first, so we know
it is a genuine second encoding of the same value; the strict decoder must still refuse
it. Random and mutated bytes must only ever produce a CanonicalError, and anything the
decoder does accept must re-encode to exactly the bytes it was given.
"""

from __future__ import annotations

from dataclasses import dataclass

import cbor2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bvisor.canonical import CanonicalError, Value, decode, encode, same_value

# Modest example counts keep this file well under 20 s; no deadline, since a slow example
# is not a wrong one. No example database: a failure prints its reproducing example.
PROPERTY = settings(
    max_examples=100,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

_BOUNDARY_INTS = [
    0,
    23,
    24,
    255,
    256,
    65535,
    65536,
    2**32 - 1,
    2**32,
    2**64 - 1,
    -1,
    -24,
    -25,
    -256,
    -257,
    -(2**32),
    -(2**32) - 1,
    -(2**64),
]

integers = st.one_of(
    st.sampled_from(_BOUNDARY_INTS), st.integers(min_value=-(2**64), max_value=2**64 - 1)
)
keys = st.text(max_size=6) | st.text(alphabet="ab", min_size=20, max_size=30)
scalars = st.one_of(
    st.none(), st.booleans(), integers, st.binary(max_size=40), st.text(max_size=30)
)
values: st.SearchStrategy[Value] = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(keys, children, max_size=5),
    ),
    max_leaves=25,
)


def same(left: object, right: object) -> bool:
    """Structural equality that also compares types (Python has True == 1 and 1 == 1.0)."""
    if type(left) is not type(right):
        return False
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(map(same, left, right))
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(same(left[k], right[k]) for k in left)
    return left == right


# --- a tiny independent walker over known-good canonical bytes --------------------------


@dataclass(frozen=True, slots=True)
class Node:
    """One data item inside an encoding: where its head and body lie, and its children."""

    start: int
    head_len: int
    major: int
    argument: int
    end: int
    children: tuple[Node, ...]


def walk(data: bytes, pos: int = 0) -> Node:
    """Parse well-formed definite-length CBOR at ``pos`` into a Node tree (trusts input)."""
    initial = data[pos]
    major, info = initial >> 5, initial & 0x1F
    width = 0 if info < 24 else 1 << (info - 24)
    argument = info if info < 24 else int.from_bytes(data[pos + 1 : pos + 1 + width], "big")
    body = pos + 1 + width
    if major in (2, 3):
        return Node(pos, 1 + width, major, argument, body + argument, ())
    if major in (4, 5):
        children: list[Node] = []
        cursor = body
        for _ in range(argument * (2 if major == 5 else 1)):
            child = walk(data, cursor)
            children.append(child)
            cursor = child.end
        return Node(pos, 1 + width, major, argument, cursor, tuple(children))
    return Node(pos, 1 + width, major, argument, body, ())


def flatten(node: Node) -> list[Node]:
    result = [node]
    for child in node.children:
        result.extend(flatten(child))
    return result


def head(major: int, argument: int, width: int) -> bytes:
    """A head for ``argument`` written with an explicit argument width (0 = inline)."""
    if width == 0:
        return bytes([(major << 5) | argument])
    info = {1: 24, 2: 25, 4: 26, 8: 27}[width]
    return bytes([(major << 5) | info]) + argument.to_bytes(width, "big")


def shortest_width(argument: int) -> int:
    for width, limit in ((0, 24), (1, 1 << 8), (2, 1 << 16), (4, 1 << 32)):
        if argument < limit:
            return width
    return 8


def splice(data: bytes, start: int, end: int, replacement: bytes) -> bytes:
    return data[:start] + replacement + data[end:]


def assert_rejected(variant: bytes) -> None:
    try:
        decode(variant)
    except CanonicalError:
        return
    raise AssertionError(f"non-canonical variant accepted: {variant.hex()}")


def assert_second_encoding(variant: bytes, value: Value) -> None:
    """The lenient reader sees the same value: the variant only differs in form."""
    assert same(cbor2.loads(variant), value), variant.hex()


# --- round trip and agreement with cbor2 ------------------------------------------------


@PROPERTY
@given(values)
def test_encode_decode_encode_is_identity(value: Value) -> None:
    data = encode(value)
    decoded = decode(data)
    assert same(decoded, value)
    assert encode(decoded) == data


@PROPERTY
@given(values)
def test_decode_agrees_with_cbor2(value: Value) -> None:
    data = encode(value)
    assert same(decode(data), cbor2.loads(data))
    assert cbor2.dumps(value, canonical=True) == data


# --- non-canonical variants of valid bytes are rejected ---------------------------------


@PROPERTY
@given(values, st.data())
def test_widened_heads_are_rejected(value: Value, data: st.DataObject) -> None:
    encoded = encode(value)
    node = data.draw(st.sampled_from(flatten(walk(encoded))), label="node")
    wider = [w for w in (1, 2, 4, 8) if w > shortest_width(node.argument)]
    if not wider:
        return  # already an 8-byte head: nothing longer exists
    width = data.draw(st.sampled_from(wider), label="width")
    variant = splice(
        encoded, node.start, node.start + node.head_len, head(node.major, node.argument, width)
    )
    if node.major != 7:  # a widened true/false/null is a different simple value or a float
        assert_second_encoding(variant, value)
    assert_rejected(variant)


@PROPERTY
@given(values, st.data())
def test_indefinite_lengths_are_rejected(value: Value, data: st.DataObject) -> None:
    encoded = encode([value, b"chunk", "text", [0], {"k": 1}])  # every kind appears
    candidates = [n for n in flatten(walk(encoded)) if n.major in (2, 3, 4, 5)]
    node = data.draw(st.sampled_from(candidates), label="node")
    if node.major in (2, 3):
        # One definite chunk (the original item) inside an indefinite string.
        replacement = bytes([(node.major << 5) | 31]) + encoded[node.start : node.end] + b"\xff"
    else:
        inner = encoded[node.start + node.head_len : node.end]
        replacement = bytes([(node.major << 5) | 31]) + inner + b"\xff"
    variant = splice(encoded, node.start, node.end, replacement)
    assert_second_encoding(variant, decode(encoded))
    assert_rejected(variant)


small_values: st.SearchStrategy[Value] = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(keys, children, max_size=3),
    max_leaves=6,
)
maps_with_two_entries = st.dictionaries(keys, small_values, min_size=2, max_size=5)


@st.composite
def embedded_map(draw: st.DrawFn) -> Value:
    """A value guaranteed to hold a map of two or more entries somewhere inside it."""
    inner = draw(maps_with_two_entries)
    shape = draw(st.sampled_from(["bare", "in_list", "in_map"]))
    if shape == "bare":
        return inner
    if shape == "in_list":
        return [draw(small_values), inner]
    return {"m": inner, "o": draw(small_values)}


def entries(encoded: bytes, node: Node) -> list[tuple[int, int]]:
    """Byte spans (key start, value end) of each entry of the map ``node``."""
    pairs = zip(node.children[0::2], node.children[1::2], strict=True)
    return [(key.start, val.end) for key, val in pairs]


@PROPERTY
@given(embedded_map(), st.data())
def test_swapped_map_entries_are_rejected(value: Value, data: st.DataObject) -> None:
    encoded = encode(value)
    maps = [n for n in flatten(walk(encoded)) if n.major == 5 and n.argument >= 2]
    node = data.draw(st.sampled_from(maps), label="map")
    spans = entries(encoded, node)
    i, j = sorted(data.draw(st.sets(st.sampled_from(range(len(spans))), min_size=2, max_size=2)))
    (a_start, a_end), (b_start, b_end) = spans[i], spans[j]
    variant = (
        encoded[:a_start]
        + encoded[b_start:b_end]
        + encoded[a_end:b_start]
        + encoded[a_start:a_end]
        + encoded[b_end:]
    )
    assert variant != encoded
    assert_second_encoding(variant, value)
    assert_rejected(variant)


@PROPERTY
@given(embedded_map(), st.data())
def test_duplicated_keys_are_rejected(value: Value, data: st.DataObject) -> None:
    encoded = encode(value)
    maps = [n for n in flatten(walk(encoded)) if n.major == 5 and n.argument >= 1]
    node = data.draw(st.sampled_from(maps), label="map")
    spans = entries(encoded, node)
    start, end = data.draw(st.sampled_from(spans), label="entry")
    copy_at = data.draw(st.sampled_from([start, end]), label="position")
    count = node.argument + 1
    body = encoded[node.start + node.head_len : node.end]
    relative = copy_at - (node.start + node.head_len)
    new_body = body[:relative] + encoded[start:end] + body[relative:]
    variant = splice(
        encoded, node.start, node.end, head(5, count, shortest_width(count)) + new_body
    )
    assert_second_encoding(variant, value)  # cbor2 keeps the last (identical) entry
    assert_rejected(variant)


@PROPERTY
@given(values, st.binary(min_size=1, max_size=3))
def test_appended_bytes_are_rejected(value: Value, extra: bytes) -> None:
    assert_rejected(encode(value) + extra)


# --- robustness: nothing but CanonicalError, and acceptance implies canonical -----------


def decode_or_error(data: bytes) -> None:
    """Decode ``data``; if it is accepted, it must be the one canonical encoding."""
    try:
        decoded = decode(data)
    except CanonicalError:
        return
    assert encode(decoded) == data
    assert same(cbor2.loads(data), decoded)


@settings(PROPERTY, max_examples=1000)
@given(st.binary(max_size=64))
def test_random_bytes_raise_only_canonical_error(data: bytes) -> None:
    decode_or_error(data)


@st.composite
def mutated_encodings(draw: st.DrawFn) -> bytes:
    """A valid encoding with a few bytes flipped, inserted, deleted or cut off."""
    encoded = bytearray(encode(draw(values)))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        kind = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        at = draw(st.integers(min_value=0, max_value=max(len(encoded) - 1, 0)))
        byte = draw(st.integers(min_value=0, max_value=255))
        if kind == "flip" and encoded:
            encoded[at] = byte
        elif kind == "insert":
            encoded.insert(at, byte)
        elif kind == "delete" and encoded:
            del encoded[at]
        else:
            del encoded[at:]
    return bytes(encoded)


@settings(PROPERTY, max_examples=300)
@given(mutated_encodings())
def test_mutated_encodings_raise_only_canonical_error(data: bytes) -> None:
    decode_or_error(data)


# Anything at all: what the encoder refuses (floats, sets, integers past 64 bits, lone
# surrogates, keys that are not text, str and dict subclasses) mixed in with what it takes.
class _Text(str):
    pass


anything = st.recursive(
    st.one_of(
        scalars,
        st.floats(allow_nan=False),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.text(alphabet=st.characters(blacklist_categories=()), max_size=4),
        st.builds(_Text, st.text(max_size=4)),
        st.frozensets(st.integers(), max_size=2),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.tuples(inner, inner),
        st.dictionaries(st.one_of(keys, st.integers(), st.builds(_Text, keys)), inner, max_size=3),
    ),
    max_leaves=12,
)


@PROPERTY
@given(anything)
def test_the_quick_check_never_takes_what_the_naming_check_refuses(value: object) -> None:
    from bvisor import canonical

    if canonical._plainly_encodable(value, 0):
        canonical._check_naming(value)  # raises if the quick check was wrong


def _tupled(value: Value) -> object:
    """The same value with every list a tuple (both encode as arrays)."""
    if isinstance(value, list):
        return tuple(_tupled(item) for item in value)
    if isinstance(value, dict):
        return {key: _tupled(item) for key, item in value.items()}
    return value


@PROPERTY
@given(values, values)
def test_same_value_is_equal_encodings(a: Value, b: Value) -> None:
    assert same_value(a, b) == (encode(a) == encode(b))
    assert same_value(a, a) and same_value(_tupled(a), a) and same_value(a, decode(encode(a)))


def test_same_value_tells_what_python_equality_does_not() -> None:
    assert not same_value(True, 1) and not same_value({"k": 1}, {"k": True})
    assert not same_value(b"a", "a") and not same_value([1], [1, 1])
    assert same_value({"a": [1, (2, b"x")], "b": None}, {"b": None, "a": [1, [2, b"x"]]})
