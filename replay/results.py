"""The audit's answer: a verdict per run, and a result per named check.

A check result is ``ok`` only when the check ran and everything it compared agreed.
A check that could not run says why in its detail: ``skipped: ...`` when an earlier check
failed (so there is nothing trustworthy to compare against), ``incomplete: ...`` when the
run has not reached ``run.terminal``. Either way ``ok`` is False — an unchecked property is
never reported as a verified one.

Verdicts: ``failed`` when any check failed outright (tampering or corruption outranks a
crash), else ``incomplete`` when the run stopped before its terminal event, else
``unknown-rules`` when the run names planner rules this build does not have (the checks
that re-derive the plan could not run: a statement about this build, not the run), else
``verified``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, NamedTuple

from bvisor.ledger import VerifyResult
from bvisor.ledger.verify import proven_statement

__all__ = [
    "CHECKED",
    "FAILED",
    "INCOMPLETE",
    "PENDING",
    "SKIPPED",
    "UNKNOWN_RULES",
    "VERIFIED",
    "AuditReport",
    "CheckResult",
    "Judged",
    "RunAudit",
    "verdict_of",
]

VERIFIED: Final = "verified"
FAILED: Final = "failed"
INCOMPLETE: Final = "incomplete"
UNKNOWN_RULES: Final = "unknown-rules"

# How a check ended, beyond ok/not ok (kept out of the JSON, which is name/ok/detail).
CHECKED: Final = "checked"
SKIPPED: Final = "skipped"
PENDING: Final = "pending"
NOT_KNOWN: Final = "not-known"


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One named check: whether it held, and a one-line detail saying what was compared.

    ``status`` is ``checked`` (it ran), ``skipped`` (an earlier check failed) or
    ``pending`` (the run is incomplete, so there is nothing to check yet) or ``not-known``
    (the run names planner rules this build does not have).
    """

    name: str
    ok: bool
    detail: str
    status: str = CHECKED

    @classmethod
    def passed(cls, name: str, detail: str) -> CheckResult:
        return cls(name, True, detail)

    @classmethod
    def failed(cls, name: str, detail: str) -> CheckResult:
        return cls(name, False, detail)

    @classmethod
    def skipped(cls, name: str, why: str) -> CheckResult:
        return cls(name, False, f"skipped: {why}", SKIPPED)

    @classmethod
    def pending(cls, name: str, why: str) -> CheckResult:
        return cls(name, False, f"incomplete: {why}", PENDING)

    @classmethod
    def unknown_rules(cls, name: str, why: str) -> CheckResult:
        return cls(name, False, f"unknown rules: {why}", NOT_KNOWN)

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail}


def verdict_of(checks: list[CheckResult]) -> str:
    """``failed`` if a check ran and failed, else ``incomplete`` if one is pending."""
    if any(not c.ok and c.status == CHECKED for c in checks):
        return FAILED
    if any(c.status == PENDING for c in checks):
        return INCOMPLETE
    if any(c.status == NOT_KNOWN for c in checks):
        return UNKNOWN_RULES
    if any(not c.ok for c in checks):  # only skips left: something upstream failed
        return FAILED
    return VERIFIED


class Judged(NamedTuple):
    """What judging one run's contents gave: its checks, its recorded outcome, and the test
    hooks its sealed report says it ran with (a consistent run with one is not evidence)."""

    checks: list[CheckResult]
    outcome: str | None
    test_hooks: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RunAudit:
    """One run's verdict and its checks, in the fixed check order.

    ``outcome`` (the recorded ``run.terminal`` outcome, ``refused`` for a refusal, None when
    there is none) and ``time_ns`` (the run's first event time) are for display only.
    ``test_hooks`` names the dangerous test hooks the sealed report says the launcher ran
    with: a verified run with one recorded its lie faithfully, and is still not evidence of
    a boundary, so the table and the JSON say so next to its verdict. ``recorded_by_signer``
    (proven against a checkpoint whose signature was checked; None otherwise): whether a
    trusted checkpoint names every event of the run as its signer's own.
    """

    run_id: bytes
    verdict: str
    checks: list[CheckResult]
    outcome: str | None = None
    time_ns: int | None = None
    test_hooks: tuple[str, ...] = ()
    recorded_by_signer: bool | None = None

    @property
    def ok(self) -> bool:
        return self.verdict == VERIFIED

    def failing(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.ok]

    def to_json(self) -> dict[str, object]:
        shown: dict[str, object] = {"run_id": self.run_id.hex(), "verdict": self.verdict}
        if self.test_hooks:
            shown["test_hooks"] = list(self.test_hooks)
        if self.recorded_by_signer is not None:
            shown["recorded_by_signer"] = self.recorded_by_signer
        shown["checks"] = [c.to_json() for c in self.checks]
        return shown


@dataclass(frozen=True, slots=True)
class AuditReport:
    """Every audited run and the full-chain verify; ``ok`` only when all of them hold.

    ``ledger`` is the ``bvisor.ledger.verify`` result over the whole chain (genesis to head) the
    runs were judged against: any finding there — a deleted index row, a stale meta head,
    damage outside every run — makes ``ok`` False even when each run looks verified.
    ``error`` is set when the ledger could not be audited at all; ``ok`` is then False.
    ``anchor`` names what the runs were proven against when it was not the whole chain (a
    signed checkpoint, an expected head, a proof bundle); ``ledger`` is then None.
    """

    runs: list[RunAudit]
    error: str | None = None
    ledger: VerifyResult | None = None
    anchor: str | None = None

    @property
    def ok(self) -> bool:
        ledger_ok = self.ledger is None or self.ledger.ok
        return self.error is None and ledger_ok and all(run.ok for run in self.runs)

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"ok": self.ok, "runs": [run.to_json() for run in self.runs]}
        if self.ledger is not None:
            ledger_doc: dict[str, object] = {
                "ok": self.ledger.ok,
                "events": self.ledger.events,
                "first_bad_seq": self.ledger.first_bad_seq,
                "findings": [
                    {"seq": f.seq, "code": f.code, "detail": f.detail} for f in self.ledger.findings
                ],
            }
            if not self.ledger.ok:  # a clean ledger keeps the four keys above
                ledger_doc["chain_bad_seq"] = self.ledger.chain_bad_seq
                ledger_doc["proven"] = proven_statement(self.ledger)
            out["ledger"] = ledger_doc
        if self.anchor is not None:
            out["anchor"] = self.anchor
        if self.error is not None:
            out["error"] = self.error
        return out
