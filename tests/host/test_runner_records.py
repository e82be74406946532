"""What the runner records, and when: plan.admitted is durable before the workload runs,
every step lands in order, a run is two durable commits, and large output is chunked
without losing a byte."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from bvisor.digest import Purpose, digest_bytes
from bvisor.front.api import run_confined
from bvisor.launcher.host.runner import STREAM_CHUNK_BYTES, stream_chunks
from bvisor.ledger import Ledger
from bvisor.ledger.errors import LedgerDiskFullError
from tests.e2e.helpers import (
    descendants_spec,
    find_pids_with,
    run_execute,
    unique_marker,
    wait_for,
)
from tests.features import require_feature


def test_stream_chunks_cover_every_byte_in_order() -> None:
    data = bytes(range(256)) * (STREAM_CHUNK_BYTES * 5 // 512)  # 2.5 chunks
    chunks = stream_chunks("stdout", data, total=len(data) + 7, truncated=True)
    assert len(chunks) == 3
    assert b"".join(c["data"] for c in chunks) == data  # type: ignore[misc]
    assert [c["offset"] for c in chunks] == [0, STREAM_CHUNK_BYTES, 2 * STREAM_CHUNK_BYTES]
    assert [c["final"] for c in chunks] == [False, False, True]
    assert all(c["total"] == len(data) + 7 and c["truncated"] for c in chunks)


def test_empty_stream_is_one_final_chunk() -> None:
    assert stream_chunks("stderr", b"", 0, False) == [
        {
            "stream": "stderr",
            "offset": 0,
            "data": b"",
            "final": True,
            "total": 0,
            "truncated": False,
        }
    ]


def test_plan_is_durable_before_the_workload_runs_and_steps_land_in_order(
    tmp_path: Path,
) -> None:
    require_feature("cgroup2-kill")
    marker = unique_marker("DURABLE")
    ledger_dir = tmp_path / "ledger"
    seen: dict[str, list[str]] = {}

    def watch() -> None:
        if wait_for(lambda: find_pids_with(marker, program="sh"), timeout=20):
            with Ledger.open(ledger_dir, readonly=True) as store:
                seen["while_running"] = [event.kind for event in store.events()]

    watcher = threading.Thread(target=watch)
    watcher.start()
    captured = bytearray()
    big = "head -c 3000000 /dev/zero | tr '\\\\0' x"
    report = run_confined(
        descendants_spec(["-c", f": {marker}; sleep 0.5; {big}"]),
        ledger=ledger_dir,
        on_stdout=captured.extend,
    )
    watcher.join()
    during = seen["while_running"]
    # While the workload runs the ledger holds the first commit and nothing else.
    assert during[0] == "plan.admitted" and set(during[1:]) == {"lowering.entry"}, during
    with Ledger.open(ledger_dir, readonly=True) as store:
        events = list(store.events())
    kinds = [event.kind for event in events]
    first_phase, terminal = kinds.index("launcher.phase"), kinds.index("run.terminal")
    assert kinds[:first_phase] == ["plan.admitted", *["lowering.entry"] * (first_phase - 1)]
    assert set(kinds[first_phase:terminal]) == {"launcher.phase"}
    assert kinds[-1] == "report.sealed"
    stdout_chunks = [
        e.payload for e in events if e.kind == "run.streams" and e.payload["stream"] == "stdout"
    ]  # type: ignore[index]
    recorded = b"".join(chunk["data"] for chunk in stdout_chunks)  # type: ignore[index]
    assert len(recorded) == 3_000_000 and recorded == bytes(captured)
    stream = next(s for s in report.body.streams if s.name == "stdout")
    assert stream.digest == digest_bytes(Purpose.STREAM, recorded)


class CountingSink:
    """Forwards to a ledger and counts the writes (each one is one durable commit)."""

    def __init__(self, store: Ledger) -> None:
        self.store = store
        self.commits: list[list[str]] = []

    def append(self, kind: str, payload: Any, run_id: bytes | None = None) -> object:
        self.commits.append([kind])
        return self.store.append(kind, payload, run_id)

    def append_many(self, items: Iterable[tuple[str, Any, bytes | None]]) -> object:
        batch = list(items)
        self.commits.append([kind for kind, _, _ in batch])
        return self.store.append_many(batch)


def test_a_run_is_two_durable_commits(tmp_path: Path) -> None:
    require_feature("cgroup2-kill")
    with Ledger.open(tmp_path / "ledger", create=True) as store:
        sink = CountingSink(store)
        run_execute(descendants_spec(["-c", "echo hi; echo there >&2"]), sink=sink)
        recorded = [event.kind for event in store.events()]
    assert len(sink.commits) == 2, sink.commits
    first, second = sink.commits
    assert first[0] == "plan.admitted" and set(first[1:]) == {"lowering.entry"}
    assert second[0] == "launcher.phase" and second[-1] == "report.sealed"
    assert recorded == first + second


class FullDiskSink:
    """A ledger whose every commit fails, as on a full disk."""

    def __init__(self) -> None:
        self.commits = 0

    def append(self, kind: str, payload: Any, run_id: bytes | None = None) -> object:
        return self.append_many([(kind, payload, run_id)])

    def append_many(self, items: Iterable[tuple[str, Any, bytes | None]]) -> object:
        list(items)
        self.commits += 1
        raise LedgerDiskFullError("no space left on the ledger's disk (simulated)")


def test_a_plan_that_cannot_be_recorded_creates_no_child(tmp_path: Path) -> None:
    """The first commit is written while the launcher verifies; the launcher waits for it
    at its gate, so a plan that cannot be recorded never gets a child, let alone a run."""
    ran = tmp_path / "ran"
    sink = FullDiskSink()
    lines: list[str] = []
    with pytest.raises(LedgerDiskFullError):
        run_execute(
            descendants_spec(["-c", f"touch {ran}"]),
            sink=sink,
            on_phase=lambda _index, line: lines.append(line),
        )
    assert not ran.exists()
    assert sink.commits == 1, "nothing may be sealed after a plan that was not recorded"
    assert "ChildCreated" not in lines and lines[-1] == "SetupFaulted", lines
    assert any("did not record the plan" in line for line in lines), lines
