"""Planner test fixtures: the live probe of this machine (once per session) and snapshots."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bvisor.contract.profile import HostFacts, ProfileSnapshot
from bvisor.launcher.host.probe import probe_host
from tests.planner.helpers import FIXED_FACTS, snapshot_of


@pytest.fixture(scope="session")
def live_facts() -> HostFacts:
    return probe_host(None)


@pytest.fixture(scope="session")
def live_snapshot(live_facts: HostFacts) -> ProfileSnapshot:
    return snapshot_of(live_facts)


@pytest.fixture
def fixed_snapshot() -> Iterator[ProfileSnapshot]:
    yield snapshot_of(FIXED_FACTS)
