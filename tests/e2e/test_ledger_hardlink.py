"""A hard link to the ledger's file is another name for it: a root holding one is refused.

Found by attack: the reach check compared the ledger *directory* (and its parents) with
the roots, by path, device/inode and mount location — but a hard link to ``data.mdb``
inside the working directory is the store itself under a name no directory check sees.
The default workload, whose write root is that directory, truncated it: the host died of
SIGBUS (exit 135) and the ledger was left empty. The oracle is the ledger itself (its
size, and verify) after the attempted run.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bvisor.front.api import run_confined
from bvisor.front.defaults import default_spec
from bvisor.launcher.host.reach import LedgerReachable
from bvisor.ledger import Ledger, verify
from tests.features import require_feature


def test_a_root_on_the_filesystem_of_a_hard_link_to_the_ledger_is_refused(
    tmp_path: Path,
) -> None:
    require_feature("landlock")
    work = tmp_path / "work"
    work.mkdir()
    ledger = tmp_path / "ledger"
    with Ledger.open(ledger, create=True) as opened:
        opened.append("note.before", {"n": 1})
    os.link(ledger / "data.mdb", work / "innocent")
    size = os.path.getsize(ledger / "data.mdb")
    spec = default_spec(["/bin/sh", "-c", ": > innocent"], cwd=str(work))
    with pytest.raises(LedgerReachable, match="hard link"):
        run_confined(spec, ledger=ledger)
    assert os.path.getsize(ledger / "data.mdb") == size
    assert verify(ledger).ok
    (work / "innocent").unlink()  # the only name again: the same run goes ahead
    report = run_confined(spec, ledger=ledger)
    assert report.body.exit is not None and report.body.exit.code == 0, report.body
