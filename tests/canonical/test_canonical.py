"""Unit tests for the canonical CBOR codec: what it emits and every rule its decoder enforces.

Every digest in bvisor is taken over these bytes, so a decoder that accepted a second
encoding of a value would let a tamperer rewrite a record without breaking its hash. Each
rejection rule therefore gets hand-built bytes that break exactly that rule, and each test
checks both that the error is a CanonicalError (never another exception) and that its
message points at the offending byte offset or value path, so a bad record can be located.
"""

from __future__ import annotations

import re
from decimal import Decimal
from fractions import Fraction

import cbor2
import pytest

from bvisor.canonical import MAX_DEPTH, MAX_INPUT_BYTES, CanonicalError, Value, decode, encode


def reject(data: bytes, offset: int, reason: str, *, max_bytes: int | None = None) -> None:
    """Assert ``decode`` refuses ``data`` at ``offset`` with a message matching ``reason``."""
    with pytest.raises(CanonicalError) as caught:
        if max_bytes is None:
            decode(data)
        else:
            decode(data, max_bytes=max_bytes)
    message = str(caught.value)
    assert message.startswith(f"offset {offset}: "), message
    assert re.search(reason, message), message


def refuse(value: object, path: str, reason: str) -> None:
    """Assert ``encode`` refuses ``value`` naming ``path`` with a message matching ``reason``."""
    with pytest.raises(CanonicalError) as caught:
        encode(value)
    message = str(caught.value)
    assert message.startswith(f"{path}: "), message
    assert re.search(reason, message), message


# --- what the encoder emits ------------------------------------------------------------

# RFC 8949 Appendix A examples that fall inside the canonical subset, plus map ordering.
KNOWN: list[tuple[Value, str]] = [
    (0, "00"),
    (1, "01"),
    (10, "0a"),
    (23, "17"),
    (24, "1818"),
    (25, "1819"),
    (100, "1864"),
    (255, "18ff"),
    (256, "190100"),
    (1000, "1903e8"),
    (65535, "19ffff"),
    (65536, "1a00010000"),
    (1000000, "1a000f4240"),
    (4294967295, "1affffffff"),
    (4294967296, "1b0000000100000000"),
    (1000000000000, "1b000000e8d4a51000"),
    (18446744073709551615, "1bffffffffffffffff"),
    (-1, "20"),
    (-10, "29"),
    (-24, "37"),
    (-25, "3818"),
    (-100, "3863"),
    (-1000, "3903e7"),
    (-18446744073709551616, "3bffffffffffffffff"),
    (False, "f4"),
    (True, "f5"),
    (None, "f6"),
    (b"", "40"),
    (b"\x01\x02\x03\x04", "4401020304"),
    ("", "60"),
    ("a", "6161"),
    ("IETF", "6449455446"),
    ('"\\', "62225c"),
    ("\u00fc", "62c3bc"),
    ("\u6c34", "63e6b0b4"),
    ("\U00010151", "64f0908591"),
    ([], "80"),
    ([1, 2, 3], "83010203"),
    ([1, [2, 3], [4, 5]], "8301820203820405"),
    (list(range(1, 26)), "98190102030405060708090a0b0c0d0e0f101112131415161718181819"),
    ({}, "a0"),
    ({"a": 1, "b": [2, 3]}, "a26161016162820203"),
    (["a", {"b": "c"}], "826161a161626163"),
    (
        {"e": "E", "d": "D", "c": "C", "b": "B", "a": "A"},
        "a56161614161626142616361436164614461656145",
    ),
    # Keys sort bytewise by their *encoding*, so the shorter key "b" precedes "aa".
    ({"aa": 1, "b": 2, "a": 3}, "a3616103616202626161 01".replace(" ", "")),
    ("x" * 24, "7818" + "78" * 24),
    (b"\x00" * 256, "590100" + "00" * 256),
]


@pytest.mark.parametrize(("value", "hex_bytes"), KNOWN)
def test_known_encodings_round_trip(value: Value, hex_bytes: str) -> None:
    data = bytes.fromhex(hex_bytes)
    assert encode(value) == data
    assert decode(data) == value
    assert encode(decode(data)) == data


