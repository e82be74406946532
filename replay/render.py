"""Show an :class:`AuditReport` to a person (a table) or a program (JSON).

The table has one row per run — run id prefix, verdict (marked when the run ran with a
dangerous test hook), recorded outcome, time of the run's first event (UTC) — followed by
every check that did not pass, with its detail, so
the reason for a ``failed`` or ``incomplete`` verdict is on screen without ``--json``,
and then — when the full-chain ``ledger verify`` found anything — every ledger finding.
The JSON shape is ``{"ok", "ledger": {"ok", "events", "first_bad_seq", "findings": [{"seq",
"code", "detail"}]}, "runs": [{"run_id", "verdict", "checks": [{"name", "ok",
"detail"}]}]}`` (plus ``"error"`` when the ledger could not be audited at all, and a run's
``"test_hooks"`` when its report says it ran with one: verified, and still not evidence).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from bvisor.ledger.verify import proven_statement
from bvisor.replay.results import VERIFIED, AuditReport, RunAudit

__all__ = ["ID_PREFIX", "render_json", "render_table"]

ID_PREFIX = 16
_MAX_SHOWN = 50


def _time(time_ns: int | None) -> str:
    if time_ns is None:
        return "-"
    moment = datetime.fromtimestamp(time_ns / 1e9, tz=UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _hooked(run: RunAudit) -> str:
    hooks = ", ".join(run.test_hooks)
    return (
        f"ran with the dangerous test hook(s) {hooks}: the record is faithful, and the run is "
        "not evidence of a boundary"
    )


_UNRECORDED = (
    "covered by a trusted signature, but no signer says it recorded this run (every event) "
    "itself: recorded without a key and signed later, or appended by whoever could write the "
    "ledger"
)


def _row(run: RunAudit) -> tuple[str, str, str, str]:
    verdict = f"{run.verdict} (test hook)" if run.test_hooks else run.verdict
    return (run.run_id.hex()[:ID_PREFIX], verdict, run.outcome or "-", _time(run.time_ns))


def render_table(report: AuditReport) -> str:
    """The human form: a table of runs, then the failing checks of each failed run."""
    lines: list[str] = []
    if report.error is not None:
        lines.append(f"error: {report.error}")
    header = ("RUN", "VERDICT", "OUTCOME", "TIME (UTC)")
    rows = [header] + [_row(run) for run in report.runs]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    if report.runs:
        for row in rows:
            lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
    else:
        lines.append("no runs to audit")
    for run in report.runs:
        failing = run.failing()
        unrecorded = run.recorded_by_signer is False and run.ok
        if not failing and not run.test_hooks and not unrecorded:
            continue
        lines.append("")
        lines.append(f"{run.run_id.hex()} {run.verdict}:")
        for check in failing:
            lines.append(f"  {check.name}: {check.detail}")
        if run.test_hooks:
            lines.append(f"  {_hooked(run)}")
        if unrecorded:
            lines.append(f"  {_UNRECORDED}")
    if report.anchor is not None:
        lines.append("")
        proven = [run for run in report.runs if run.verdict == VERIFIED]
        if report.error is not None or not proven:  # the anchor proves nothing here
            lines.append(f"nothing was proven against the {report.anchor}")
        elif len(proven) == len(report.runs):
            lines.append(f"proven against the {report.anchor} (not by walking the whole chain)")
        else:
            lines.append(
                f"only the verified runs are proven against the {report.anchor} (not by "
                "walking the whole chain)"
            )
    ledger = report.ledger
    if ledger is not None and not ledger.ok:
        lines.append("")
        lines.append(
            f"ledger FAILED verify: {len(ledger.findings)} finding(s); "
            f"first bad seq {ledger.first_bad_seq}"
        )
        for finding in ledger.findings[:_MAX_SHOWN]:
            where = "-" if finding.seq is None else str(finding.seq)
            lines.append(f"  seq {where}: {finding.code}: {finding.detail}")
        if len(ledger.findings) > _MAX_SHOWN:
            lines.append(f"  ... and {len(ledger.findings) - _MAX_SHOWN} more (see --json)")
        lines.append(f"  proven: {proven_statement(ledger)}")
    counts: dict[str, int] = {}
    for run in report.runs:
        counts[run.verdict] = counts.get(run.verdict, 0) + 1
    summary = ", ".join(f"{n} {verdict}" for verdict, n in sorted(counts.items()))
    hooked = sum(1 for run in report.runs if run.test_hooks)
    if hooked:
        verb = "is" if hooked == 1 else "are"
        summary += f"; {hooked} ran with a dangerous test hook and {verb} not evidence"
    unsigned = sum(1 for run in report.runs if run.ok and run.recorded_by_signer is False)
    if unsigned:
        summary += f"; {unsigned} recorded by no signer itself"
    lines.append("")
    noun = "run" if len(report.runs) == 1 else "runs"
    lines.append(f"{len(report.runs)} {noun}: {summary or 'none'}")
    return "\n".join(lines) + "\n"


def render_json(report: AuditReport) -> str:
    """The machine form (stable keys; run ids in lowercase hex)."""
    return json.dumps(report.to_json(), indent=2) + "\n"
