"""The native validator, rule by rule, and how it is built, loaded and fallen back from.

Each rule gets hand-built bytes that break exactly it; the native path (``decode``,
``validate``, ``array_spans``) must refuse them at the stated offset with the stated rule
and the very message the reference parser gives. The loader tests run in a fresh
interpreter so they can take the compiled module away, or make it look stale, without
touching this process.
"""

from __future__ import annotations

import itertools
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from bvisor import canonical, canonical_native
from bvisor.canonical import MAX_DEPTH, MAX_INPUT_BYTES, CanonicalError, Rule

REPO = Path(__file__).resolve().parents[2]
C_FILE = REPO / "bvisor" / "canonical_native.c"

# (hex bytes, offset, rule, exact message)
CASES: list[tuple[str, int, Rule, str]] = [
    ("", 0, Rule.EMPTY, "offset 0: truncated (empty input)"),
    ("19", 1, Rule.TRUNCATED, "offset 1: truncated (need 2 bytes, 0 remain)"),
    ("1b0000", 1, Rule.TRUNCATED, "offset 1: truncated (need 8 bytes, 2 remain)"),
    ("43aabb", 1, Rule.TRUNCATED, "offset 1: truncated (need 3 bytes, 2 remain)"),
    ("a16161", 3, Rule.TRUNCATED, "offset 3: truncated (need 1 bytes, 0 remain)"),
    (
        "5bffffffffffffffff",
        9,
        Rule.TRUNCATED,
        "offset 9: truncated (need 18446744073709551615 bytes, 0 remain)",
    ),
    ("0000", 1, Rule.TRAILING, "offset 1: 1 trailing bytes"),
    ("9f", 0, Rule.INDEFINITE, "offset 0: indefinite length is not allowed"),
    ("ff", 0, Rule.INDEFINITE, "offset 0: indefinite length is not allowed"),
    ("1c", 0, Rule.RESERVED_INFO, "offset 0: reserved additional information 28"),
    ("fe", 0, Rule.RESERVED_INFO, "offset 0: reserved additional information 30"),
    ("1817", 0, Rule.NOT_SHORTEST, "offset 0: integer head is not in shortest form"),
    ("3b00000000ffffffff", 0, Rule.NOT_SHORTEST, "offset 0: integer head is not in shortest form"),
    ("d800", 0, Rule.NOT_SHORTEST, "offset 0: integer head is not in shortest form"),
    ("63eda080", 0, Rule.BAD_UTF8, "offset 0: text string is not valid UTF-8"),
    ("62c0af", 0, Rule.BAD_UTF8, "offset 0: text string is not valid UTF-8"),
    ("64f4908080", 0, Rule.BAD_UTF8, "offset 0: text string is not valid UTF-8"),
    ("8161" + "c3", 1, Rule.BAD_UTF8, "offset 1: text string is not valid UTF-8"),
    (
        "83 00 00".replace(" ", ""),
        0,
        Rule.COUNT_TOO_LARGE,
        "offset 0: declares 3 items, not enough bytes",
    ),
    (
        "bbffffffffffffffff",
        0,
        Rule.COUNT_TOO_LARGE,
        "offset 0: declares 18446744073709551615 items, not enough bytes",
    ),
    ("c100", 0, Rule.TAG, "offset 0: tags are not allowed"),
    ("f93c00", 0, Rule.FLOAT, "offset 0: floating-point values are not allowed"),
    ("fb3ff0000000000000", 0, Rule.FLOAT, "offset 0: floating-point values are not allowed"),
    ("f9", 1, Rule.TRUNCATED, "offset 1: truncated (need 2 bytes, 0 remain)"),
    ("e0", 0, Rule.SIMPLE, "offset 0: simple value 0 is not allowed"),
    ("f814", 0, Rule.SIMPLE, "offset 0: simple value 20 is not allowed"),
    ("f8ff", 0, Rule.SIMPLE, "offset 0: simple value 255 is not allowed"),
    ("f7", 0, Rule.UNDEFINED, "offset 0: undefined is not allowed"),
    (
        "81" * (MAX_DEPTH + 1) + "00",
        MAX_DEPTH + 1,
        Rule.TOO_DEEP,
        f"offset {MAX_DEPTH + 1}: nesting deeper than {MAX_DEPTH}",
    ),
    ("a10100", 1, Rule.KEY_NOT_TEXT, "offset 1: map key is not a text string"),
    ("a1810000", 1, Rule.KEY_NOT_TEXT, "offset 1: map key is not a text string"),
    ("a1a00000", 1, Rule.KEY_NOT_TEXT, "offset 1: map key is not a text string"),
    # A non-text key is read whole first: a float inside it is what is reported.
    ("a181f90000", 2, Rule.FLOAT, "offset 2: floating-point values are not allowed"),
    ("a2616101616102", 4, Rule.KEY_DUPLICATE, "offset 4: duplicate map key 'a'"),
    (
        "a2 62c3a9 01 62c3a9 02".replace(" ", ""),
        5,
        Rule.KEY_DUPLICATE,
        "offset 5: duplicate map key 'é'",
    ),
    ("a2616201616102", 4, Rule.KEY_UNSORTED, "offset 4: map keys are not sorted"),
    (
        "a2626161016162 02".replace(" ", ""),
        5,
        Rule.KEY_UNSORTED,
        "offset 5: map keys are not sorted",
    ),
]


