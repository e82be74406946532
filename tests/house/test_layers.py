"""The house's rules, checked from the code's own imports (ast), not from memory.

Top-level folders install as ``bvisor.<folder>`` (``bvisor/`` itself is the pure bottom:
contract, canonical encoding, digests). Arrows may only run down this order::

    front  ->  replay  ->  launcher  ->  planner, ledger  ->  bvisor (bottom)

with ``replay`` never importing ``launcher`` (replay must not depend on the code it
checks). Inside ``launcher``: ``host`` and ``process`` (the two processes) share only
``wire`` and ``basement``, and never import each other. The probe makes no confinement
syscall of its own (no ctypes: it asks the basement). The commands never reach into the
basement.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = ("bvisor", "front", "planner", "launcher", "ledger", "replay")
# What each folder may import (besides itself).
ALLOWED: dict[str, set[str]] = {
    "bvisor": set(),
    "ledger": {"bvisor"},
    "planner": {"bvisor"},
    "launcher": {"bvisor", "planner"},
    "replay": {"bvisor", "ledger", "planner"},
    "front": {"bvisor", "ledger", "planner", "launcher", "replay"},
}


def _files(folder: str) -> Iterator[Path]:
    for path in sorted((ROOT / folder).rglob("*.py")):
        if folder == "bvisor" and path.relative_to(ROOT / folder).parts[0] in FOLDERS:
            continue  # the source-checkout links to the other folders
        if "__pycache__" in path.parts or path.name.startswith("_seccomp_abi"):
            continue
        yield path


def _imports(path: Path) -> Iterator[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            for alias in node.names:
                yield f"{node.module}.{alias.name}"


def _folder_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "bvisor":
        return None
    if len(parts) > 1 and parts[1] in FOLDERS[1:]:
        return parts[1]
    return "bvisor"


def _edges() -> dict[str, dict[str, list[str]]]:
    edges: dict[str, dict[str, list[str]]] = {folder: {} for folder in FOLDERS}
    for folder in FOLDERS:
        for path in _files(folder):
            for module in _imports(path):
                target = _folder_of(module)
                if target is not None and target != folder:
                    where = str(path.relative_to(ROOT))
                    edges[folder].setdefault(target, []).append(f"{where}: {module}")
    return edges


def test_arrows_only_run_down() -> None:
    wrong = [
        line
        for folder, targets in _edges().items()
        for target, lines in targets.items()
        if target not in ALLOWED[folder]
        for line in lines
    ]
    assert not wrong, "imports that run back up:\n" + "\n".join(wrong)


def test_no_circle_between_folders() -> None:
    edges = {folder: set(targets) for folder, targets in _edges().items()}

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in edges[start]:
            if nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})):
                return True
        return False

    assert not [folder for folder in FOLDERS if reaches(folder, folder, {folder})]


def _launcher_part(module: str) -> str | None:
    parts = module.split(".")
    if parts[:2] != ["bvisor", "launcher"] or len(parts) < 3:
        return None
    return parts[2] if parts[2] in ("host", "process", "wire", "basement") else None


@pytest.mark.parametrize(
    "part, forbidden",
    [
        ("host", {"process"}),
        ("process", {"host"}),
        ("wire", {"host", "process", "basement"}),
        ("basement", {"host", "process", "wire"}),
    ],
)
def test_the_launcher_is_split_by_process(part: str, forbidden: set[str]) -> None:
    wrong = [
        f"{path.relative_to(ROOT)}: {module}"
        for path in (ROOT / "launcher" / part).rglob("*.py")
        for module in _imports(path)
        if _launcher_part(module) in forbidden
    ]
    assert not wrong, wrong


def test_the_probe_asks_the_basement() -> None:
    modules = set(_imports(ROOT / "launcher" / "host" / "probe.py"))
    assert "ctypes" not in modules and "subprocess" not in modules, modules
    assert "bvisor.launcher.basement.namespaces" in modules


def test_the_commands_do_not_reach_into_the_basement() -> None:
    wrong = [
        f"{path.relative_to(ROOT)}: {module}"
        for path in (ROOT / "front").rglob("*.py")
        for module in _imports(path)
        if module.startswith("bvisor.launcher.basement")
    ]
    assert not wrong, wrong
