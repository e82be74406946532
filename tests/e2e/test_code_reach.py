"""The supervisor's own code is out of the workload's write reach.

Found by attack: ``bvisor run`` from a directory that holds code the host runs — the
repository of an editable install, a project whose ``.venv`` has bvisor in it — gave the
workload a write root over it; it appended a line to one of bvisor's modules, and the
next ``bvisor`` command ran that line unconfined, as the caller. Oracle: the file of a
module this process has loaded, which the workload tries to change, and the refusal.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

import pytest

from bvisor.front.api import run_confined
from bvisor.front.defaults import default_spec
from bvisor.launcher.host.reach import CodeReachable, supervisor_code
from tests.features import require_feature


def test_a_write_root_over_loaded_code_is_refused(tmp_path: Path) -> None:
    require_feature("landlock")
    work = tmp_path / "work"
    (work / "hostcode").mkdir(parents=True)
    module = work / "hostcode" / "__init__.py"
    module.write_text("LOADED = True\n")
    sys.path.insert(0, str(work))
    try:
        importlib.import_module("hostcode")
        spec = default_spec(["/bin/sh", "-c", "echo 'PLANTED = 1' >> hostcode/__init__.py"],
                            cwd=str(work))  # fmt: skip
        with pytest.raises(CodeReachable, match="code"):
            run_confined(spec, ledger=tmp_path / "ledger")
    finally:
        sys.path.remove(str(work))
        sys.modules.pop("hostcode", None)
    assert module.read_text() == "LOADED = True\n"
    assert not (tmp_path / "ledger").exists(), "a refused run recorded something"


def test_the_code_places_hold_bvisor_and_the_interpreter() -> None:
    import bvisor.launcher
    import bvisor.ledger

    places = supervisor_code("/nonexistent/launcher")
    for package in (bvisor.launcher, bvisor.ledger):
        assert any(place in places for place in package.__path__), (package, places)
    assert sys.prefix in places


def _module_at(name: str, directory: Path) -> object:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.py").write_text("VALUE = 1\n")
    spec = importlib.util.spec_from_file_location(name, directory / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_code_places_follow_every_change_of_the_loaded_modules(tmp_path: Path) -> None:
    """The module walk is kept between runs; each kind of change since must be seen: an
    import, a module replaced under its name, and the last module removed and imported
    again after another (which keeps the count and the last name as they were)."""
    names = ("bv_probe_first", "bv_probe_second", "bv_probe_last")
    try:
        sys.modules[names[2]] = _module_at(names[2], tmp_path / "a")  # type: ignore[assignment]
        assert str(tmp_path / "a") in supervisor_code("/nonexistent/launcher")
        sys.modules[names[0]] = _module_at(names[0], tmp_path / "b")  # type: ignore[assignment]
        assert str(tmp_path / "b") in supervisor_code("/nonexistent/launcher")
        sys.modules[names[0]] = _module_at(names[0], tmp_path / "c")  # type: ignore[assignment]
        assert str(tmp_path / "c") in supervisor_code("/nonexistent/launcher")
        last = sys.modules.pop(names[0])
        sys.modules.pop(names[2])
        sys.modules[names[1]] = _module_at(names[1], tmp_path / "d")  # type: ignore[assignment]
        sys.modules[names[0]] = last
        places = supervisor_code("/nonexistent/launcher")
        assert str(tmp_path / "d") in places and str(tmp_path / "a") not in places
    finally:
        for name in names:
            sys.modules.pop(name, None)
