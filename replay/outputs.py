"""A report's outputs, bound to the launcher notes the ledger recorded (part of ``report``).

The files a run listed are gone with its temp root (or changed since, in a write root), so
replay cannot re-hash them; what it can check, from the recording alone, is that the
report says exactly what the launcher noted and that the notes are consistent with
themselves and with the recorded plan:

* every outputs note follows the grammar (:mod:`bvisor.contract.outputs`): digests are 64
  hex digits, sizes and counts decimal, paths in their one escaped spelling;
* the report's outputs facts are the notes, in order; its ``artifacts`` are exactly the
  ``artifact`` notes when the host says it committed them (``artifacts_committed``, whose
  count must agree), and empty otherwise;
* each ``artifact`` is the very file listed just before it in the temp root (same path,
  size and digests); the closing ``outputs_listed`` note counts what was noted (files,
  skips, bytes, artifacts, truncation), names the plan's roots, stays within the plan's
  bounds, and says ``commit:complete`` only for a full, untruncated copy;
* a walk the wall deadline stopped (``outputs_truncated limit:deadline``) is in a run
  with a wall budget, never one recorded as ``completed`` or ``failed``;
* a plan without ``linux.outputs.v1`` has no outputs notes, facts or artifacts at all.
"""

from __future__ import annotations

from collections.abc import Sequence

from bvisor.contract import mechanisms as mech
from bvisor.contract import outputs as g
from bvisor.contract.errors import ContractError
from bvisor.contract.report import BoundaryReportBody
from bvisor.replay.events import LoweringRecord

__all__ = ["outputs_problems"]

_HOST = (g.COMMITTED, g.NOT_COMMITTED)


def _params(lowering: Sequence[LoweringRecord]) -> tuple[mech.Outputs | None, str | None]:
    for record in lowering:
        if record.entry.id == mech.OUTPUTS.id:
            try:
                return mech.params_of(record.entry.id, record.params), None
            except ContractError as exc:
                return None, f"the recorded {mech.OUTPUTS.id} parameters: {exc}"
    return None, None


def outputs_problems(
    body: BoundaryReportBody, notes: Sequence[str], lowering: Sequence[LoweringRecord]
) -> list[str]:
    """What in ``body`` disagrees with the recorded outputs notes and plan (module doc)."""
    try:
        report = g.report_items(notes)
    except g.OutputsGrammarError as exc:
        return [f"an outputs note of the launcher breaks the grammar: {exc}"]
    params, broken = _params(lowering)
    if broken is not None:
        return [broken]
    problems: list[str] = []
    reported = [(f.kind, f.detail) for f in body.observed if f.kind in g.FACT_KINDS]
    if reported != list(report.facts):
        problems.append(
            f"outputs facts ({len(reported)}) are not the launcher's outputs notes "
            f"({len(report.facts)}) in order"
        )
    host = [f for f in body.observed if f.kind in _HOST]
    if params is None:
        if report.items or host or body.artifacts:
            problems.append(
                "the plan lists no outputs, but the run has outputs notes, commit facts or "
                f"artifacts ({len(report.items)} notes, {len(body.artifacts)} artifacts)"
            )
        return problems
    problems += _commit_problems(body, report, params)
    problems += _note_problems(report, params)
    problems += _deadline_problems(body, report)
    return problems


_ENDED_IN_TIME = ("completed", "failed")


def _deadline_problems(body: BoundaryReportBody, report: g.OutputsReport) -> list[str]:
    """A walk the wall deadline stopped belongs to a run with a wall budget that did not
    end in its time: never to a ``completed`` (or ``failed``) run whose listing was cut
    short. (A timeout, as the host records it; a supervisor fault or an interruption
    may still come after the walk's notes.)"""
    if not report.reached_deadline:
        return []
    budgeted = any(
        w.dimension.value == "wall_micros" and w.limit is not None for w in body.budget_witnesses
    )
    if not budgeted:
        return ["the outputs walk stopped at a wall deadline, but the run has no wall budget"]
    if body.outcome.value in _ENDED_IN_TIME:
        return [
            f"the outputs walk stopped at the wall deadline, but the outcome is "
            f"{body.outcome.value}, not a timeout"
        ]
    return []


