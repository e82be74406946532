"""Denied-attempt entries and the launcher-note grammar they are derived from (pure)."""

from __future__ import annotations

import dataclasses

import pytest

from bvisor import canonical
from bvisor.contract import denials
from bvisor.contract.denials import DeniedAttempt, derive, dropped_note, first_note, tally_note
from bvisor.contract.errors import ContractError

ARGS = (0x7F00, 0x7F10, 0x7F20, 0, 0, 0x55AA)


def _mount(**changes: object) -> DeniedAttempt:
    entry = DeniedAttempt(
        mechanism="seccomp",
        syscall="mount",
        number=165,
        arch="x86_64",
        access=None,
        target=None,
        answer="EPERM",
        count=3,
        pids=(100, 101),
        pids_complete=True,
        args=ARGS,
        tallied=True,
    )
    return dataclasses.replace(entry, **changes)  # type: ignore[arg-type]


def test_an_entry_round_trips_through_its_canonical_value() -> None:
    entry = _mount()
    value = canonical.decode(canonical.encode(entry.to_value()))
    assert DeniedAttempt.from_value(value) == entry


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"mechanism": "ptrace"}, "mechanism"),
        ({"count": 0}, "count"),
        ({"pids": tuple(range(1, 10))}, "pids"),
        ({"pids": (5, 5)}, "pids"),
        ({"pids": (0,)}, "pids[0]"),
        ({"count": 1, "pids": (1, 2)}, "pids"),
        ({"args": (1, 2)}, "args"),
        ({"args": (-1, 0, 0, 0, 0, 0)}, "args[0]"),
        ({"syscall": ""}, "syscall"),
        ({"number": -1}, "number"),
    ],
)
def test_a_bad_entry_is_refused_naming_its_field(changes: dict[str, object], field: str) -> None:
    with pytest.raises(ContractError) as caught:
        _mount(**changes)
    assert caught.value.path == field


def test_a_recorded_entry_with_a_bad_field_names_its_path() -> None:
    value = _mount().to_value()
    value["count"] = "three"
    with pytest.raises(ContractError) as caught:
        DeniedAttempt.from_value(value, "body.denied_attempts[0]")
    assert caught.value.path == "body.denied_attempts[0].count"
    value = _mount().to_value()
    value["extra"] = 1
    with pytest.raises(ContractError, match="unknown key"):
        DeniedAttempt.from_value(value)


def _notes_for(entry: DeniedAttempt, n: int = 0) -> list[str]:
    first = first_note(
        n,
        mechanism=entry.mechanism,
        pid=entry.pids[0],
        syscall=entry.syscall,
        number=entry.number,
        arch=entry.arch,
        access=entry.access,
        answer=entry.answer,
        args=entry.args,
        target=entry.target,
    )
    return [first, tally_note(n, entry.count, entry.pids, entry.pids_complete)]


def test_the_notes_the_launcher_writes_derive_exactly_its_entries() -> None:
    mount = _mount()
    landlock = DeniedAttempt(
        mechanism="landlock",
        syscall=None,
        number=None,
        arch=None,
        access="fs.write_file",
        target='path="/etc/my file" dev="vda2" ino=12',
        answer=None,
        count=1,
        pids=(7,),
        pids_complete=False,
        args=(),
        tallied=True,
    )
    notes = ["workload exit code=0", *_notes_for(mount), *_notes_for(landlock, 1)]
    evidence = derive(notes)
    assert evidence.attempts == (mount, landlock)
    assert evidence.findings == ()


def test_an_untallied_kind_is_a_lower_bound_and_says_so() -> None:
    first = _notes_for(_mount())[0]
    evidence = derive([first])
    (entry,) = evidence.attempts
    assert (entry.count, entry.pids) == (1, (100,))
    assert (entry.tallied, entry.pids_complete) == (False, False)
    assert len(evidence.findings) == 1 and "lower bounds" in evidence.findings[0]


def test_dropped_attempts_become_a_finding() -> None:
    evidence = derive([*_notes_for(_mount()), dropped_note(12345)])
    assert len(evidence.attempts) == 1
    assert evidence.findings == (
        f"{denials.DENIAL_FINDING}12345 denied attempts beyond the first {denials.MAX_KINDS} "
        "kinds were answered but not itemised",
    )


@pytest.mark.parametrize(
    "bad",
    [
        "denied n=1 mechanism=seccomp syscall=mount nr=165 arch=x86_64 access=- answer=EPERM "
        "pid=1 args=- target=-",  # kinds must count from 0
        "denied tally n=0 count=2 pids=9 pids_complete=1",  # a tally of an unknown kind
        "denied something else",
        "denied n=0 mechanism=bogus syscall=mount nr=165 arch=x86_64 access=- answer=EPERM "
        "pid=1 args=- target=-",
    ],
)
def test_a_malformed_denial_note_is_a_finding_never_an_entry(bad: str) -> None:
    evidence = derive([bad])
    assert evidence.attempts == ()
    assert len(evidence.findings) == 1 and "unreadable launcher note" in evidence.findings[0]


def test_a_tally_must_start_with_the_first_pid() -> None:
    first, _ = _notes_for(_mount())
    evidence = derive([first, tally_note(0, 3, (999,), True)])
    assert evidence.attempts[0].tallied is False
    assert any("do not start with the first pid" in f for f in evidence.findings)


def test_no_more_than_max_kinds_are_itemised() -> None:
    notes = []
    for n in range(denials.MAX_KINDS + 1):
        notes += _notes_for(_mount(syscall=f"call{n}", number=n), n)
    evidence = derive(notes)
    assert len(evidence.attempts) == denials.MAX_KINDS
    assert any("more than" in f for f in evidence.findings)


def test_note_tokens_cannot_smuggle_fields() -> None:
    with pytest.raises(ValueError):
        first_note(0, mechanism="seccomp", pid=1, syscall="mount pid=2")
    with pytest.raises(ValueError):
        first_note(0, mechanism="seccomp", pid=1, target=" padded")
