"""Fixtures the end-to-end tests share."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """A directory of the test's own, as a run's working directory (a write root)."""
    directory = tmp_path / "work"
    directory.mkdir()
    return directory
