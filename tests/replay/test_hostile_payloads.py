"""Hostile payloads: an auditor's tool must answer every chained ledger, never crash on one.

The forger here is the attacker of ``test_tamper`` taken to its limit: it rewrites
payloads with *any* canonical value — wrong types, unknown enum text, missing and extra
keys, digests of the wrong length, negative and 64-bit-edge integers, deep and wide
nesting, a non-map payload — duplicates, drops and reorders events, and moves events
between runs, then recomputes the whole chain so ``ledger verify`` finds nothing. For
every such ledger ``bvisor.replay.audit`` must return, the damaged run must not be ``verified``
and a check that ran must say what is wrong; ``bvisor-replay --json`` must exit 1 with a
JSON document and no traceback.

To stay fast, every case is a *fresh copy* of one honestly recorded run under its own run
id, and all cases share one forged ledger that is audited once (and read once by the
command): a case's run id is derived from its name, so each parametrized test looks up
exactly the run it damaged. An untouched copy of each run is in the same ledger and must
still verify — proof that the copying itself is faithful and a failure is the edit's.
"""

from __future__ import annotations

import copy
import gc
import hashlib
import json
import os
import subprocess
import sys
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bvisor import canonical
from bvisor.front.cli.replay_cmd import main
from bvisor.ledger import Ledger, verify
from bvisor.replay import VERIFIED, AuditReport, RunAudit, audit
from tests.replay.helpers import (
    Copied,
    FakeRun,
    first,
    forge,
    record_refusal,
    record_synthetic,
    refused_spec,
    renumber,
    reseal,
)

REPO = Path(__file__).resolve().parents[2]

# -- hostile values ----------------------------------------------------------------------


def _deep(depth: int) -> Any:
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


WRONG: dict[str, Any] = {
    "null": None,
    "int": 7,
    "negative": -1,
    "u64max": (1 << 64) - 1,
    "n64min": -(1 << 64),
    "bool": True,
    "text": "x",
    "unknown-enum": "no_such_variant",
    "empty-text": "",
    "bytes31": bytes(31),
    "bytes33": b"\xff" * 33,
    "list": [1, "a", None],
    "map": {"zz": 1},
    "deep": _deep(40),
    "wide": [0] * 20_000,
}

# Paths into each kind's payload whose values the replayer reads ("" is the payload).
FIELDS: dict[str, tuple[str, ...]] = {
    "plan.admitted": (
        "",
        "attempt_id",
        "backend",
        "schema_version",
        "spec",
        "spec.workload",
        "spec.budgets",
        "spec.capabilities",
        "profile",
        "profile.backend",
        "profile.facts",
        "admission",
        "admission.requirements",
        "h_p",
        "h_a",
        "h_l",
        "plan_id",
    ),
    "lowering.entry": (
        "",
        "index",
        "entry",
        "entry.id",
        "entry.version",
        "entry.phase_code",
        "entry.decl_digest",
        "entry.param_digest",
        "params",
    ),
    "launcher.phase": ("", "index", "line"),
    "run.terminal": ("", "outcome", "exit", "exit.code", "exit.signal", "budget_witnesses"),
    "run.streams": ("", "stream", "offset", "data", "final", "total", "truncated"),
    "report.sealed": (
        "",
        "seal",
        "body",
        "body.attempt_id",
        "body.plan_id",
        "body.h_a",
        "body.outcome",
        "body.exit",
        "body.streams",
        "body.observed",
        "body.budget_witnesses",
        "body.admitted",
        "body.findings",
        "body.profile",
    ),
    "plan.refused": (
        "",
        "attempt_id",
        "backend",
        "spec",
        "profile",
        "h_p",
        "refusal",
        "refusal.code",
        "refusal.requirement",
        "refusal.detail",
        "refusal.missing_fact",
    ),
}

# Maps whose key sets are checked exactly: a key added to any of them must be refused.
MAPS: dict[str, tuple[str, ...]] = {
    "plan.admitted": ("", "spec", "profile", "admission"),
    "lowering.entry": ("", "entry"),
    "launcher.phase": ("",),
    "run.terminal": ("", "exit"),
    "run.streams": ("",),
    "report.sealed": ("", "body"),
    "plan.refused": ("", "refusal"),
}