def test_decoded_types_are_exact() -> None:
    # True == 1 in Python, so compare types too: the decoder must not blur bool and int.
    decoded = decode(bytes.fromhex("85f5f401f640"))
    assert isinstance(decoded, list)
    assert [type(item) for item in decoded] == [bool, bool, int, type(None), bytes]


def test_tuple_encodes_as_array_and_decodes_as_list() -> None:
    assert encode((1, (2, "x"))) == encode([1, [2, "x"]])
    assert decode(encode((1, (2, "x")))) == [1, [2, "x"]]


def test_decode_accepts_bytes_like_inputs() -> None:
    # decode() is annotated for bytes but documents and handles any bytes-like input.
    data = encode({"k": [1, b"v"]})
    assert decode(bytearray(data)) == {"k": [1, b"v"]}  # type: ignore[arg-type]
    assert decode(memoryview(data)) == {"k": [1, b"v"]}  # type: ignore[arg-type]


def test_decode_refuses_non_bytes_input() -> None:
    with pytest.raises(CanonicalError, match="expected bytes"):
        decode("a0")  # type: ignore[arg-type]


# --- decoder rejections ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("hex_bytes", "offset"),
    [("0000", 1), ("a0ff", 1), ("6161" + "00", 2), ("8101" + "8101", 2), ("f6" + "00" * 9, 1)],
)
def test_trailing_bytes(hex_bytes: str, offset: int) -> None:
    data = bytes.fromhex(hex_bytes)
    reject(data, offset, rf"{len(data) - offset} trailing bytes")


@pytest.mark.parametrize(
    ("hex_bytes", "offset"),
    [
        ("a2616101616102", 4),  # {"a": 1, "a": 2}
        ("a2616101616101", 4),  # same key, same value: still two entries
        ("81a3616101616202616203", 8),  # inside an array, third entry repeats "b"
        ("a161 6b a2 616101 616102".replace(" ", ""), 7),  # nested map
    ],
)
def test_duplicate_keys(hex_bytes: str, offset: int) -> None:
    reject(bytes.fromhex(hex_bytes), offset, "duplicate map key")


@pytest.mark.parametrize(
    ("hex_bytes", "offset"),
    [
        ("a2616201616102", 4),  # "b" before "a"
        ("a2626161016162 02".replace(" ", ""), 5),  # "aa" before "b": bytewise on encoding
        ("a3616101616302616202", 7),  # third key goes backwards
        ("a27818" + "61" * 24 + "01" + "616202", 28),  # long key before short key
    ],
)
def test_unsorted_keys(hex_bytes: str, offset: int) -> None:
    reject(bytes.fromhex(hex_bytes), offset, "not sorted")


@pytest.mark.parametrize(
    "key_hex",
    ["01", "20", "4161", "80", "a0", "f4", "f5", "f6", "1818", "816161"],
    ids=["uint", "nint", "bytes", "array", "map", "false", "true", "null", "uint8", "array1"],
)
def test_non_text_keys(key_hex: str) -> None:
    reject(bytes.fromhex("a1" + key_hex + "00"), 1, "map key is not a text string")
    # The offset follows the key wherever it sits.
    reject(bytes.fromhex("82f6a1" + key_hex + "00"), 3, "map key is not a text string")


@pytest.mark.parametrize(
    "hex_bytes",
    [
        "f90000",  # half 0.0
        "f93c00",  # half 1.0
        "f97e00",  # half NaN
        "f97c00",  # half +inf
        "fa00000000",  # single 0.0
        "fa47c35000",  # single 100000.0
        "fa7fc00000",  # single NaN
        "fb0000000000000000",  # double 0.0
        "fb3ff199999999999a",  # double 1.1
        "fb7ff8000000000000",  # double NaN
        "fbfff0000000000000",  # double -inf
    ],
)
def test_floats_of_every_width(hex_bytes: str) -> None:
    reject(bytes.fromhex(hex_bytes), 0, "floating-point")
    reject(bytes.fromhex("83 01 02".replace(" ", "") + hex_bytes), 3, "floating-point")
    reject(bytes.fromhex("a16161" + hex_bytes), 3, "floating-point")


