"""Landlock scopes ride with the filesystem domain only where the kernel has ABI 6."""

from __future__ import annotations

import dataclasses

from tests.planner.helpers import FIXED_FACTS, plan_v1, snapshot_of
from tests.planner.test_plan import rich_spec


def _scope(abi: int) -> object:
    facts = dataclasses.replace(FIXED_FACTS, landlock_abi=abi)
    params = plan_v1(rich_spec(), snapshot_of(facts)).params_of("linux.landlock.apply.v1")
    return params["scope"]  # type: ignore[index,call-overload]


def test_abi_6_and_above_scope_signals_and_abstract_sockets() -> None:
    assert _scope(6) == ["abstract_unix_socket", "signal"]
    assert _scope(7) == ["abstract_unix_socket", "signal"]


def test_below_abi_6_the_domain_has_no_scope_and_the_plan_says_so() -> None:
    assert _scope(5) == []
    assert _scope(3) == []
