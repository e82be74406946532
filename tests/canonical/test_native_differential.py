"""The native validator and the pure-Python reference parser agree on every input.

``bvisor.canonical`` proves bytes canonical with C (``canonical_native.c``) when it can and
keeps the Python parser as the reference. A security check with two implementations is
only as good as their agreement, so this file attacks both with the same bytes and demands
the same verdict: for canonical encodings of generated values, the same value (types
included, since cbor2 builds it on the native path); for hostile bytes — every way of
breaking each rule, plus random mutations — the same refusal, compared as the whole
message (offset, rule and the numbers it reports) and as ``.offset``/``.rule``.

The oracle is the reference parser, which re-encodes what it read and demands the very
same bytes, so an acceptance by both is also checked against cbor2's own encoder.
"""

from __future__ import annotations

import itertools

import cbor2
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bvisor import canonical
from bvisor.canonical import MAX_DEPTH, CanonicalError, Value
from tests.canonical.test_properties import flatten, head, same, shortest_width, values, walk

DIFF = settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def test_the_native_validator_is_what_decode_uses() -> None:
    # Without it every comparison below would compare the reference with itself.
    from bvisor import canonical_native

    assert canonical.backend() == "native", canonical_native.unavailable_reason()


Verdict = tuple[str, object, object, object]


def verdict_of(action: object, data: bytes, **kwargs: int) -> Verdict:
    """("ok", value, ...) or ("refused", message, offset, rule): the whole observable result."""
    assert callable(action)
    try:
        return ("ok", action(data, **kwargs), None, None)
    except CanonicalError as exc:
        return ("refused", str(exc), exc.offset, exc.rule)


def assert_agree(data: bytes, **kwargs: int) -> Verdict:
    """decode (native), validate (native) and reference_decode give one verdict."""
    native = verdict_of(canonical.decode, data, **kwargs)
    reference = verdict_of(canonical.reference_decode, data, **kwargs)
    checked = verdict_of(canonical.validate, data, **kwargs)
    if reference[0] == "ok":
        assert native[0] == "ok", (data.hex(), native, reference)
        assert same(native[1], reference[1]), data.hex()
        assert checked == ("ok", None, None, None), data.hex()
        assert cbor2.dumps(native[1], canonical=True) == data  # one encoding only
    else:
        assert native == reference, data.hex()
        assert checked == reference, data.hex()
        assert reference[2] is not None or reference[3] is None
    return reference


# --- canonical bytes: the same value ----------------------------------------------------


@DIFF
@given(values)
def test_same_value_for_canonical_encodings(value: Value) -> None:
    data = canonical.encode(value)
    assert assert_agree(data)[0] == "ok"


@pytest.mark.parametrize(
    "value",
    [
        2**64 - 1,
        -(2**64),
        -(2**63),
        2**63,
        -1,
        0,
        b"",
        b"\x00" * 300,
        "",
        "\x00",
        "\U0010ffff",
        "\ud7ff\ue000",
        [],
        {},
        [[[]]],
        {"": None, "a": [True, False, b"x"]},
    ],
)
def test_value_types_match_the_reference(value: Value) -> None:
    # cbor2 builds the value on the native path: bytes (never bytearray), list (never
    # tuple), dict, int (both ends of the 64-bit range), str, bool, None.
    data = canonical.encode(value)
    decoded = canonical.decode(data)
    assert same(decoded, canonical.reference_decode(data))
    assert same(decoded, value if not isinstance(value, tuple) else list(value))


# --- hostile bytes: the same refusal ----------------------------------------------------

# Items that break one rule each wherever an item may stand.
BAD_ITEMS = [
    *(bytes.fromhex(h) for h in ("f90000", "fa3f800000", "fb3ff0000000000000")),  # floats
    *(bytes.fromhex(h) for h in ("c000", "d81800", "d9d9f700", "da0001000000", "c2410a")),
    *(bytes([0xE0 | n]) for n in range(20)),  # unassigned simple values
    b"\xf7",  # undefined
    *(bytes([0xF8, n]) for n in (0, 20, 21, 22, 23, 31, 32, 255)),  # two-byte simple
    *(bytes([(major << 5) | 31]) for major in range(8)),  # indefinite / break
    *(bytes([(major << 5) | info]) for major in range(8) for info in (28, 29, 30)),
    *(bytes([(major << 5) | 24, 5]) for major in (0, 1, 2, 3, 4, 5, 6)),  # non-shortest
    *(head(major, 0, 8) for major in range(7)),
    *(head(major, 2**32 - 1, 8) for major in range(7)),
    *(head(major, 2**64 - 1, 8) for major in (2, 3, 4, 5)),  # huge declared lengths
    *(head(major, 100, 1) for major in (2, 3, 4, 5)),  # more than remains
]

