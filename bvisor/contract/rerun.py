"""The link a re-executed run records to the run it re-executes (``bvisor-replay --rerun``).

A rerun is a new run, planned afresh on the host it runs on; what makes it a *rerun* is a
claim that it re-executes one recorded run. The claim names that run three ways — its id,
its plan id and its report's seal — so replay can check it against the ledger: the run
exists, came earlier, and is the very run (a rewritten plan or report of that id no
longer matches). It is carried by the new run's ``plan.admitted`` event as the optional
``rerun_of`` field, outside every plan digest: h_p, h_a, h_l and the plan id say how the
new run was planned, and planning does not depend on where its spec came from.
"""

from __future__ import annotations

from dataclasses import dataclass

from bvisor.contract._wire import expect_bytes, expect_map
from bvisor.digest import DIGEST_SIZE

__all__ = ["RERUN_FIELD", "RerunLink"]

RERUN_FIELD = "rerun_of"


@dataclass(frozen=True, slots=True)
class RerunLink:
    """Which recorded run this run re-executes: its id, plan id and seal (32 bytes each)."""

    run_id: bytes
    plan_id: bytes
    seal: bytes

    def __post_init__(self) -> None:
        for name in ("run_id", "plan_id", "seal"):
            expect_bytes(getattr(self, name), name, size=DIGEST_SIZE)

    def to_value(self) -> dict[str, bytes]:
        return {"run_id": self.run_id, "plan_id": self.plan_id, "seal": self.seal}

    @classmethod
    def from_value(cls, value: object, path: str = RERUN_FIELD) -> RerunLink:
        body = expect_map(value, path, required=("run_id", "plan_id", "seal"))
        return cls(
            run_id=expect_bytes(body["run_id"], f"{path}.run_id", size=DIGEST_SIZE),
            plan_id=expect_bytes(body["plan_id"], f"{path}.plan_id", size=DIGEST_SIZE),
            seal=expect_bytes(body["seal"], f"{path}.seal", size=DIGEST_SIZE),
        )
