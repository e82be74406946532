"""A launcher that cannot be tied to its host says so on its control channel, not stderr.

The launcher's stderr is the workload's, captured as the workload's output. The one fault
it wrote there (``prctl(PR_SET_PDEATHSIG)`` failing, before its transcript began) was
recorded as bytes no workload wrote: replay failed the run ("the report holds 119 bytes of
the workload's output, but the transcript never reached ExecSucceeded") and ``bvisor run``
judged the line as the workload's. Here the command runs under a seccomp filter of the
test's that fails exactly that prctl (the filter is the test's, not the product's); the
oracles are the ledger's record, re-verified by replay, and the captured stderr's bytes.
A launcher the resident forks for the run said nothing at all ("the launcher produced no
transcript"); it says the same fault now.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from tests.features import REPO_ROOT

_PRCTL = {"x86_64": 157, "aarch64": 167}
# Install a filter failing prctl(PR_SET_PDEATHSIG, ...) with EPERM, then exec the command.
_UNDER = """
import ctypes, os, struct, sys
nr = int(sys.argv[1])
code = [
    (0x20, 0, 0, 0),  # ld [nr]
    (0x15, 0, 3, nr),  # jeq prctl
    (0x20, 0, 0, 16),  # ld [args[0]] (low word)
    (0x15, 0, 1, 1),  # jeq PR_SET_PDEATHSIG
    (0x06, 0, 0, 0x00050000 | 1),  # ret ERRNO(EPERM)
    (0x06, 0, 0, 0x7FFF0000),  # ret ALLOW
]
insns = b"".join(struct.pack("HBBI", *i) for i in code)
buf = ctypes.create_string_buffer(insns)
prog = ctypes.create_string_buffer(struct.pack("HxxxxxxQ", len(code), ctypes.addressof(buf)))
libc = ctypes.CDLL(None, use_errno=True)
assert libc.prctl(38, 1, 0, 0, 0) == 0  # PR_SET_NO_NEW_PRIVS
assert libc.prctl(22, 2, prog, 0, 0) == 0, ctypes.get_errno()  # SECCOMP_MODE_FILTER
os.execv(sys.executable, [sys.executable, *sys.argv[2:]])
"""


@pytest.mark.parametrize("resident", ["0", "1"], ids=["started-for-the-run", "resident-fork"])
def test_a_launcher_that_cannot_tie_itself_to_its_host_faults_on_the_record(
    tmp_path: Path, resident: str
) -> None:
    nr = _PRCTL.get(platform.machine())
    if nr is None:
        pytest.skip(f"LOUD SKIP: no prctl number for {platform.machine()} in this test")
    work, ledger = tmp_path / "work", tmp_path / "ledger"
    work.mkdir()
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "BVISOR_SERVE": "0",
        "BVISOR_RESIDENT": resident,
    }
    command = ["-m", "bvisor.front.cli.main", "run", "--ledger", str(ledger), "--", "/bin/true"]
    run = subprocess.run(
        [sys.executable, "-c", _UNDER, str(nr), *command],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 125, run.stderr
    assert "not run: setting up launcher failed" in run.stderr, run.stderr
    replay = subprocess.run(
        [sys.executable, "-m", "bvisor.front.cli.replay_cmd", "--ledger", str(ledger), "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    (audited,) = json.loads(replay.stdout)["runs"]
    assert replay.returncode == 0 and audited["verdict"] == "verified", replay.stdout
    export = subprocess.run(
        [sys.executable, "-m", "bvisor.front.cli.ledger_cmd", "export", "--ledger", str(ledger)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    events = [json.loads(line) for line in export.stdout.splitlines()]
    streams = [e["payload"] for e in events if e["kind"] == "run.streams"]
    assert streams and all(s["data"] == "" for s in streams), streams  # nothing captured
