"""run_confined from a multi-threaded program: several runs at once, one shared ledger.

Nothing in the API may fork the (threaded) host; each run must get its own cgroup leaf,
its own output and its own intact record, and the ledger must stay one valid chain.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bvisor.contract import Outcome
from bvisor.front.api import run_confined
from bvisor.ledger import Ledger, verify
from tests.e2e.helpers import descendants_spec
from tests.features import require_feature


def test_concurrent_runs_from_threads_each_complete_and_record(tmp_path: Path) -> None:
    require_feature("cgroup2-kill")
    ledger_dir = tmp_path / "ledger"

    def one(index: int) -> tuple[int, bytes, Outcome]:
        captured = bytearray()
        report = run_confined(
            descendants_spec(["-c", f"echo run-{index}; (sleep 0.2; echo child-{index})"]),
            ledger=ledger_dir,
            on_stdout=captured.extend,
        )
        return index, bytes(captured), report.body.outcome

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(one, range(6)))
    for index, captured, outcome in results:
        assert outcome is Outcome.COMPLETED
        assert captured == f"run-{index}\nchild-{index}\n".encode()
    with Ledger.open(ledger_dir, readonly=True) as store:
        result = verify(store)
        sealed = [event for event in store.events() if event.kind == "report.sealed"]
    assert result.ok, result.findings
    assert len(sealed) == 6