# Invalid UTF-8 (as Python's strict decoder defines it), one sequence each.
BAD_UTF8 = [
    bytes.fromhex(h)
    for h in (
        "80",  # lone continuation bytes
        "bf",
        "c0af",  # overlong two-byte forms
        "c1bf",
        "e080af",  # overlong three-byte forms
        "e09fbf",
        "f08f8080",  # overlong four-byte form
        "eda080",  # surrogates D800 and DFFF
        "edbfbf",
        "f4908080",  # above U+10FFFF
        "f5808080",
        "f8888080",  # no such lead bytes
        "fe",
        "ff",
        "c2",  # truncated sequences
        "e282",
        "f09080",
        "c27f",  # bad continuation bytes
        "c2c0",
        "e2287f",
        "f0902880",
    )
]


NON_TEXT_KEYS = [bytes.fromhex(h) for h in ("00", "20", "40", "4161", "80", "a0", "f4", "f6")]


def text_item(body: bytes) -> bytes:
    return head(3, len(body), shortest_width(len(body))) + body


@st.composite
def hostile(draw: st.DrawFn) -> bytes:
    """Canonical bytes broken in one of many ways (or, sometimes, left intact)."""
    encoded = canonical.encode(draw(values, label="value"))
    nodes = flatten(walk(encoded))
    node = draw(st.sampled_from(nodes), label="node")
    kind = draw(
        st.sampled_from(
            [
                "flip",
                "truncate",
                "append",
                "insert",
                "delete",
                "widen",
                "bad_item",
                "bad_utf8",
                "non_text_key",
                "swap_entries",
                "duplicate_entry",
                "huge_length",
                "nest",
                "random",
            ]
        ),
        label="kind",
    )
    data = bytearray(encoded)
    if kind == "flip":
        at = draw(st.integers(0, len(data) - 1))
        data[at] ^= 1 << draw(st.integers(0, 7))
    elif kind == "truncate":
        del data[draw(st.integers(0, len(data) - 1)) :]
    elif kind == "append":
        data += draw(st.binary(min_size=1, max_size=4))
    elif kind == "insert":
        at = draw(st.integers(0, len(data)))
        data[at:at] = draw(st.binary(min_size=1, max_size=3))
    elif kind == "delete":
        at = draw(st.integers(0, len(data) - 1))
        del data[at : at + draw(st.integers(1, 3))]
    elif kind == "widen":
        wider = [w for w in (1, 2, 4, 8) if w > shortest_width(node.argument)]
        if wider:
            replacement = head(node.major, node.argument, draw(st.sampled_from(wider)))
            data[node.start : node.start + node.head_len] = replacement
    elif kind == "bad_item":
        data[node.start : node.end] = draw(st.sampled_from(BAD_ITEMS))
    elif kind == "bad_utf8":
        texts = [n for n in nodes if n.major == 3]
        if texts:
            target = draw(st.sampled_from(texts))
            body = encoded[target.start + target.head_len : target.end]
            at = draw(st.integers(0, len(body)))
            body = body[:at] + draw(st.sampled_from(BAD_UTF8)) + body[at:]
            data[target.start : target.end] = text_item(body)
    elif kind == "non_text_key":
        keyed = [n for n in nodes if n.major == 5 and n.children]
        if keyed:
            target = draw(st.sampled_from(keyed))
            key = draw(st.sampled_from(target.children[0::2]))
            data[key.start : key.end] = draw(st.sampled_from(NON_TEXT_KEYS))
    elif kind in ("swap_entries", "duplicate_entry"):
        maps = [n for n in nodes if n.major == 5 and n.argument >= 1]
        if maps:
            target = draw(st.sampled_from(maps))
            pairs = list(zip(target.children[0::2], target.children[1::2], strict=True))
            spans = [(k.start, v.end) for k, v in pairs]
            body_at = target.start + target.head_len
            entries = [encoded[a:b] for a, b in spans]
            count = target.argument
            if kind == "swap_entries" and len(entries) >= 2:
                i, j = draw(st.sampled_from(list(itertools.combinations(range(len(entries)), 2))))
                entries[i], entries[j] = entries[j], entries[i]
            else:
                i = draw(st.integers(0, len(entries) - 1))
                entries.insert(i + draw(st.integers(0, 1)), entries[i])
                count += 1
            rebuilt = head(5, count, shortest_width(count)) + b"".join(entries)
            data[target.start : target.end] = rebuilt
            assert body_at <= target.end
    elif kind == "huge_length":
        if node.major in (2, 3, 4, 5):
            argument = draw(st.sampled_from([2**64 - 1, 2**63, 2**32, len(encoded), 255, 24]))
            width = max(1, shortest_width(argument))
            data[node.start : node.start + node.head_len] = head(node.major, argument, width)
    elif kind == "nest":
        depth = draw(st.integers(MAX_DEPTH - 2, MAX_DEPTH + 2))
        wrapper = draw(st.sampled_from([b"\x81", b"\xa1\x61k"]))
        data = bytearray(wrapper * depth) + data
    else:
        data = bytearray(draw(st.binary(max_size=48)))
    return bytes(data)


