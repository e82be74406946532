"""Every package of the source tree is in the wheel.

An editable install imports the whole tree through its finder, so a package missing
from ``[tool.setuptools] packages`` in pyproject.toml goes unnoticed in a checkout and
breaks every regular install (``pip install .``): ``bvisor run`` failed on its first
import, ``bvisor.front.service``, and planning had no rules.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = ("bvisor", "front", "planner", "launcher", "ledger", "replay")


def _packages_on_disk() -> set[str]:
    found: set[str] = set()
    for folder in FOLDERS:
        for init in (ROOT / folder).rglob("__init__.py"):
            parts = init.parent.relative_to(ROOT).parts
            if folder == "bvisor" and len(parts) > 1 and parts[1] in FOLDERS:
                continue  # the checkout's links to the other folders
            if "__pycache__" in parts:
                continue
            name = ".".join(parts if folder == "bvisor" else ("bvisor", *parts))
            found.add(name)
    return found


def test_every_package_is_listed_for_the_wheel() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    listed = set(config["tool"]["setuptools"]["packages"])
    assert sorted(_packages_on_disk() - listed) == []
    assert sorted(listed - _packages_on_disk()) == []
