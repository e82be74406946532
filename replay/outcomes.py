"""How a recorded run says it ended — for listings such as ``bvisor-ledger runs``.

The ledger stores events and knows nothing of what they mean; a run's outcome is a field
of its ``run.terminal`` payload (:mod:`bvisor.contract.events`), so reading it belongs
here, beside the code that knows the run grammar. This is the run's *claim*, read without
judging it: a run with no ``run.terminal`` is ``refused`` when it opened with
``plan.refused``, and has no outcome (None: incomplete) otherwise; whether the claim holds
is what :func:`bvisor.replay.audit` decides.
"""

from __future__ import annotations

from bvisor.contract.events import PLAN_REFUSED, RUN_TERMINAL, terminal_outcome
from bvisor.ledger import Ledger, RunSummary

__all__ = ["recorded_outcome", "recorded_outcomes"]


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
