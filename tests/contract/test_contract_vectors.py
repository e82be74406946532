"""Golden vectors: the canonical encoding of every contract type is fixed.

The hex in ``tests/vectors/contract/encodings.json`` was generated once by
``tests/vectors/contract/generate.py``. Any change to an encoding (a renamed key, a
reordered set, a new field) changes a plan id or a report seal for the same meaning, so
it must fail here and be made deliberately.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bvisor import canonical

from .contract_vector_cases import cases, encode_case

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "contract" / "encodings.json"
GOLDEN: dict[str, str] = json.loads(VECTORS.read_text(encoding="utf-8"))
CASES = cases()


def test_vector_file_covers_exactly_the_cases() -> None:
    assert sorted(GOLDEN) == sorted(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_encoding_matches_golden_hex(name: str) -> None:
    obj, _ = CASES[name]
    assert encode_case(obj).hex() == GOLDEN[name]


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_bytes_decode_back_to_the_same_object(name: str) -> None:
    obj, decoder = CASES[name]
    decoded = decoder(canonical.decode(bytes.fromhex(GOLDEN[name])))
    assert decoded == obj
    assert encode_case(decoded).hex() == GOLDEN[name]


def test_every_public_value_type_has_a_vector() -> None:
    import bvisor.contract as contract

    covered = {type(obj).__name__ for obj, _ in CASES.values()}
    # Unions and helpers are not types with an encoding of their own.
    value_types = {
        name
        for name in contract.__all__
        if isinstance(getattr(contract, name), type)
        and hasattr(getattr(contract, name), "to_value")
    }
    assert value_types - covered == set()