# -- cases -------------------------------------------------------------------------------

Edit = Callable[[list[Copied]], list[Copied] | None]


@dataclass(frozen=True)
class Case:
    """One forgery of one run copy; ``named`` must appear in a failing check's detail."""

    id: str
    base: str  # "admitted" or "refused": which recorded run the copy is of
    edit: Edit
    named: str | None = None
    prose: bool = False  # text put in a prose field: shown by replay, never compared


# Fields that are prose for people (the rules-versioning issue: rewording them must never
# fail a recorded run): replay compares the structured facts beside them instead.
PROSE_FIELDS = {("plan.refused", "refusal.detail")}


def _get(payload: Any, path: str) -> Any:
    for key in filter(None, path.split(".")):
        payload = payload[key]
    return payload


def _set_field(kind: str, path: str, value: Any) -> Edit:
    def edit(events: list[Copied]) -> list[Copied] | None:
        event = first(events, kind)
        if not path:
            event.payload = copy.deepcopy(value)
            return None
        parent, _, key = path.rpartition(".")
        _get(event.payload, parent)[key] = copy.deepcopy(value)
        return None

    return edit


def _del_field(kind: str, path: str) -> Edit:
    def edit(events: list[Copied]) -> list[Copied] | None:
        parent, _, key = path.rpartition(".")
        del _get(first(events, kind).payload, parent)[key]
        return None

    return edit


def _add_key(kind: str, path: str) -> Edit:
    def edit(events: list[Copied]) -> list[Copied] | None:
        _get(first(events, kind).payload, path)["zz_extra"] = 1
        return None

    return edit


def _field_cases() -> Iterator[Case]:
    for kind, paths in FIELDS.items():
        base = "refused" if kind == "plan.refused" else "admitted"
        for path in paths:
            leaf = path.rpartition(".")[2]
            for label, value in WRONG.items():
                yield Case(
                    f"{kind}:{path or 'payload'}={label}",
                    base,
                    _set_field(kind, path, value),
                    prose=(kind, path) in PROSE_FIELDS and isinstance(value, str),
                )
            if path:
                yield Case(f"{kind}:{path}=missing", base, _del_field(kind, path), leaf)
    for kind, maps in MAPS.items():
        base = "refused" if kind == "plan.refused" else "admitted"
        for path in maps:
            yield Case(f"{kind}:{path or 'payload'}+extra", base, _add_key(kind, path), "zz_extra")


def _events_of(kind: str, events: list[Copied]) -> list[Copied]:
    return [e for e in events if e.kind == kind]


def _stray(events: list[Copied]) -> bytes:
    """A run id no recorded run has, derived from the case's own run id."""
    run_id = events[0].run_id
    assert run_id is not None
    return bytes(reversed(run_id))


def _drop(kind: str) -> Edit:
    return lambda events: [e for e in events if e is not first(events, kind)]


def _duplicate(kind: str) -> Edit:
    def edit(events: list[Copied]) -> list[Copied]:
        event = first(events, kind)
        at = events.index(event)
        return [*events[:at], Copied(event.kind, event.run_id, event.payload), *events[at:]]

    return edit


def _swap(a: str, b: str) -> Edit:
    def edit(events: list[Copied]) -> list[Copied]:
        i, j = events.index(first(events, a)), events.index(first(events, b))
        events[i], events[j] = events[j], events[i]
        return events

    return edit


def _move(kind: str, *, every: bool = False) -> Edit:
    """Put one (or every) event of ``kind`` under a stray run id."""

    def edit(events: list[Copied]) -> list[Copied]:
        stray = _stray(events)
        for event in _events_of(kind, events) if every else [first(events, kind)]:
            event.run_id = stray
        return events

    return edit


def _set_index(kind: str, position: int, value: int) -> Edit:
    def edit(events: list[Copied]) -> list[Copied] | None:
        _events_of(kind, events)[position].payload["index"] = value
        return None

    return edit


