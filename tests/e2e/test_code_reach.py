"""The supervisor's own code is out of the workload's write reach.

Found by attack: ``bvisor run`` from a directory that holds code the host runs — the
repository of an editable install, a project whose ``.venv`` has bvisor in it — gave the
workload a write root over it; it appended a line to one of bvisor's modules, and the
next ``bvisor`` command ran that line unconfined, as the caller. Oracle: the file of a
module this process has loaded, which the workload tries to change, and the refusal.
"""

from __future__ import annotations

import importlib
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
