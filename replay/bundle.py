"""``bvisor-replay --bundle FILE --pub KEYFILE``: audit a run from its proof bundle alone.

No ledger is opened. ``bvisor.ledger.bundle.open_bundle`` checks the checkpoint's
signature by the trusted key, every record's inclusion proof under the signed root, and
every record's strict decoding; then the run gets every check ``bvisor-replay`` makes of a
run in a ledger (grammar, the plan's digests re-derived with the pure planner, the
transcript, the streams, the report, the seal), with the ``chain`` check answered by the
proofs.
"""

from __future__ import annotations

from collections.abc import Sequence

from bvisor.ledger import RunSummary
from bvisor.ledger.bundle import BundleError, open_bundle
from bvisor.ledger.note import Verifier
from bvisor.replay.audit import audit_run
from bvisor.replay.results import AuditReport, CheckResult

__all__ = ["audit_bundle"]


def audit_bundle(data: bytes, verifiers: Sequence[Verifier]) -> AuditReport:
    """Check a proof bundle and audit its run (see module); never raises on bad input."""
    try:
        opened = open_bundle(data, verifiers)
    except BundleError as exc:
        return AuditReport([], error=str(exc), anchor="proof bundle")
    checkpoint = opened.checkpoint.checkpoint
    signers = ", ".join(f"{v.name}+{v.key_id.hex()}" for v in opened.signed_by)
    anchor = (
        f"proof bundle: checkpoint of {checkpoint.size} events (root "
        f"{checkpoint.root.hex()[:16]}) signed by {signers}"
    )
    events = list(opened.events)
    seqs = [event.seq for event in events]
    chain = CheckResult.passed(
        "chain",
        f"{len(events)} events (seq {seqs[0]}..{seqs[-1]}) proven included in the signed "
        f"checkpoint of {checkpoint.size} events",
    )
    summary = RunSummary(
        opened.run_id,
        seqs[0],
        seqs[-1],
        len(events),
        events[0].time_ns,
        events[-1].time_ns,
        events[-1].kind,
    )
    return AuditReport([audit_run(summary, events, chain)], anchor=anchor)
