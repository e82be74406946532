"""How a run ended, as the report states it.

``Denied`` is a run refused by its boundary at runtime; ``Unsupported`` a run that could
not be confined as admitted; ``SupervisorFault`` a failure of bvisor itself (never the
workload's fault). The values are stable snake_case text because they are sealed into
reports and ledgers.
"""

from __future__ import annotations

from enum import Enum

from bvisor.contract._wire import expect_enum

__all__ = ["Outcome"]


class Outcome(Enum):
    COMPLETED = "completed"
    DENIED = "denied"
    FAILED = "failed"
    TIMEOUT = "timeout"
    KILLED = "killed"
    UNSUPPORTED = "unsupported"
    SUPERVISOR_FAULT = "supervisor_fault"

    def to_value(self) -> str:
        return self.value

    @classmethod
    def from_value(cls, value: object, path: str = "outcome") -> Outcome:
        return expect_enum(cls, value, path)
