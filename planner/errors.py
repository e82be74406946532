"""The planner's one error type: a typed refusal with a stable code.

A refusal is an answer, not a crash: the CLI prints it and exits 125, the ledger records
it as ``plan.refused``, and tests match on ``code``. ``requirement`` names the requirement
key (or ``budget:<dim>``, ``evidence:<claim>``, a lowering entry id) the refusal is about,
and ``missing_fact`` names the host fact whose absence caused it (``landlock_abi``,
``cgroup_v2_kill``, ...), so a user knows what to change on the host.

Stable codes (kebab-case; never renamed, only added):

``unsupported``                the backend cannot hold a requirement (or a workload kind)
``evidence-unsatisfiable``     a required evidence claim cannot be produced
``budget-refused``             a budget fails its minimum, capacity, guarantee or evidence
``support-missing``            a requirement needs another requirement the spec lacks
``invalid-policy``             the spec itself is malformed for planning
``unknown-backend``            no backend with that id is registered
``profile-insufficient``       the profile snapshot lacks a cell or fact admission needs
``lowering-*``                 the lowering compiler rejected its input (see planner.lowering)
"""

from __future__ import annotations

from bvisor import canonical

__all__ = ["REFUSAL_CODES", "PlanRefusal"]

REFUSAL_CODES = frozenset(
    {
        "unsupported",
        "evidence-unsatisfiable",
        "budget-refused",
        "support-missing",
        "invalid-policy",
        "unknown-backend",
        "profile-insufficient",
        "lowering-unknown-primitive",
        "lowering-duplicate",
        "lowering-conflict",
        "lowering-bad-params",
        "lowering-missing-prerequisite",
        "lowering-phase-order",
        "lowering-cycle",
    }
)


class PlanRefusal(Exception):
    """Planning refused: ``code`` (stable), the ``requirement`` it concerns, a ``detail``."""

    def __init__(
        self,
        code: str,
        detail: str,
        *,
        requirement: str | None = None,
        missing_fact: str | None = None,
    ) -> None:
        if code not in REFUSAL_CODES:
            raise ValueError(f"unknown refusal code {code!r}")
        self.code = code
        self.detail = detail
        self.requirement = requirement
        self.missing_fact = missing_fact
        where = f" [{requirement}]" if requirement else ""
        super().__init__(f"{code}{where}: {detail}")

    def to_value(self) -> dict[str, canonical.Value]:
        """The canonical form recorded in a ``plan.refused`` event and printed by --json."""
        return {
            "code": self.code,
            "requirement": self.requirement,
            "detail": self.detail,
            "missing_fact": self.missing_fact,
        }

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild, (self.code, self.detail, self.requirement, self.missing_fact))


def _rebuild(
    code: str, detail: str, requirement: str | None, missing_fact: str | None
) -> PlanRefusal:
    return PlanRefusal(code, detail, requirement=requirement, missing_fact=missing_fact)
