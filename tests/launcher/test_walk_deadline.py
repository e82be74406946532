"""The outputs walk stops at the run's wall deadline, even in the middle of a file.

The walk is driven here without a launcher, over a root the test builds in ``/dev/shm`` (a
tmpfs, as a run's root is), with a clock of the test's: the deadline "comes" once the copy
of the second file has begun, wherever the walk checks its clock, so the cut always falls
inside that file however fast this machine is. Oracles: the staging directory on the host,
read by the test (whole copies of what was listed, nothing of the cut file), the digests
the test computes itself, and the notes parsed with the report grammar. Before the fix
the walk had no deadline and copied both files.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import blake3
import pytest

from bvisor.contract import mechanisms as mech
from bvisor.contract import outputs as g
from bvisor.launcher.basement import fds
from bvisor.launcher.process.walk import TMPFS_MAGIC, Walk

FIRST = os.urandom(3 << 20)
SECOND = os.urandom(5 << 20)  # several chunks: the cut falls after its first one


@pytest.fixture
def run_root() -> Iterator[Path]:
    """A stand-in for the run's root: a tmpfs directory holding ``tmp/a`` and ``tmp/b``."""
    if not _is_tmpfs("/dev/shm"):
        pytest.skip("/dev/shm is not a tmpfs here: the walk lists only a tmpfs root")
    root = Path(tempfile.mkdtemp(prefix="bvisor-walk-", dir="/dev/shm"))
    try:
        (root / "tmp").mkdir()
        (root / "tmp" / "a").write_bytes(FIRST)
        (root / "tmp" / "b").write_bytes(SECOND)
        yield root
    finally:
        shutil.rmtree(root)


def _is_tmpfs(path: str) -> bool:
    try:
        fd = os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        return fds.fs_type(fd) == TMPFS_MAGIC
    finally:
        os.close(fd)


def _params() -> mech.Outputs:
    roots = (mech.OutputRoot("/tmp", "temp"),)
    return mech.Outputs(roots, 100, 1 << 30, 8, 1000, 1 << 20, "synced")


def _digests(data: bytes) -> tuple[str, str]:
    return hashlib.sha256(data).hexdigest(), blake3.blake3(data).hexdigest()


def test_a_file_the_deadline_cuts_is_neither_listed_nor_left_copied(
    run_root: Path, tmp_path: Path
) -> None:
    staging = tmp_path / "staging"
    staging.mkdir()
    copy_of_second = staging / "b"

    def clock() -> int:
        """Past the deadline (1) once the second file's copy holds a byte."""
        begun = copy_of_second.exists() and copy_of_second.stat().st_size > 0
        return 1 if begun else 0

    notes: list[str] = []
    root_fd = os.open(run_root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    staging_fd = os.open(staging, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        walk = Walk(_params(), notes.append, 0, staging_fd, deadline_ns=1, clock=clock)
        walk.run(root_fd, {})
    finally:
        os.close(staging_fd)
        os.close(root_fd)
    report = g.report_items(notes)
    kinds = [item.kind for item in report.items]
    assert kinds == [g.LISTED, g.ARTIFACT, g.TRUNCATED, g.SUMMARY], notes
    listed, _, stop, summary = report.items
    assert (listed.get("path"), listed.number("size")) == ("a", len(FIRST))
    assert (listed.get("sha256"), listed.get("blake3")) == _digests(FIRST)
    assert (stop.get("path"), stop.get("limit")) == ("b", g.DEADLINE)
    assert summary.get("listed") == "1" and summary.get("bytes") == str(len(FIRST))
    assert summary.get("truncated") == "yes" and summary.get("commit") == "abandoned"
    # The staging directory holds exactly the whole copy of what was listed.
    assert sorted(p.name for p in staging.iterdir()) == ["a"]
    assert (staging / "a").read_bytes() == FIRST
