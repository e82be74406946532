"""Environment Exact with a secret lease: the child sees exactly the table; the secret
value never lands in the plan, the report, or the ledger's files (checked byte for byte)."""

from __future__ import annotations

import threading
from pathlib import Path

from bvisor import canonical
from bvisor.contract import (
    BoundarySpec,
    BudgetRequirements,
    CaptureStreams,
    EnvEntry,
    Environment,
    EnvLiteral,
    EnvPolicy,
    EvidenceRequirements,
    LaunchWorkload,
    ProcessWorkload,
    SecretLease,
    StdStreams,
)
from bvisor.front.api import run_confined
from tests.e2e.helpers import find_pids_with, unique_marker, wait_for


def test_child_environment_is_exactly_the_table_and_the_secret_stays_out_of_evidence(
    tmp_path: Path,
) -> None:
    secret = "s3cr3t-" + unique_marker("LEASE")
    marker = unique_marker("ENV")
    spec = BoundarySpec(
        workload=ProcessWorkload(exe="/bin/sh", args=("-c", f": {marker}; sleep 1")),
        capabilities=(
            Environment(
                policy=EnvPolicy.exact(
                    (
                        EnvEntry(name="API_TOKEN", value=SecretLease(ref="api-token")),
                        EnvEntry(name="LANG", value=EnvLiteral("C.UTF-8")),
                    )
                )
            ),
        ),
        controls=(LaunchWorkload(), CaptureStreams(streams=StdStreams.capture_out_err())),
        budgets=BudgetRequirements.none(),
        evidence=EvidenceRequirements(),
    )
    seen: dict[str, bytes] = {}

    def watch() -> None:
        pids = wait_for(lambda: find_pids_with(marker, program="sh"))
        if pids:
            seen["environ"] = Path(f"/proc/{pids[0]}/environ").read_bytes()  # type: ignore[index]

    watcher = threading.Thread(target=watch)
    watcher.start()
    ledger_dir = tmp_path / "ledger"
    plans: list[object] = []
    report = run_confined(
        spec, ledger=ledger_dir, secrets={"api-token": secret}, on_plan=plans.append
    )
    watcher.join()
    assert report.body.outcome.value == "completed", report.body.observed
    entries = sorted(seen["environ"].split(b"\0")[:-1])
    assert entries == [b"API_TOKEN=" + secret.encode(), b"LANG=C.UTF-8"]
    needle = secret.encode()
    assert needle not in canonical.encode(plans[0].to_value())  # type: ignore[attr-defined]
    assert needle not in canonical.encode(report.body.to_value())
    for path in ledger_dir.iterdir():
        assert needle not in path.read_bytes(), f"secret leaked into {path.name}"
