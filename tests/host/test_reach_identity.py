"""The ledger is out of reach by identity, not by name.

Each alias is made for real — a bind mount inside a private mount namespace of the test's
own (``unshare --mount``), so nothing outside it changes — and ``bvisor run`` must refuse
the run before it records or starts anything. The oracle is the exit status and the
ledger directory, which must not have been created. Before the fix the check compared
real paths only, and every bind-mount alias below got through (a workload with the
default write root over the alias could then truncate ``data.mdb`` under the host).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _in_private_mounts(script: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    if shutil.which("unshare") is None or os.geteuid() != 0:
        pytest.skip("LOUD SKIP: needs root and unshare(1) for a private mount namespace")
    return subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "/bin/sh", "-ec", script],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def _run_from(workdir: Path, ledger: Path) -> str:
    argv = [sys.executable, "-m", "bvisor.front.cli.main", "run", "--ledger", str(ledger)]
    argv += ["--", "/bin/true"]
    return f"cd {shlex.quote(str(workdir))}; {shlex.join(argv)} || echo EXIT=$?"


def test_a_root_that_is_a_bind_alias_of_the_ledgers_parent_is_refused(tmp_path: Path) -> None:
    real, alias = tmp_path / "real", tmp_path / "alias"
    real.mkdir()
    alias.mkdir()
    ledger = real / "ledger"
    script = f"mount --bind {real} {alias}; " + _run_from(alias, ledger)
    done = _in_private_mounts(script, tmp_path)
    assert "EXIT=2" in done.stdout, (done.stdout, done.stderr)
    assert "lies inside the filesystem root" in done.stderr and "Traceback" not in done.stderr
    assert not ledger.exists(), "a refused run must leave no ledger behind"


def test_a_ledger_named_through_a_bind_mount_of_a_directory_in_the_root_is_refused(
    tmp_path: Path,
) -> None:
    work, side = tmp_path / "work", tmp_path / "side"
    (work / "inner").mkdir(parents=True)
    side.mkdir()
    script = f"mount --bind {work / 'inner'} {side}; " + _run_from(work, side / "ledger")
    done = _in_private_mounts(script, tmp_path)
    assert "EXIT=2" in done.stdout, (done.stdout, done.stderr)
    assert not (work / "inner" / "ledger").exists()


def test_a_symlinked_parent_and_a_proc_root_name_are_refused(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (tmp_path / "link").symlink_to(work)
    for name in (tmp_path / "link" / "ledger", Path(f"/proc/self/root{work}/ledger")):
        script = _run_from(work, name)
        done = _in_private_mounts(script, tmp_path)
        assert "EXIT=2" in done.stdout, (name, done.stdout, done.stderr)
        assert not (work / "ledger").exists()


def test_a_root_inside_the_ledger_directory_is_refused(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    inside = ledger / "work"
    inside.mkdir(parents=True)
    done = _in_private_mounts(_run_from(inside, ledger), tmp_path)
    assert "EXIT=2" in done.stdout, (done.stdout, done.stderr)
    assert not (ledger / "data.mdb").exists()


def test_reaches_is_symmetric_and_leaves_siblings_alone(tmp_path: Path) -> None:
    from bvisor.launcher.basement.mountinfo import fs_location
    from bvisor.launcher.host.reach import reaches

    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "c").mkdir()
    assert reaches(str(tmp_path / "a"), str(tmp_path / "a" / "b" / "ledger"))
    assert reaches(str(tmp_path / "a" / "b"), str(tmp_path / "a"))
    assert not reaches(str(tmp_path / "c"), str(tmp_path / "a" / "b"))
    assert not reaches(str(tmp_path / "a" / "b"), str(tmp_path / "ab"))  # not a prefix match
    location = fs_location(str(tmp_path / "a"))
    assert location is not None and location.path.endswith("/a")
