"""How a recorded run says it ended — for listings such as ``bvisor-ledger runs``.

The ledger stores events and knows nothing of what they mean; a run's outcome is a field
of its ``run.terminal`` payload (:mod:`bvisor.contract.events`), so reading it belongs
here, beside the code that knows the run grammar. This is the run's *claim*, read without
judging it: a run with no ``run.terminal`` is ``refused`` when it opened with
``plan.refused``, and has no outcome (None: incomplete) otherwise; whether the claim holds
is what :func:`bvisor.replay.audit` decides. So are the test hooks a run's sealed report
says it ran with (:func:`recorded_test_hooks`): such a run is not evidence of a boundary,
and a listing must not show it as one.
"""

from __future__ import annotations

from bvisor.contract.events import PLAN_REFUSED, REPORT_SEALED, RUN_TERMINAL, terminal_outcome
from bvisor.contract.report_inputs import TEST_HOOK_FINDING, finding_subjects
from bvisor.ledger import Ledger, RunSummary

__all__ = ["recorded_outcome", "recorded_outcomes", "recorded_test_hooks"]


REFUSED = "refused"  # a plan refused at admission: recorded alone, it has no run.terminal


def recorded_outcome(ledger: Ledger, run_id: bytes) -> str | None:
    """The outcome named by the last ``run.terminal`` of ``run_id``, ``refused``, or None."""
    event = ledger.last_of_kind(run_id, RUN_TERMINAL)
    if event is not None:
        return terminal_outcome(event.kind, event.payload)
    return _without_terminal(ledger, run_id)


def _without_terminal(ledger: Ledger, run_id: bytes) -> str | None:
    return REFUSED if ledger.last_of_kind(run_id, PLAN_REFUSED) is not None else None


def recorded_outcomes(ledger: Ledger) -> list[tuple[RunSummary, str | None]]:
    """Every run's summary (as :meth:`Ledger.runs`) and the outcome it names, in one pass."""
    return [
        (
            summary,
            _without_terminal(ledger, summary.run_id)
            if event is None
            else terminal_outcome(event.kind, event.payload),
        )
        for summary, event in ledger.runs_with_last(RUN_TERMINAL)
    ]


def recorded_test_hooks(ledger: Ledger) -> dict[bytes, tuple[str, ...]]:
    """The dangerous test hooks each run's last ``report.sealed`` names in its findings
    (the finding the launcher's DANGER note becomes), by run id; runs naming none are left
    out. A payload not shaped as a sealed report names none here: replay judges it."""
    hooked: dict[bytes, tuple[str, ...]] = {}
    for summary, event in ledger.runs_with_last(REPORT_SEALED):
        payload = None if event is None else event.payload
        body = payload.get("body") if isinstance(payload, dict) else None
        findings = body.get("findings") if isinstance(body, dict) else None
        if not isinstance(findings, list):
            continue
        hooks = finding_subjects(
            tuple(f for f in findings if isinstance(f, str)), TEST_HOOK_FINDING
        )
        if hooks:
            hooked[summary.run_id] = tuple(hooks)
    return hooked
