"""Replay never imports the launcher, nor the planner's host probe.

The point of replay is that it checks the recording with code that did not produce it and
without reading the host. Checked in a fresh interpreter, after a real audit (admission and
the lowering compiler re-run) and after the CLI ran, so lazy imports are caught too.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bvisor.ledger import Ledger
from tests.replay.helpers import record_refusal, record_synthetic

REPO = Path(__file__).resolve().parents[2]

PROBE = """
import sys
from bvisor.ledger import Ledger
from bvisor import replay
from bvisor.front.cli.replay_cmd import main

with Ledger.open(sys.argv[1], readonly=True) as ledger:
    report = replay.audit(ledger)
assert report.ok and len(report.runs) == 2, report.to_json()
assert main(["--ledger", sys.argv[1], "--json"]) == 0
assert "bvisor.planner.rules.v1.admission" in sys.modules
assert "bvisor.planner.rules.v1.lowering" in sys.modules
bad = sorted(
    name for name in sys.modules
    if name == "launcher" or name.startswith("launcher.") or name == "bvisor.launcher.host.probe"
)
print("FORBIDDEN:" + ",".join(bad))
"""


def test_replay_imports_neither_launcher_nor_probe(tmp_path: Path) -> None:
    path = tmp_path / "ledger"
    with Ledger.open(path, create=True) as ledger:
        record_synthetic(ledger)
        record_refusal(ledger)
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "FORBIDDEN:", done.stdout