@pytest.mark.parametrize(
    "hex_bytes",
    [
        "c074323031332d30332d32315432303a30343a30305a",  # tag 0: date/time string
        "c11a514b67b0",  # tag 1: epoch time
        "c249010000000000000000",  # tag 2: bignum
        "c349010000000000000000",  # tag 3: negative bignum
        "d74401020304",  # tag 23
        "d818456449455446",  # tag 24: embedded CBOR
        "d82076687474703a2f2f7777772e6578616d706c652e636f6d",  # tag 32: URI
        "d9d9f780",  # tag 55799: self-described CBOR
        "da0001000080",  # 4-byte tag number
        "db000000010000000080",  # 8-byte tag number
    ],
)
def test_tags(hex_bytes: str) -> None:
    reject(bytes.fromhex(hex_bytes), 0, "tags are not allowed")
    reject(bytes.fromhex("8200" + hex_bytes), 2, "tags are not allowed")


def test_undefined() -> None:
    reject(b"\xf7", 0, "undefined")
    reject(bytes.fromhex("a16175f7"), 3, "undefined")


@pytest.mark.parametrize("number", range(20))
def test_unassigned_one_byte_simple_values(number: int) -> None:
    reject(bytes([0xE0 | number]), 0, rf"simple value {number} is not allowed")


@pytest.mark.parametrize("number", [0, 19, 20, 21, 22, 23, 24, 31, 32, 100, 255])
def test_two_byte_simple_values(number: int) -> None:
    # 0xf8 with a value below 32 is not even well-formed; from 32 up it is unassigned. Either
    # way (including false/true/null/undefined in the long form) it must not decode.
    reject(bytes([0xF8, number]), 0, "simple value")


@pytest.mark.parametrize("initial", [0x1C, 0x1D, 0x1E, 0x3C, 0x5D, 0x7E, 0x9C, 0xBD, 0xDE, 0xFC])
def test_reserved_additional_information(initial: int) -> None:
    reject(bytes([initial]) + b"\x00" * 8, 0, "reserved additional information")


@pytest.mark.parametrize(
    "hex_bytes",
    [
        "5fff",  # empty indefinite byte string
        "5f4101ff",  # indefinite bytes, one chunk
        "5f41014102ff",  # indefinite bytes, two chunks
        "7fff",  # empty indefinite text
        "7f6161ff",  # indefinite text
        "7f616161 62ff".replace(" ", ""),  # indefinite text, two chunks
        "9fff",  # empty indefinite array
        "9f0102ff",  # indefinite array
        "bfff",  # empty indefinite map
        "bf616101ff",  # indefinite map
        "1f",  # indefinite unsigned integer: not well-formed
        "3f",  # indefinite negative integer: not well-formed
        "df00",  # indefinite tag: not well-formed
        "ff",  # a lone break
    ],
)
def test_indefinite_lengths(hex_bytes: str) -> None:
    reject(bytes.fromhex(hex_bytes), 0, "indefinite length")
    reject(bytes.fromhex("82f6" + hex_bytes), 2, "indefinite length")


def test_indefinite_length_nested_inside_definite_containers() -> None:
    reject(bytes.fromhex("a1616b9f01ff"), 3, "indefinite length")
    reject(bytes.fromhex("8181815f4100ff"), 3, "indefinite length")


def _long_head(major: int, width: int, argument: int) -> bytes:
    info = {1: 24, 2: 25, 4: 26, 8: 27}[width]
    return bytes([(major << 5) | info]) + argument.to_bytes(width, "big")


