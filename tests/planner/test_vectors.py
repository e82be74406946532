"""Golden vectors: h_p, h_a, h_l, plan_id and every entry digest for fixed inputs.

The inputs (a hand-built HostFacts and three specs) are in ``vector_cases.py``; the
expected hex is checked in. A change here means every recorded plan in every ledger would
stop replaying — so it must be deliberate (bump a version) and never silent.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.planner.vector_cases import VECTORS, cases, compute

EXPECTED: dict[str, Any] = json.loads(VECTORS.read_text())
ACTUAL = compute()


def test_decl_digests_match() -> None:
    assert ACTUAL["decl_digests"] == EXPECTED["decl_digests"]


@pytest.mark.parametrize("name", sorted(cases()))
def test_plan_digests_match(name: str) -> None:
    expected, actual = EXPECTED["plans"][name], ACTUAL["plans"][name]
    for key in ("h_p", "h_a", "h_l", "plan_id"):
        assert actual[key] == expected[key], f"{name}: {key} changed"
    assert actual["entries"] == expected["entries"]