@pytest.mark.parametrize(("hex_bytes", "offset", "rule", "message"), CASES)
def test_each_rule_by_hand(hex_bytes: str, offset: int, rule: Rule, message: str) -> None:
    data = bytes.fromhex(hex_bytes)
    assert canonical.backend() == "native", canonical_native.unavailable_reason()
    for action in (canonical.decode, canonical.validate, canonical.reference_decode):
        with pytest.raises(CanonicalError) as caught:
            action(data)
        assert str(caught.value) == message
        assert (caught.value.offset, caught.value.rule) == (offset, rule)
    with pytest.raises(CanonicalError) as caught:
        canonical.array_spans(data, max_items=8)
    assert str(caught.value) == message
    with pytest.raises(CanonicalError) as caught:
        canonical.map_spans(data, max_entries=8)
    assert str(caught.value) == message


def test_every_rule_has_a_hand_written_case() -> None:
    covered = {rule for _, _, rule, _ in CASES}
    assert covered == set(Rule) - {Rule.NOT_REENCODED}  # that one is the reference's own


def test_the_native_rule_codes_are_exactly_the_python_rules() -> None:
    found = canonical_native.validator()
    assert found is not None
    assert set(found.rules.values()) == {rule.name for rule in Rule} - {"NOT_REENCODED"} | {
        "OK",
        "BAD_CALL",
    }


def test_nesting_exactly_at_the_bound_is_accepted() -> None:
    for wrapper in (b"\x81", b"\xa1\x61k"):
        data = wrapper * MAX_DEPTH + b"\x00"
        assert canonical.encode(canonical.decode(data)) == data
        canonical.validate(data)


def test_size_bound_is_checked_before_anything_else() -> None:
    with pytest.raises(CanonicalError, match=r"^input of 2 bytes exceeds the 1-byte bound$"):
        canonical.validate(b"\x81\x00", max_bytes=1)
    with pytest.raises(CanonicalError, match="exceeds"):
        canonical.array_spans(b"\xff\xff", max_items=1, max_bytes=1)
    big = b"\x5a" + (MAX_INPUT_BYTES - 5).to_bytes(4, "big") + bytes(MAX_INPUT_BYTES - 5)
    canonical.validate(big)  # exactly at the bound: a 64 MiB byte string is fine
    with pytest.raises(CanonicalError, match="exceeds"):
        canonical.validate(big + b"\x00")


