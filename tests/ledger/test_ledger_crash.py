"""Crash and concurrency: real processes, real SIGKILLs, and an oracle outside them.

Appenders run as separate interpreters (``ledger_appender.py``) and print ``SEQ:HASH`` only
after an append returned. The parent kills them with SIGKILL at random moments — often in
the middle of a commit or a map resize — and then checks, with ``verify`` and raw reads,
that the ledger is one valid chain holding every acknowledged event.
"""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path

from bvisor.ledger import Ledger, verify
from tests.ledger.testkit import run_appender

KILLS = 20


def _acks(output: bytes) -> list[tuple[int, bytes]]:
    acks = []
    for line in output.split(b"\n"):
        seq, sep, digest = line.partition(b":")
        if sep and len(digest) == 64:  # a torn last line is not an acknowledgement
            acks.append((int(seq), bytes.fromhex(digest.decode())))
    return acks


def test_sigkilled_appenders_leave_a_valid_ledger(tmp_path: Path) -> None:
    path = tmp_path / "l"
    rng = random.Random(20240601)
    acknowledged: list[tuple[int, bytes]] = []
    for _ in range(KILLS):
        proc = run_appender(path, "loop")
        assert proc.stdout is not None
        first = proc.stdout.readline()  # wait until it is really appending
        assert first, "appender died before its first append"
        time.sleep(rng.uniform(0.0, 0.03))  # then kill it at a random point
        proc.send_signal(signal.SIGKILL)
        rest = proc.stdout.read()
        assert proc.wait() == -signal.SIGKILL
        acknowledged.extend(_acks(first + rest))
    result = verify(path)
    assert result.ok, result.findings
    assert len({seq for seq, _ in acknowledged}) == len(acknowledged)  # no seq given twice
    with Ledger.open(path, readonly=True) as ledger:
        for seq, digest in acknowledged:
            assert ledger.get(seq).hash == digest
        head = ledger.head()
        assert head is not None and head.seq + 1 == result.events >= len(acknowledged)
        assert all(len(ledger.run_events(s.run_id)) == s.count for s in ledger.runs())


def test_concurrent_appenders_form_one_chain(tmp_path: Path) -> None:
    path = tmp_path / "l"
    Ledger.open(path, create=True).close()
    runs = [bytes([index + 1]) * 16 for index in range(4)]
    procs = [run_appender(path, "count", "200", run.hex()) for run in runs]
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write(b"go\n")
        proc.stdin.flush()
    outputs = [proc.communicate()[0] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0, 0, 0]
    result = verify(path)
    assert result.ok, result.findings
    assert result.events == 800
    with Ledger.open(path, readonly=True) as ledger:
        for run, output in zip(runs, outputs, strict=True):
            acks = _acks(output)
            assert len(acks) == 200
            events = ledger.run_events(run)
            assert [e.seq for e in events] == [seq for seq, _ in acks]  # in its own order
            assert [e.hash for e in events] == [digest for _, digest in acks]
            assert [e.payload for e in events] == [
                {"run": run, "index": index} for index in range(200)
            ]
        seqs = sorted(seq for output in outputs for seq, _ in _acks(output))
        assert seqs == list(range(800))  # one chain: every seq exactly once
