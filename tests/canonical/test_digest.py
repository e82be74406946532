"""Golden-vector and separation tests for bvisor.digest.

Every stored id and seal (h_p, h_a, h_l, plan_id, report seals, ledger hashes) depends on
these functions, so a silent change to a context string or to the hashing mode would
orphan every existing ledger. The vectors in tests/vectors/digest.json were computed by
tests/canonical/make_digest_vectors.py from DESIGN.md's context strings without importing
bvisor, so these tests compare the code against an independent record.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from bvisor.canonical import decode, encode
from bvisor.digest import DIGEST_SIZE, Purpose, digest_bytes, digest_value

VECTORS_PATH = Path(__file__).resolve().parents[1] / "vectors" / "digest.json"
VECTORS: dict[str, Any] = json.loads(VECTORS_PATH.read_text(encoding="utf-8"))
INPUTS = {name: bytes.fromhex(hex_data) for name, hex_data in VECTORS["inputs"].items()}

ALL_PURPOSES = list(Purpose)


def test_every_purpose_has_vectors_and_no_vector_lacks_a_purpose() -> None:
    assert set(VECTORS["purposes"]) == {purpose.name for purpose in Purpose}
    assert set(INPUTS) == {"empty", "bvisor", "value"}
    assert INPUTS["bvisor"] == b"bvisor"


@pytest.mark.parametrize("purpose", ALL_PURPOSES, ids=lambda p: p.name)
def test_context_string_matches_the_vectors(purpose: Purpose) -> None:
    assert purpose.value == VECTORS["purposes"][purpose.name]["context"]


@pytest.mark.parametrize(
    ("purpose", "label"),
    list(itertools.product(ALL_PURPOSES, ["empty", "bvisor", "value"])),
    ids=lambda item: item.name if isinstance(item, Purpose) else str(item),
)
def test_digest_bytes_matches_golden_vector(purpose: Purpose, label: str) -> None:
    expected = VECTORS["purposes"][purpose.name]["digests"][label]
    assert digest_bytes(purpose, INPUTS[label]).hex() == expected


@pytest.mark.parametrize("purpose", ALL_PURPOSES, ids=lambda p: p.name)
def test_digest_value_of_the_golden_value(purpose: Purpose) -> None:
    encoded = INPUTS["value"]
    value = decode(encoded)  # the golden bytes must themselves be canonical
    assert encode(value) == encoded
    expected = VECTORS["purposes"][purpose.name]["digests"]["value"]
    assert digest_value(purpose, value).hex() == expected


@pytest.mark.parametrize(
    "value",
    [None, True, 0, -(2**64), b"", "", [], {}, {"b": [1, b"\x00"], "a": {"c": None}}],
)
@pytest.mark.parametrize("purpose", ALL_PURPOSES, ids=lambda p: p.name)
def test_digest_value_is_digest_of_canonical_encoding(purpose: Purpose, value: object) -> None:
    assert digest_value(purpose, value) == digest_bytes(purpose, encode(value))


def test_digests_are_32_bytes() -> None:
    for purpose in Purpose:
        for data in INPUTS.values():
            digest = digest_bytes(purpose, data)
            assert isinstance(digest, bytes)
            assert len(digest) == DIGEST_SIZE == 32


def test_context_strings_are_distinct() -> None:
    contexts = [purpose.value for purpose in Purpose]
    assert len(set(contexts)) == len(contexts)


@pytest.mark.parametrize("label", ["empty", "bvisor", "value"])
def test_every_purpose_separates_the_same_input(label: str) -> None:
    digests = {digest_bytes(purpose, INPUTS[label]) for purpose in Purpose}
    assert len(digests) == len(Purpose)


def test_digest_depends_on_every_input_byte() -> None:
    base = digest_bytes(Purpose.PLAN, b"bvisor")
    assert digest_bytes(Purpose.PLAN, b"bvisoR") != base
    assert digest_bytes(Purpose.PLAN, b"bvisor\x00") != base
    assert digest_bytes(Purpose.PLAN, b"") != base