def test_bytes_like_inputs_and_non_bytes() -> None:
    data = canonical.encode({"k": [1, b"v"]})
    for variant in (bytearray(data), memoryview(data)):
        assert canonical.decode(variant) == {"k": [1, b"v"]}
        canonical.validate(variant)
        assert canonical.array_spans(variant, max_items=1) is None
    assert canonical.array_spans(memoryview(b"\x82\x01\x02"), max_items=2) == [(1, 1), (2, 1)]
    for action in (canonical.decode, canonical.validate):
        with pytest.raises(CanonicalError, match=r"^expected bytes, got str$"):
            action("a0")  # type: ignore[arg-type]
    with pytest.raises(CanonicalError, match=r"^expected bytes, got list$"):
        canonical.array_spans([1], max_items=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_items"):
        canonical.array_spans(b"\x80", max_items=-1)


def test_decode_returns_exact_types() -> None:
    decoded = canonical.decode(bytes.fromhex("86f5f401f640a0"))
    assert isinstance(decoded, list)
    assert [type(item) for item in decoded] == [bool, bool, int, type(None), bytes, dict]


# --- spans ------------------------------------------------------------------------------


def test_spans_of_a_record_shaped_array() -> None:
    header = [1, 7, bytes(32), 1_700_000_000_000_000_000, "launcher.phase", b"r" * 16, bytes(32)]
    payload = {"state": "Exec", "n": [1, 2, 3]}
    data = canonical.encode([*header, payload])
    spans = canonical.array_spans(data, max_items=8)
    assert spans is not None and len(spans) == 8
    assert spans[0][0] == 1 and spans[-1][0] + spans[-1][1] == len(data)
    assert all(a + n == b for (a, n), (b, _) in itertools.pairwise(spans))
    payload_at = spans[7][0]
    assert b"\x87" + data[1:payload_at] == canonical.encode(header)
    assert data[payload_at:] == canonical.encode(payload)


@pytest.mark.parametrize(
    ("value", "max_items", "expected"),
    [
        ([], 0, []),
        ([], 8, []),
        ([0], 0, None),
        ([0, 1], 1, None),
        ([0, 1], 2, [(1, 1), (2, 1)]),
        ([[0, 1], "ab"], 2, [(1, 3), (4, 3)]),
        ({"a": 1}, 8, None),
        (5, 8, None),
        (b"xy", 8, None),
        (None, 8, None),
    ],
)
def test_spans_cases(value: object, max_items: int, expected: object) -> None:
    data = canonical.encode(value)
    assert canonical.array_spans(data, max_items=max_items) == expected
    assert canonical.reference_array_spans(data, max_items=max_items) == expected


def test_spans_with_many_items_grow_the_buffer() -> None:
    items = list(range(1000))
    data = canonical.encode(items)
    spans = canonical.array_spans(data, max_items=1000)
    assert spans is not None and len(spans) == 1000
    assert [canonical.decode(data[a : a + n]) for a, n in spans] == items
    assert canonical.array_spans(canonical.encode([1, 2]), max_items=2) == [(1, 1), (2, 1)]


def test_spans_are_per_thread() -> None:
    # The C runs without the GIL and writes into per-thread buffers; threads validating
    # different arrays at once must each get their own spans.
    arrays = [canonical.encode([b"x" * i, "y" * (i % 30), list(range(i % 7))]) for i in range(40)]
    expected = [canonical.reference_array_spans(a, max_items=3) for a in arrays]
    failures: list[str] = []

    def worker(shift: int) -> None:
        for round_ in range(300):
            index = (round_ * 7 + shift) % len(arrays)
            if canonical.array_spans(arrays[index], max_items=3) != expected[index]:
                failures.append(f"thread {shift} array {index}")

    threads = [threading.Thread(target=worker, args=(shift,)) for shift in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


def test_the_c_refuses_a_depth_above_its_capacity() -> None:
    found = canonical_native.validator()
    assert found is not None
    verdict = found.check(b"\x00", found.depth_cap + 1)
    assert verdict == canonical_native.Refused("BAD_CALL", 0, 0)
    assert found.check(b"\x00", found.depth_cap) == canonical_native.Shape(0, 0, None)


# --- building and loading ---------------------------------------------------------------


def test_loaded_module_was_built_from_the_c_file_here() -> None:
    import hashlib

    module = sys.modules["bvisor._canonical_c"]
    built_from = module.ffi.string(module.lib.bv_canon_source_id()).decode()
    assert built_from == hashlib.sha256(C_FILE.read_bytes()).hexdigest()


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")
def test_c_compiles_without_warnings(tmp_path: Path) -> None:
    # The build uses -O2 -Wall -Wextra; hold the source to that with warnings as errors,
    # plus a few stricter ones, and in C11 so nothing leans on compiler extensions.
    done = subprocess.run(
        [
            "cc",
            "-std=c11",
            "-O2",
            "-Wall",
            "-Wextra",
            "-Wconversion",
            "-Wshadow",
            "-Wpedantic",
            "-Werror",
            "-c",
            str(C_FILE),
            "-o",
            str(tmp_path / "canonical_native.o"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr


FALLBACK_PROBE = """
import sys, warnings
sys.modules["bvisor._canonical_c"] = None  # the compiled module cannot be imported
from bvisor import canonical_native
canonical_native._build_locked = lambda: "building is switched off for this test"
from bvisor import canonical
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    backend = canonical.backend()
    canonical.decode(b"\\x00")
assert backend == "python", backend
assert len(caught) == 1, [str(w.message) for w in caught]
print(caught[0].category.__name__, caught[0].message)
assert canonical.decode(bytes.fromhex("a26161016162820203")) == {"a": 1, "b": [2, 3]}
assert canonical.array_spans(b"\\x82\\x01\\x02", max_items=2) == [(1, 1), (2, 1)]
for bad in (b"\\xa2\\x61\\x62\\x01\\x61\\x61\\x02", b"\\x1c", b""):
    try:
        canonical.validate(bad)
    except canonical.CanonicalError as exc:
        print(exc)
"""


def test_missing_native_module_falls_back_loudly_and_equivalently() -> None:
    done = subprocess.run(
        [sys.executable, "-c", FALLBACK_PROBE],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith(
        "RuntimeWarning bvisor.canonical: the native validator is unavailable"
    )
    assert "building is switched off for this test" in lines[0]
    assert lines[1:] == [
        "offset 4: map keys are not sorted",
        "offset 0: reserved additional information 28",
        "offset 0: truncated (empty input)",
    ]


STALE_PROBE = """
import sys, warnings
from pathlib import Path
from bvisor import canonical_native
canonical_native._C_SOURCE = Path(sys.argv[1])  # as if the C had been edited since the build
canonical_native._build_locked = lambda: "building is switched off for this test"
from bvisor import canonical
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    print(canonical.backend())
print(caught[0].message)
"""


def test_a_stale_native_module_is_not_used(tmp_path: Path) -> None:
    edited = tmp_path / "canonical_native.c"
    edited.write_text(C_FILE.read_text(encoding="utf-8") + "\n/* edited */\n", encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-c", STALE_PROBE, str(edited)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    backend, message = done.stdout.splitlines()
    assert backend == "python"
    assert "is stale: built from another canonical_native.c" in message