def _insert(kind: str, payload: Any, before: str | None = None) -> Edit:
    def edit(events: list[Copied]) -> list[Copied]:
        at = len(events) if before is None else events.index(first(events, before))
        events.insert(at, Copied(kind, events[0].run_id, copy.deepcopy(payload)))
        return events

    return edit


def _renumbered(kind: str, edit: Edit) -> Edit:
    """``edit``, then the ``index`` fields of ``kind`` count 0, 1, 2, ... again.

    A forger renumbers: without it the index check stops the run at the grammar, and the
    checks behind it (lowering, transcript) never see the edit.
    """

    def renumbered(events: list[Copied]) -> list[Copied]:
        edited = edit(events)
        events = events if edited is None else edited
        renumber(events, kind)
        return events

    return renumbered


def _repeat_last(kind: str) -> Edit:
    def edit(events: list[Copied]) -> list[Copied]:
        last = _events_of(kind, events)[-1]
        at = events.index(last) + 1
        events.insert(at, Copied(kind, last.run_id, copy.deepcopy(last.payload)))
        return events

    return edit


def _streams(**changes: Any) -> Edit:
    def edit(events: list[Copied]) -> list[Copied] | None:
        first(events, "run.streams").payload.update(changes)
        return None

    return edit


def _unknown_requirement(events: list[Copied]) -> None:
    """Admission cannot be re-run (a refused spec), and a requirement key is unknown."""
    payload = first(events, "plan.admitted").payload
    payload["spec"] = refused_spec().to_value()
    payload["admission"]["requirements"][0]["key"] = "no_such_requirement"


_ADMITTED_KINDS = (
    "lowering.entry",
    "launcher.phase",
    "run.terminal",
    "run.streams",
    "report.sealed",
)

EVENT_CASES: tuple[Case, ...] = (
    *(Case(f"drop {k}", "admitted", _drop(k)) for k in ("plan.admitted", *_ADMITTED_KINDS)),
    *(Case(f"duplicate {k}", "admitted", _duplicate(k)) for k in _ADMITTED_KINDS),
    Case("duplicate plan.admitted", "admitted", _duplicate("plan.admitted")),
    Case("swap admitted/entry", "admitted", _swap("plan.admitted", "lowering.entry")),
    Case("swap entry/phase", "admitted", _swap("lowering.entry", "launcher.phase")),
    Case("swap terminal/sealed", "admitted", _swap("run.terminal", "report.sealed")),
    Case("swap terminal/streams", "admitted", _swap("run.terminal", "run.streams")),
    Case("swap phase/terminal", "admitted", _swap("launcher.phase", "run.terminal")),
    Case("reversed", "admitted", lambda events: events[::-1]),
    *(Case(f"move {k}", "admitted", _move(k)) for k in ("plan.admitted", *_ADMITTED_KINDS)),
    Case("move every entry", "admitted", _move("lowering.entry", every=True)),
    Case("move every stream chunk", "admitted", _move("run.streams", every=True)),
    Case("entry index repeated", "admitted", _set_index("lowering.entry", 1, 0), "index"),
    Case("entry index skips", "admitted", _set_index("lowering.entry", 1, 2), "index"),
    Case("entry index u64max", "admitted", _set_index("lowering.entry", 0, (1 << 64) - 1)),
    Case("entry index negative", "admitted", _set_index("lowering.entry", 0, -1), "index"),
    Case("phase index repeated", "admitted", _set_index("launcher.phase", 2, 1), "index"),
    Case("phase index last+1", "admitted", _set_index("launcher.phase", -1, 99), "index"),
    Case("phase index n64min", "admitted", _set_index("launcher.phase", 0, -(1 << 64))),
    Case(
        "last entry repeated, renumbered",
        "admitted",
        _renumbered("lowering.entry", _repeat_last("lowering.entry")),
        "repeats entry",
    ),
    Case(
        "first entry repeated, renumbered",
        "admitted",
        _renumbered("lowering.entry", _duplicate("lowering.entry")),
        "lowering",
    ),
    Case(
        "entry dropped, renumbered",
        "admitted",
        _renumbered("lowering.entry", _drop("lowering.entry")),
        "lacks",
    ),
    Case(
        "last phase repeated, renumbered",
        "admitted",
        _renumbered("launcher.phase", _repeat_last("launcher.phase")),
        "ExecSucceeded",
    ),
    Case(
        "first phase dropped, renumbered",
        "admitted",
        _renumbered("launcher.phase", _drop("launcher.phase")),
        "illegal launcher transcript",
    ),
    Case("last chunk repeated", "admitted", _repeat_last("run.streams"), "final chunk"),
    Case("note before the plan", "admitted", _insert("note.external", {}, "plan.admitted")),
    Case("refusal inside a run", "admitted", _insert("plan.refused", {}, "run.terminal")),
    Case("foreign kind", "admitted", _insert("audit.remark", None, "run.streams")),
    Case("second sealed", "admitted", _insert("report.sealed", {"body": {}, "seal": b""})),
    Case("streams offset u64max", "admitted", _streams(offset=(1 << 64) - 1), "offset"),
    Case("streams total u64max", "admitted", _streams(total=(1 << 64) - 1), "stdout"),
    Case("streams truncated past total", "admitted", _streams(truncated=True), "stdout"),
    Case("streams not final", "admitted", _streams(final=False), "final"),
    Case("streams renamed", "admitted", _streams(stream="stdin"), "stdin"),
    Case("streams 4 MiB", "admitted", _streams(data=b"\x00" * (4 << 20)), "stdout"),
    Case("unknown requirement key", "admitted", _unknown_requirement, "requirements[0].key"),
)