def _commit_problems(
    body: BoundaryReportBody,
    report: g.OutputsReport,
    params: mech.Outputs,
) -> list[str]:
    facts = [f for f in body.observed if f.kind in _HOST]
    if len(facts) > 1 or (facts and params.commit is None):
        return [f"{len(facts)} commit facts for a plan that commits {params.commit or 'nothing'}"]
    committed = None
    for fact in facts:
        try:
            item = g.parse_host_fact(fact.kind, fact.detail)
        except g.OutputsGrammarError as exc:
            return [f"commit fact {fact.kind}: {exc}"]
        if item.kind == g.COMMITTED:
            committed = item
    if committed is None:
        if body.artifacts:
            return [f"artifacts ({len(body.artifacts)}) in a report that committed none"]
        return []
    problems: list[str] = []
    if not report.commit_complete:
        problems.append("artifacts_committed, but the launcher did not say the copy was complete")
    if list(body.artifacts) != list(report.artifacts):
        problems.append(
            f"artifacts ({len(body.artifacts)}) are not the launcher's artifact notes "
            f"({len(report.artifacts)}) in order"
        )
    if committed.number("count") != len(body.artifacts):
        problems.append(
            f"artifacts_committed counts {committed.get('count')}, the report has "
            f"{len(body.artifacts)} artifacts"
        )
    return problems


def _note_problems(report: g.OutputsReport, params: mech.Outputs) -> list[str]:
    """The notes agree with each other and with the plan's outputs parameters."""
    problems: list[str] = []
    items = report.items
    roots = {g.escape_path(root.path.encode()) for root in params.roots}
    temp = params.temp_root
    temp_root = None if temp is None else g.escape_path(temp.encode())
    for index, item in enumerate(items):
        fields = dict(item.fields)
        if "root" in fields and fields["root"] not in roots:
            problems.append(
                f"{item.kind} names root {fields['root']}, which the plan does not list"
            )
        if item.kind == g.ARTIFACT:
            before = items[index - 1] if index else None
            same = (
                before is not None
                and before.kind == g.LISTED
                and before.get("root") == temp_root
                and all(before.get(k) == item.get(k) for k in ("path", "size", "sha256", "blake3"))
            )
            if not same:
                problems.append(
                    f"artifact {item.get('path')} is not the temp-root file listed just before it"
                )
            if params.commit is None:
                problems.append("an artifact note in a run whose plan commits nothing")
    summaries = [i for i, item in enumerate(items) if item.kind == g.SUMMARY]
    unavailable = [item for item in items if item.kind == g.UNAVAILABLE]
    if len(summaries) + len(unavailable) > 1:
        problems.append("more than one closing outputs note (outputs_listed/outputs_unavailable)")
    elif summaries:
        if summaries[0] != len(items) - 1:
            problems.append("outputs notes follow the closing outputs_listed note")
        problems += _summary_problems(items[summaries[0]], items, params, temp_root)
    return problems


def _summary_problems(
    summary: g.OutputItem,
    items: Sequence[g.OutputItem],
    params: mech.Outputs,
    temp_root: str | None,
) -> list[str]:
    listed = [item for item in items if item.kind == g.LISTED]
    count = {kind: sum(1 for item in items if item.kind == kind) for kind in g.NOTE_KINDS}
    truncations = [item.get("limit") for item in items if item.kind == g.TRUNCATED]
    hashed = sum(item.number("size") for item in listed)
    expected_commit = "none"
    if params.commit is not None:
        failed = count[g.ARTIFACT_FAILED] > 0 or bool(truncations)
        expected_commit = "abandoned" if failed else "complete"
    expected = {
        "roots": ",".join(g.escape_path(root.path.encode()) for root in params.roots),
        "listed": str(count[g.LISTED]),
        "skipped": str(count[g.SKIPPED]),
        "bytes": str(hashed),
        "artifacts": str(count[g.ARTIFACT]),
        "truncated": "yes" if truncations else "no",
        "commit": expected_commit,
    }
    problems = [
        f"outputs_listed {name}:{summary.get(name)}, the notes give {name}:{value}"
        for name, value in expected.items()
        if summary.get(name) != value
    ]
    claimed = [
        item
        for item in items
        if item.kind in (g.LISTED, g.SKIPPED)
        or (item.kind == g.TRUNCATED and item.get("limit") == "depth")
    ]
    if len(claimed) > params.max_files:
        problems.append(f"more items noted than the plan's max_files {params.max_files}")
    if sum(len(item.get("path")) for item in claimed) > params.max_path_bytes:
        problems.append("more path bytes noted than the plan's max_path_bytes")
    if hashed > params.max_bytes:
        problems.append(f"{hashed} bytes listed, over the plan's max_bytes {params.max_bytes}")
    if expected_commit == "complete":
        temp_files = sum(1 for item in listed if item.get("root") == temp_root)
        if temp_files != count[g.ARTIFACT]:
            problems.append(
                f"commit:complete, but {count[g.ARTIFACT]} artifacts for {temp_files} "
                "temp-root files"
            )
    return problems
