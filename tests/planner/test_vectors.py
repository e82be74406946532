"""Golden vectors per planner rules version: h_p, h_a, h_l, plan_id and every entry digest.

The inputs (a hand-built HostFacts and three specs) are in ``vector_cases.py``; the
expected values of each released rules version are checked in under
``tests/vectors/planner/v<N>/``. A difference means every run that version recorded would
stop replaying: a released version is never edited (a change of meaning is a new
version), so these files are never regenerated either.
"""

from __future__ import annotations

import json

import pytest

from bvisor.planner.rules import CURRENT, RELEASED
from tests.planner.vector_cases import cases, compute, render, vectors_path

VERSIONS = sorted(RELEASED)


@pytest.mark.parametrize("version", VERSIONS)
def test_every_released_version_has_golden_vectors(version: int) -> None:
    assert vectors_path(version).is_file(), (
        f"rules v{version} has no golden vectors: python3 -m tests.planner.vector_cases {version}"
    )


@pytest.mark.parametrize("version", VERSIONS)
def test_vectors_are_byte_identical(version: int) -> None:
    assert render(RELEASED[version]) == vectors_path(version).read_text()


@pytest.mark.parametrize("version", VERSIONS)
def test_decl_digests_match(version: int) -> None:
    expected = json.loads(vectors_path(version).read_text())
    assert compute(RELEASED[version])["decl_digests"] == expected["decl_digests"]


@pytest.mark.parametrize(
    ("version", "name"), [(v, name) for v in VERSIONS for name in sorted(cases(v))]
)
def test_plan_digests_match(version: int, name: str) -> None:
    expected = json.loads(vectors_path(version).read_text())["plans"][name]
    actual = compute(RELEASED[version])["plans"][name]
    for key in ("h_p", "h_a", "h_l", "plan_id"):
        assert actual[key] == expected[key], f"v{version} {name}: {key} changed"
    assert actual["entries"] == expected["entries"]


def test_plans_are_made_with_the_newest_rules() -> None:
    assert CURRENT.version == max(RELEASED)