@DIFF
@given(hostile())
def test_same_verdict_for_hostile_bytes(data: bytes) -> None:
    assert_agree(data)


@settings(DIFF, max_examples=1000)
@given(st.binary(max_size=40))
def test_same_verdict_for_random_bytes(data: bytes) -> None:
    assert_agree(data)


@DIFF
@given(hostile(), st.integers(0, 80))
@example(b"", 0)
@example(b"\x00", 0)
def test_same_verdict_under_a_size_bound(data: bytes, max_bytes: int) -> None:
    assert_agree(data, max_bytes=max_bytes)


def test_every_input_of_at_most_two_bytes() -> None:
    # Exhaustive over the shortest inputs: every initial byte alone and with each follower.
    refused = 0
    for length in (0, 1, 2):
        for combo in itertools.product(range(256), repeat=length):
            refused += assert_agree(bytes(combo))[0] == "refused"
    assert refused > 60_000  # nearly everything that short is refused


@pytest.mark.parametrize("wrapper", [b"\x81", b"\xa1\x61k", b"\x82\x00"])
@pytest.mark.parametrize("levels", [MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1, 10 * MAX_DEPTH])
@pytest.mark.parametrize("leaf", [b"\x00", b"\x80", b"\xa0", b"\x81\x00", b"\xf9"])
def test_same_verdict_at_the_depth_bound(wrapper: bytes, levels: int, leaf: bytes) -> None:
    # b"\x82\x00" makes a nested array whose *second* item nests: the depth is checked for
    # each item where it starts, not only for first children.
    assert_agree(wrapper * levels + leaf)


# --- spans of a top-level array ---------------------------------------------------------


def reference_spans(data: bytes) -> list[tuple[int, int]]:
    """Item spans from the tests' own walker (independent of both decoders)."""
    return [(child.start, child.end - child.start) for child in walk(data).children]


@DIFF
@given(st.lists(values, max_size=12), st.integers(0, 14))
def test_array_spans_match_an_independent_walk(items: list[Value], max_items: int) -> None:
    data = canonical.encode(items)
    spans = canonical.array_spans(data, max_items=max_items)
    assert spans == canonical.reference_array_spans(data, max_items=max_items)
    if len(items) > max_items:
        assert spans is None
        return
    assert spans == reference_spans(data)
    for (offset, length), item in zip(spans, items, strict=True):
        assert same(canonical.decode(data[offset : offset + length]), item)


@DIFF
@given(values)
def test_array_and_map_spans_are_none_for_other_shapes(value: Value) -> None:
    data = canonical.encode(value)
    spans = canonical.array_spans(data, max_items=64)
    assert spans == canonical.reference_array_spans(data, max_items=64)
    if not isinstance(value, list) or len(value) > 64:
        assert spans is None
    entries = canonical.map_spans(data, max_entries=64)
    assert entries == canonical.reference_map_spans(data, max_entries=64)
    if not isinstance(value, dict) or len(value) > 64:
        assert entries is None


@DIFF
@given(hostile())
def test_array_and_map_spans_refuse_exactly_what_decode_refuses(data: bytes) -> None:
    expected = verdict_of(canonical.reference_decode, data)
    for spans, reference_spans, bound in (
        (canonical.array_spans, canonical.reference_array_spans, "max_items"),
        (canonical.map_spans, canonical.reference_map_spans, "max_entries"),
    ):
        got = verdict_of(spans, data, **{bound: 8})
        reference = verdict_of(reference_spans, data, **{bound: 8})
        if expected[0] == "refused":
            assert got == expected == reference
        else:
            assert got[0] == reference[0] == "ok"
            assert got == reference
        assert got[1] == reference[1]


def reference_map_entries(data: bytes) -> list[tuple[int, int]]:
    """Key and value spans from the tests' own walker (independent of both decoders)."""
    return [(child.start, child.end - child.start) for child in walk(data).children]


@DIFF
@given(st.dictionaries(st.text(max_size=6), values, max_size=12), st.integers(0, 14))
def test_map_spans_match_an_independent_walk(entries: dict[str, Value], max_entries: int) -> None:
    data = canonical.encode(entries)
    spans = canonical.map_spans(data, max_entries=max_entries)
    assert spans == canonical.reference_map_spans(data, max_entries=max_entries)
    if len(entries) > max_entries:
        assert spans is None
        return
    assert spans == reference_map_entries(data)
    decoded = {}
    for at in range(0, len(spans), 2):
        (key_at, key_len), (value_at, value_len) = spans[at], spans[at + 1]
        key = canonical.decode(data[key_at : key_at + key_len])
        assert isinstance(key, str)
        decoded[key] = canonical.decode(data[value_at : value_at + value_len])
    assert same(decoded, entries)
