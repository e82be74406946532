"""One definition per wire fact, checked from the code (ast), not from memory.

The event kinds of a run, their payload keys and their order are written once, in
:mod:`bvisor.contract.events`; the runner, the API's recording sink, ``bvisor-ledger``, replay
and the benchmarks import them. A string constant spelling one of those kinds anywhere else
in the product is a second definition waiting to drift, so it fails here (tests may keep
literals: they assert the wire value itself). The C window's op codes have their own
agreement test (``test_window_agreement.py``).
"""

from __future__ import annotations

import ast
from pathlib import Path

from bvisor.contract import events
from bvisor.contract.events import RUN_KINDS, SHAPES
from tests.house.test_layers import _imports

ROOT = Path(__file__).resolve().parents[2]
HOME = ROOT / "bvisor" / "contract" / "events.py"
PRODUCT = ("bvisor", "front", "planner", "launcher", "ledger", "replay", "benchmarks")
WIRE_KINDS = frozenset({*RUN_KINDS, events.NOTE_EXTERNAL, events.NOTE_KIND_PREFIX})


def _sources() -> list[Path]:
    files: list[Path] = []
    for folder in PRODUCT:
        for path in sorted((ROOT / folder).rglob("*.py")):
            inside = path.relative_to(ROOT / folder).parts
            if folder == "bvisor" and inside[0] in PRODUCT:
                continue  # the source checkout's links to the other folders
            if "__pycache__" not in path.parts and not path.name.startswith("_seccomp_abi"):
                files.append(path)
    return files


def _kind_literals(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and node.value in WIRE_KINDS
    ]


def test_event_kinds_are_spelled_only_in_their_home() -> None:
    found = [hit for path in _sources() if path != HOME for hit in _kind_literals(path)]
    assert not found, "event kinds spelled outside bvisor/contract/events.py:\n" + "\n".join(found)


def test_the_home_defines_each_kind_once() -> None:
    spelled = [hit.rsplit(": ", 1)[1] for hit in _kind_literals(HOME)]
    assert sorted(spelled) == sorted(repr(kind) for kind in WIRE_KINDS), spelled


def test_every_kind_a_run_writes_has_a_payload_shape() -> None:
    assert set(SHAPES) == set(RUN_KINDS)
    assert set(events.AFTER_ADMITTED) | events.OPENING_KINDS | {events.NETWORK_DECISION} == set(
        RUN_KINDS
    )
    assert set(events.AFTER_ADMITTED) >= events.REPEATABLE
    assert set(RUN_KINDS) >= events.CLOSING_KINDS


def test_a_builder_cannot_make_a_payload_its_shape_refuses() -> None:
    shape = SHAPES[events.LAUNCHER_PHASE]
    shape.check(events.LAUNCHER_PHASE, {"index": 0, "line": "LauncherStarted"})
    for wrong in ({"index": 0}, {"index": 0, "line": "x", "extra": 1}):
        try:
            shape.check(events.LAUNCHER_PHASE, wrong)
        except AssertionError:
            continue
        raise AssertionError(f"{wrong} passed the shape")


def test_the_ledger_does_not_know_run_kinds() -> None:
    # The ledger knows events, not runs: nothing under ledger/ imports the run grammar.
    wrong = [
        f"{path.relative_to(ROOT)}: {module}"
        for path in (ROOT / "ledger").rglob("*.py")
        for module in _imports(path)
        # (``from bvisor.contract import events`` reads as ``bvisor.contract.events`` too)
        if module.startswith("bvisor.contract.events")
    ]
    assert not wrong, wrong
