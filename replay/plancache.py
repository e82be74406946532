"""The checks of a run's plan — h_p, h_a, h_l, plan_id — remembered by what they read.

These four judge the recorded plan alone: the spec, profile and admission record, the
backend and plan schema, the digests the run states for them, what the pure planner
re-derives from them (a function of the rules version the admission names, the spec and
the profile: :func:`bvisor.replay.derive.rederive_memo`) and, for h_l, the lowering
entries. Nothing of the run's own identity — its id, its events' seqs — is theirs to
judge (that is the grammar's and the report's). Runs that share a plan, as every run of
one command on one host does, share these verdicts: the first run's are computed, the
others' found by the plan's bytes.

Sound by construction (:mod:`bvisor.replay.memo`):

* the key is the complete input, as recorded: the schema version and backend (decoded
  values, exact types), the four stated digests, the exact canonical bytes of the spec,
  profile and admission record, and for h_l the exact payload bytes of every
  ``lowering.entry`` in order (each holds its index) — never a digest taken on trust;
* what is remembered is computed on a copy of the run holding only what the key holds
  (attempt id and run id blanked, no events but the plan's and its entries), so
  it is a function of the key whatever the checks read;
* only verdicts that passed are kept; any other is computed again on the run itself, so
  its detail names that run's events.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from bvisor.replay.checks import check_h_a, check_h_l, check_h_p, check_plan_id
from bvisor.replay.derive import Rederived
from bvisor.replay.events import Admitted, ParsedRun
from bvisor.replay.memo import Memo
from bvisor.replay.results import SKIPPED, CheckResult

__all__ = ["plan_checks"]

PlanKey = tuple[int, str, bytes, bytes, bytes, bytes, bytes, bytes, bytes]
Check = Callable[[ParsedRun, Rederived], CheckResult]

_PLANS: Memo[PlanKey, tuple[CheckResult, CheckResult, CheckResult]] = Memo(256, 1 << 20)
_LOWERINGS: Memo[tuple[PlanKey, tuple[bytes, ...]], CheckResult] = Memo(256, 1 << 20)
_BLANK_ID = bytes(32)


def plan_checks(parsed: ParsedRun, derived: Rederived) -> list[CheckResult]:
    """``[h_p, h_a]`` for a refused plan; ``[h_p, h_a, h_l, plan_id]`` for an admitted one."""
    admitted = parsed.admitted
    if admitted is None:
        return [check_h_p(parsed), _ruled(check_h_a, parsed, derived)]
    key = _key(admitted)
    size = len(admitted.spec_bytes) + len(admitted.profile_bytes) + len(admitted.admission_bytes)
    plan = _PLANS.table.get(key)
    if plan is None:
        alone = _plan_alone(parsed, admitted, with_lowering=False)
        plan = _plan_verdicts(alone, derived)
        if all(result.ok for result in plan):
            _PLANS.put(key, plan, size)
        else:
            plan = _plan_verdicts(parsed, derived)
    h_p, h_a, plan_id = plan
    recorded = parsed.lowering_bytes
    if recorded is None:  # read without the entries' bytes: nothing to remember them by
        return [h_p, h_a, _ruled(check_h_l, parsed, derived), plan_id]
    h_l = _LOWERINGS.table.get((key, recorded))
    if h_l is None:
        h_l = _ruled(check_h_l, _plan_alone(parsed, admitted, with_lowering=True), derived)
        if h_l.ok:
            _LOWERINGS.put((key, recorded), h_l, size + sum(map(len, recorded)))
        else:
            h_l = _ruled(check_h_l, parsed, derived)
    return [h_p, h_a, h_l, plan_id]


def _plan_verdicts(
    parsed: ParsedRun, derived: Rederived
) -> tuple[CheckResult, CheckResult, CheckResult]:
    return (
        check_h_p(parsed),
        _ruled(check_h_a, parsed, derived),
        _ruled(check_plan_id, parsed, derived),
    )


def _key(admitted: Admitted) -> PlanKey:
    return (
        admitted.schema_version,
        admitted.backend,
        admitted.h_p,
        admitted.h_a,
        admitted.h_l,
        admitted.plan_id,
        admitted.spec_bytes,
        admitted.profile_bytes,
        admitted.admission_bytes,
    )


def _plan_alone(parsed: ParsedRun, admitted: Admitted, *, with_lowering: bool) -> ParsedRun:
    """The run with nothing but what the key holds (see module)."""
    return ParsedRun(
        run_id=b"",
        admitted=replace(admitted, attempt_id=_BLANK_ID, rerun_of=None),
        refused=None,
        lowering=parsed.lowering if with_lowering else (),
        lines=(),
        terminal=None,
        streams=(),
        sealed=None,
    )


def _ruled(check: Check, parsed: ParsedRun, derived: Rederived) -> CheckResult:
    """``check``, saying so when the run names planner rules this build does not have.

    Under unknown rules a check still verifies what needs no rules (recorded digests of
    recorded values); only the comparison with a re-derivation is left undone, and it says
    so rather than passing or failing."""
    result = check(parsed, derived)
    if derived.unknown_rules is not None and result.status == SKIPPED:
        return CheckResult.unknown_rules(result.name, derived.unknown_rules)
    return result