CASES: tuple[Case, ...] = (*_field_cases(), *EVENT_CASES)


def _case_id(case: Case) -> bytes:
    return hashlib.sha256(case.id.encode()).digest()


# -- the shared forged ledger ------------------------------------------------------------


def _copy_run(events: list[Copied], run_id: bytes) -> list[Copied]:
    """A copy of one recorded run under ``run_id``, with its attempt ids and seal redone."""
    copied = [Copied(e.kind, run_id, copy.deepcopy(e.payload)) for e in events]
    for event in copied:
        if event.kind in ("plan.admitted", "plan.refused"):
            event.payload["attempt_id"] = run_id
        elif event.kind == "report.sealed":
            event.payload["body"]["attempt_id"] = run_id
    reseal(copied)
    return copied


CONTROLS = {"admitted": b"\xc0" * 32, "refused": b"\xc1" * 32}


@dataclass
class Audited:
    """The forged ledger, its audit, and what each run id held when it was forged."""

    path: Path
    report: AuditReport
    runs: dict[bytes, RunAudit]
    forged: dict[bytes, list[tuple[str, Any]]]
    pristine: dict[bytes, list[tuple[str, Any]]]


def _shape(events: list[Copied]) -> dict[bytes, list[tuple[str, Any]]]:
    by_run: dict[bytes, list[tuple[str, Any]]] = {}
    for event in events:
        if event.run_id is not None:
            by_run.setdefault(event.run_id, []).append((event.kind, event.payload))
    return by_run


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Audited]:
    """Every case as its own run copy in one forged ledger, audited once."""
    root = tmp_path_factory.mktemp("hostile")
    with Ledger.open(root / "source", create=True) as source:
        record_synthetic(source, fake=FakeRun())
        record_refusal(source)
        originals = list(source.events())
        bases = {
            "admitted": [
                Copied(e.kind, e.run_id, e.payload)
                for e in originals
                if e.run_id == originals[0].run_id
            ],
            "refused": [Copied(e.kind, e.run_id, e.payload) for e in originals[-1:]],
        }
        assert bases["refused"][0].kind == "plan.refused"
        forged_events: list[Copied] = []
        pristine: dict[bytes, list[tuple[str, Any]]] = {}
        for name, run_id in CONTROLS.items():
            forged_events += _copy_run(bases[name], run_id)
        for case in CASES:
            run_id = _case_id(case)
            events = _copy_run(bases[case.base], run_id)
            pristine[run_id] = [(e.kind, copy.deepcopy(e.payload)) for e in events]
            edited = case.edit(events)
            forged_events += events if edited is None else edited
        forged = forge(source, root / "forged", lambda _: forged_events)
    try:
        assert verify(forged).ok, "the forger recomputes the chain; ledger verify must pass"
        report = audit(forged)
    finally:
        forged.close()
    yield Audited(
        root / "forged",
        report,
        {run.run_id: run for run in report.runs},
        _shape(forged_events),
        pristine,
    )


