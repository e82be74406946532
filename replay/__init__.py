"""Independent re-verification of recorded runs: ``audit()`` and ``bvisor-replay``.

Replay holds a ledger and this code, and nothing else: it re-derives every digest, re-runs
admission and the lowering compiler (pure planner code) on the recorded spec and profile,
walks the recorded launcher transcript through the contract's state machine (and, for a
run that reached exec, requires every scheduled mechanism's applied-note), re-hashes
captured output and re-computes the report seal. It never imports ``launcher`` nor
``bvisor.launcher.host.probe`` — replay must not depend on the code (or the host) it is checking.
"""

from __future__ import annotations

from bvisor.replay.audit import Progress, ReplayUsageError, audit, audit_run
from bvisor.replay.checks import CHECK_NAMES, REFUSED_CHECK_NAMES
from bvisor.replay.results import (
    FAILED,
    INCOMPLETE,
    UNKNOWN_RULES,
    VERIFIED,
    AuditReport,
    CheckResult,
    RunAudit,
)

__all__ = [
    "CHECK_NAMES",
    "FAILED",
    "INCOMPLETE",
    "REFUSED_CHECK_NAMES",
    "UNKNOWN_RULES",
    "VERIFIED",
    "AuditReport",
    "CheckResult",
    "Progress",
    "ReplayUsageError",
    "RunAudit",
    "audit",
    "audit_run",
]