def _payload(major: int, argument: int) -> bytes:
    """Bytes that make a head with ``argument`` a complete item of ``major``."""
    if major in (2, 3):
        return b"a" * argument
    if major == 4:
        return b"\x00" * argument
    if major == 5:
        return b"".join(bytes([0x62, 0x61 + i // 26, 0x61 + i % 26, 0x00]) for i in range(argument))
    return b""


# For each width, arguments that would have fitted a shorter head: zero, and the largest
# value of the next-shorter form (kept small for containers so payloads stay tiny).
_NON_SHORTEST = [
    (major, width, argument)
    for major in (0, 1)
    for width, arguments in {
        1: (0, 23),
        2: (0, 23, 255),
        4: (0, 255, 65535),
        8: (0, 65535, 4294967295),
    }.items()
    for argument in arguments
] + [
    (major, width, argument)
    for major in (2, 3, 4, 5)
    for width in (1, 2, 4, 8)
    for argument in (0, 1, 23)
]


@pytest.mark.parametrize(("major", "width", "argument"), _NON_SHORTEST)
def test_non_shortest_heads_at_every_width(major: int, width: int, argument: int) -> None:
    data = _long_head(major, width, argument) + _payload(major, argument)
    # cbor2 (lenient) reads each one, so it is a real second encoding of some value.
    assert encode(cbor2.loads(data)) != data
    reject(data, 0, "not in shortest form")
    reject(b"\x81" + data, 1, "not in shortest form")


@pytest.mark.parametrize("width", [1, 2, 4, 8])
def test_non_shortest_tag_number_is_rejected(width: int) -> None:
    with pytest.raises(CanonicalError, match=r"^offset 0: "):
        decode(_long_head(6, width, 0) + b"\x00")


@pytest.mark.parametrize(
    ("major", "width", "argument"),
    [(0, 1, 24), (0, 2, 256), (0, 4, 65536), (0, 8, 4294967296), (1, 8, 2**64 - 1)],
)
def test_arguments_that_need_their_width_are_accepted(
    major: int, width: int, argument: int
) -> None:
    data = _long_head(major, width, argument)
    assert decode(data) == (argument if major == 0 else -1 - argument)


@pytest.mark.parametrize(
    "text_hex",
    [
        "ff",  # never valid in UTF-8
        "c3",  # truncated two-byte sequence
        "c328",  # bad continuation byte
        "c080",  # overlong NUL
        "e08080",  # overlong three-byte form
        "eda080",  # UTF-16 surrogate D800
        "f4908080",  # code point above U+10FFFF
        "80",  # lone continuation byte
        "61e282",  # valid prefix, truncated tail
    ],
)
def test_invalid_utf8(text_hex: str) -> None:
    text = bytes.fromhex(text_hex)
    item = bytes([0x60 | len(text)]) + text
    reject(item, 0, "not valid UTF-8")
    reject(bytes.fromhex("a16174") + item, 3, "not valid UTF-8")
    # The same bytes as a key: still refused, never a crash.
    reject(bytes.fromhex("a1") + item + b"\x00", 1, "not valid UTF-8")


def _nested_arrays(levels: int) -> bytes:
    return b"\x81" * levels + b"\x00"


def _nested_maps(levels: int) -> bytes:
    return b"\xa1\x61k" * levels + b"\x00"


def test_depth_bound_arrays() -> None:
    # MAX_DEPTH levels of nesting above a leaf decode; one more is refused at the leaf.
    assert encode(decode(_nested_arrays(MAX_DEPTH))) == _nested_arrays(MAX_DEPTH)
    reject(_nested_arrays(MAX_DEPTH + 1), MAX_DEPTH + 1, f"nesting deeper than {MAX_DEPTH}")


def test_depth_bound_maps() -> None:
    # A map's values sit one level below it, exactly like an array's elements.
    assert encode(decode(_nested_maps(MAX_DEPTH))) == _nested_maps(MAX_DEPTH)
    # The innermost map of MAX_DEPTH + 1 sits at MAX_DEPTH; its key is the first item too deep.
    reject(_nested_maps(MAX_DEPTH + 1), 3 * MAX_DEPTH + 1, f"nesting deeper than {MAX_DEPTH}")


def test_depth_bound_holds_far_beyond_the_recursion_limit() -> None:
    # Hostile input must not turn into a RecursionError.
    reject(_nested_arrays(100_000), MAX_DEPTH + 1, "nesting deeper")


def test_encoder_and_decoder_agree_on_the_depth_bound() -> None:
    deepest: Value = 0
    for _ in range(MAX_DEPTH):
        deepest = [deepest]
    assert encode(deepest) == _nested_arrays(MAX_DEPTH)
    refuse([deepest], "$" + "[0]" * (MAX_DEPTH + 1), f"nesting deeper than {MAX_DEPTH}")


def test_size_bound_parameter() -> None:
    data = encode([b"x" * 100, "y" * 100])
    assert decode(data, max_bytes=len(data)) == [b"x" * 100, "y" * 100]
    with pytest.raises(CanonicalError, match=rf"input of {len(data)} bytes exceeds the"):
        decode(data, max_bytes=len(data) - 1)


def test_default_size_bound() -> None:
    # A well-formed byte string one byte over the default bound is refused before parsing.
    body = MAX_INPUT_BYTES - 4
    data = b"\x5a" + body.to_bytes(4, "big") + b"\x00" * body
    assert len(data) == MAX_INPUT_BYTES + 1
    with pytest.raises(CanonicalError, match=rf"exceeds the {MAX_INPUT_BYTES}-byte bound"):
        decode(data)


@pytest.mark.parametrize(
    ("hex_bytes", "offset", "reason"),
    [
        ("5bffffffffffffffff", 9, "truncated"),  # a 2**64-1 byte string in 9 bytes
        ("7b7fffffffffffffff", 9, "truncated"),  # the payload would start at offset 9
        ("9bffffffffffffffff", 0, "declares"),  # 2**64-1 array items
        ("bbffffffffffffffff", 0, "declares"),
        ("9a0001000000", 0, "declares"),
        ("b9ffff00", 0, "declares"),
    ],
)
def test_declared_lengths_beyond_the_input_fail_before_allocating(
    hex_bytes: str, offset: int, reason: str
) -> None:
    reject(bytes.fromhex(hex_bytes), offset, reason)


TRUNCATION_SAMPLES: list[Value] = [
    2**64 - 1,
    -(2**64),
    70000,
    b"\x00\x01\x02" * 10,
    "h\u00e9llo \u6c34 \U00010151",
    [1, [2, [3, None]], True],
    {"a": 1, "bb": [b"x", "y"], "ccc": {"d": False}},
    {"x" * 30: -500, "y": [2**40, {"": b""}]},
]


@pytest.mark.parametrize("value", TRUNCATION_SAMPLES)
def test_truncation_at_every_position(value: Value) -> None:
    data = encode(value)
    for cut in range(len(data)):
        with pytest.raises(CanonicalError) as caught:
            decode(data[:cut])
        match = re.match(r"offset (\d+): ", str(caught.value))
        assert match, str(caught.value)
        assert int(match.group(1)) <= cut, str(caught.value)


# --- encoder refusals ------------------------------------------------------------------


@pytest.mark.parametrize("number", [0.0, 1.0, -1.5, float("nan"), float("inf"), 1e300])
def test_encoder_refuses_floats(number: float) -> None:
    refuse(number, "$", "float has no canonical encoding")
    refuse([1, number], "$[1]", "float")
    refuse({"a": {"b": number}}, "$.a.b", "float")


@pytest.mark.parametrize(
    ("value", "type_name"),
    [
        ({1, 2}, "set"),
        (frozenset({"a"}), "frozenset"),
        (object(), "object"),
        (bytearray(b"x"), "bytearray"),
        (memoryview(b"x"), "memoryview"),
        (1j, "complex"),
        (Decimal("1.5"), "Decimal"),
        (Fraction(1, 3), "Fraction"),
        (range(3), "range"),
        (iter([1]), "list_iterator"),
    ],
)
def test_encoder_refuses_objects_without_an_encoding(value: object, type_name: str) -> None:
    refuse(value, "$", f"{type_name} has no canonical encoding")
    refuse({"k": [value]}, "$.k[0]", type_name)


@pytest.mark.parametrize("key", [1, b"k", None, True, ("a",), 1.0])
def test_encoder_refuses_non_text_keys(key: object) -> None:
    refuse({key: 1}, "$", "is not a text string")
    refuse([{"a": {key: 1}}], "$[0].a", "is not a text string")


@pytest.mark.parametrize("number", [2**64, -(2**64) - 1, 2**200, -(2**200)])
def test_encoder_refuses_integers_out_of_range(number: int) -> None:
    refuse(number, "$", "outside the 64-bit CBOR range")
    refuse({"n": [0, number]}, "$.n[1]", "outside the 64-bit CBOR range")


def test_encoder_refuses_text_that_is_not_utf8() -> None:
    refuse("\ud800", "$", "not valid UTF-8")
    refuse(["ok", {"t": "a\udfffb"}], "$[1].t", "not valid UTF-8")


def test_encoder_refuses_map_keys_that_are_not_utf8() -> None:
    refuse({"\ud800": 1}, "$", "map key")
    refuse({"a": [{"ok": 1, "b\udfff": 2}]}, "$.a[0]", "not valid UTF-8")


def test_encoder_refuses_cycles_without_recursion_error() -> None:
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(CanonicalError, match="nesting deeper"):
        encode(loop)