def _explain(run: RunAudit) -> str:
    return "\n".join(f"{c.name} [{c.status}] {c.detail[:300]}" for c in run.checks)


def _assert_caught(run: RunAudit, named: str | None) -> None:
    """Not verified, and a check that ran (or found the run incomplete) says why."""
    assert run.verdict != VERIFIED, _explain(run)
    assert run.checks[0].name == "chain" and run.checks[0].ok, run.checks[0]
    reasons = [c for c in run.checks if not c.ok and c.status in ("checked", "pending")]
    assert reasons, _explain(run)
    if named is not None:
        assert any(named in c.detail for c in reasons), (named, _explain(run))


def test_the_untouched_copies_verify(hostile: Audited) -> None:
    for run_id in CONTROLS.values():
        assert hostile.runs[run_id].verdict == VERIFIED, _explain(hostile.runs[run_id])


def _same_bytes(forged: list[tuple[str, Any]], pristine: list[tuple[str, Any]] | None) -> bool:
    """Equal as recorded bytes, not as Python values (``True == 1``, but not in CBOR)."""
    if pristine is None:
        return False
    return canonical.encode([list(pair) for pair in forged]) == canonical.encode(
        [list(pair) for pair in pristine]
    )


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_a_hostile_run_is_never_verified(hostile: Audited, case: Case) -> None:
    run_id = _case_id(case)
    touched = [
        rid
        for rid in (run_id, bytes(reversed(run_id)))
        if rid in hostile.forged and not _same_bytes(hostile.forged[rid], hostile.pristine.get(rid))
    ]
    if not touched:
        # The edit was a no-op on this payload (the value equals the recorded one): the
        # run is then an untouched copy, and must verify like one.
        assert hostile.runs[run_id].verdict == VERIFIED, _explain(hostile.runs[run_id])
        return
    if case.prose:
        run = hostile.runs[run_id]
        h_a = next(c for c in run.checks if c.name == "h_a")
        assert run.verdict == VERIFIED and "not compared" in h_a.detail, _explain(run)
        return
    for rid in touched:
        assert rid in hostile.runs, f"run {rid.hex()} was not audited"
        _assert_caught(hostile.runs[rid], case.named if rid == run_id else None)
    untouched = run_id not in touched and run_id in hostile.runs
    assert not untouched or hostile.runs[run_id].verdict == VERIFIED


def test_the_command_answers_the_hostile_ledger_in_json(hostile: Audited) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bvisor.front.cli.replay_cmd",
            "--ledger",
            str(hostile.path),
            "--json",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=300,
    )
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert done.returncode == 1, done.stderr[-3000:]
    document = json.loads(done.stdout)
    assert document["ok"] is False and document["ledger"]["ok"] is True
    verdicts = {run["run_id"]: run["verdict"] for run in document["runs"]}
    assert verdicts == {run.run_id.hex(): run.verdict for run in hostile.report.runs}


def test_the_command_table_names_the_failures(
    hostile: Audited, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["--ledger", str(hostile.path)])
    out, err = capsys.readouterr()
    assert code == 1 and "Traceback" not in err, err
    assert "grammar:" in out and f"{len(hostile.report.runs)} runs:" in out


# -- runs that damage each other ---------------------------------------------------------


def _two_runs(tmp_path: Path, edit: Callable[[list[Copied], list[Copied]], list[Copied]]) -> Path:
    with Ledger.open(tmp_path / "source", create=True) as source:
        admitted_id = record_synthetic(source, fake=FakeRun())
        record_refusal(source)

        def split(events: list[Copied]) -> list[Copied]:
            ran = [e for e in events if e.run_id == admitted_id]
            return edit(ran, [e for e in events if e.run_id != admitted_id])

        forge(source, tmp_path / "forged", split).close()
    return tmp_path / "forged"


