"""`--json` carries the workload's text without its terminal controls.

The human output shows control sequences instead of obeying them; `--json` escapes C0
controls (JSON must), but printed C1 controls (U+0080..U+009F: U+009B is a one-character
CSI, U+009D an OSC), DEL and format characters (U+202E, a bidi override that reorders the
rest of the line) raw: `bvisor run --json` in a terminal handed the workload's escape
sequences to the caller's terminal. The oracle is the bytes the command printed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.features import require_feature

# printf's own escapes: CSI 31m as one C1 character, an OSC title, a bidi override, DEL,
# a line separator.
PAYLOAD = r"a\302\23331m\302\2350;pwned\302\234\342\200\256b\177\342\200\250c"
RAW = ("a\x9b31m\x9d0;pwned\x9c\u202eb\x7f\u2028c").encode()
FORBIDDEN = (b"\xc2\x9b", b"\xc2\x9d", b"\xc2\x9c", b"\xe2\x80\xae", b"\x7f", b"\xe2\x80\xa8")


def test_json_output_holds_no_raw_control_of_the_workload(tmp_path: Path) -> None:
    require_feature("landlock")
    work = tmp_path / "work"
    work.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "bvisor.front.cli.main", "run", "--json", "--",
         "/usr/bin/printf", PAYLOAD],
        capture_output=True,
        cwd=work,
        timeout=60,
        env={**os.environ, "BVISOR_LEDGER": str(tmp_path / "ledger")},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    for raw in FORBIDDEN:
        assert raw not in done.stdout, (raw, done.stdout[-400:])
    assert json.loads(done.stdout)["stdout"] == RAW.decode()  # the same text, escaped
