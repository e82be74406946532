"""A workload's output costs the supervisor a bounded amount of memory, whatever its size.

Oracle: the kernel's peak resident set of the ``bvisor run`` process (``ru_maxrss`` from
``wait4``), for 1 MiB against 128 MiB of output, in the same test. Before the fix,
``--json`` held every byte in the host (and then a JSON copy of it), and the capture kept
its 16 MiB in the host's heap even when nothing was recorded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

from tests.features import require_feature

REPO = Path(__file__).resolve().parents[2]
MIB = 1 << 20


def _drain(fd: int, into: bytearray) -> None:
    while chunk := os.read(fd, MIB):
        into += chunk


def _peak(args: list[str], size: int, work: Path) -> tuple[int, int, bytes]:
    """(peak RSS bytes, exit status, stdout) of one ``bvisor run`` writing ``size`` bytes."""
    read_end, write_end = os.pipe()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bvisor.front.cli.main",
            "run",
            *args,
            "--",
            "/bin/sh",
            "-c",
            f"yes | head -c {size}",
        ],
        stdout=write_end,
        stderr=subprocess.DEVNULL,
        cwd=work,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    os.close(write_end)
    out = bytearray()
    reader = threading.Thread(target=_drain, args=(read_end, out))
    reader.start()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    reader.join()
    os.close(read_end)
    return usage.ru_maxrss * 1024, process.returncode, bytes(out)


def _work(tmp_path: Path) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    return work


def test_json_output_is_bounded_and_says_it_was_cut(tmp_path: Path) -> None:
    require_feature("landlock")
    work, ledger = _work(tmp_path), tmp_path / "ledger"
    small, status, _ = _peak(["--ledger", str(ledger), "--json"], MIB, work)
    assert status == 0
    large, status, out = _peak(["--ledger", str(ledger), "--json"], 128 * MIB, work)
    assert status == 0
    document = json.loads(out)
    assert len(document["stdout"]) <= MIB
    assert document["shown"]["stdout"] == {
        "total": 128 * MIB,
        "shown": MIB,
        "truncated": True,
    }
    kinds = [fact["kind"] for fact in document["host_facts"]]
    assert kinds == ["json_stream_truncated"], document["host_facts"]
    # The record keeps up to its cap (two copies while the ledger commits them), the
    # document 1 MiB: the host grows by those bounds, not by the output's 128 MiB.
    assert large - small < 64 * MIB, (small, large)


def test_capture_spills_instead_of_growing_the_host(tmp_path: Path) -> None:
    require_feature("landlock")
    work = _work(tmp_path)
    small, status, out = _peak(["--no-record"], MIB, work)
    assert status == 0 and len(out) == MIB
    large, status, out = _peak(["--no-record"], 128 * MIB, work)
    assert status == 0 and len(out) == 128 * MIB, "every byte is still relayed"
    # The capture keeps its 16 MiB in an unlinked temp file, not in the heap.
    assert large - small < 12 * MIB, (small, large)