CROSS: dict[str, Callable[[list[Copied], list[Copied]], list[Copied]]] = {
    "refusal appended to the run": lambda ran, refused: [
        *ran,
        Copied("plan.refused", ran[0].run_id, refused[0].payload),
    ],
    "terminal under the refusal's id": lambda ran, refused: [
        *[e for e in ran if e.kind != "run.terminal"],
        *refused,
        Copied("run.terminal", refused[0].run_id, first(ran, "run.terminal").payload),
    ],
    "run ids swapped on the plans": lambda ran, refused: [
        Copied("plan.refused", ran[0].run_id, refused[0].payload),
        *ran[1:],
        Copied("plan.admitted", refused[0].run_id, ran[0].payload),
    ],
    "runs interleaved and the refusal duplicated": lambda ran, refused: [
        *ran[:3],
        *refused,
        *ran[3:],
        *refused,
    ],
}


@pytest.mark.parametrize("name", sorted(CROSS))
def test_runs_mixed_together_are_each_judged(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _two_runs(tmp_path, CROSS[name])
    with Ledger.open(path, readonly=True) as forged:
        report = audit(forged)
    assert report.ledger is not None and report.ledger.ok
    assert [run.verdict for run in report.runs] != [VERIFIED] * len(report.runs)
    assert main(["--ledger", str(path), "--json"]) == 1
    out, err = capsys.readouterr()
    assert "Traceback" not in err and json.loads(out)["ok"] is False


# -- random splices ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ledger]:
    with Ledger.open(tmp_path_factory.mktemp("splice") / "ledger", create=True) as ledger:
        record_synthetic(ledger, fake=FakeRun())
        yield ledger


def _subvalues(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    yield path, value
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _subvalues(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _subvalues(item, (*path, index))


@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_values_spliced_from_elsewhere_in_the_run_are_caught(
    recorded: Ledger, tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    """Replace 1-3 values anywhere with values taken from elsewhere in the same run.

    Spliced values are well-typed somewhere, so they get past shallow type checks and
    reach the meaning checks (admission re-run, lowering, streams, report) with nonsense.
    """
    events = [Copied(e.kind, e.run_id, copy.deepcopy(e.payload)) for e in recorded.events()]
    pool = [value for e in events for _, value in _subvalues(e.payload)]
    for _ in range(data.draw(st.integers(1, 3))):
        event = data.draw(st.sampled_from(events))
        path, _ = data.draw(st.sampled_from(list(_subvalues(event.payload))))
        value = copy.deepcopy(data.draw(st.sampled_from(pool)))
        if not path:
            event.payload = value
        else:
            _get_path(event.payload, path[:-1])[path[-1]] = value
    changed = [(e.kind, e.payload) for e in events] != [
        (e.kind, e.payload) for e in recorded.events()
    ]
    target = tmp_path_factory.mktemp("spliced")
    forged = forge(recorded, target, lambda _: events)
    try:
        report = audit(forged)
    finally:
        forged.close()
    (run,) = report.runs
    if changed:
        _assert_caught(run, None)
    else:
        assert run.verdict == VERIFIED


def _get_path(value: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        value = value[key]
    return value


def test_big_distinct_profiles_are_not_all_kept_in_memory(recorded: Ledger, tmp_path: Path) -> None:
    """Auditing run after run of distinct multi-megabyte profiles keeps none of them.

    Replay remembers decoded specs, profiles and re-derivations by their canonical bytes
    (one host repeats them). Memory for the audit must stay one run's worth: a forger's
    distinct huge profiles must not accumulate in those memories.
    """
    runs, size = 6, 2 << 20

    def inflate(events: list[Copied]) -> list[Copied]:
        forged: list[Copied] = []
        for number in range(runs):
            run_id = bytes([number]) * 32
            copied = _copy_run(events, run_id)
            facts = first(copied, "plan.admitted").payload["profile"]["facts"]
            facts["kernel_release"] = f"{number}-" + "x" * size
            forged += copied
        return forged

    forged = forge(recorded, tmp_path / "forged", inflate)
    try:
        gc.collect()
        tracemalloc.start()
        try:
            report = audit(forged)
            del report
            gc.collect()
            retained, _ = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    finally:
        forged.close()
    assert retained < 2 * size, f"{retained} bytes kept after the audit"
