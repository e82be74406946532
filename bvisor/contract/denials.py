"""Denied attempts: what the kernel told bvisor it refused the workload, as report entries.

Where the kernel reports a denial to bvisor, the launcher writes it into its transcript
as notes (one grammar, defined here), and the report's ``denied_attempts`` are a pure
function of those notes (:func:`derive`): the runner builds the report with it and replay
re-derives the same entries from the recorded transcript, so an entry can be neither
added nor dropped without a check failing.

The notes, in transcript order:

* ``denied n=K mechanism=M syscall=S nr=N arch=A access=X answer=E pid=P args=R target=O``
  — the first attempt of the K-th distinct kind (K counts 0, 1, 2, ...), written before the
  workload gets its answer; ``-`` is "not known";
* ``denied tally n=K count=C pids=P1,P2 pids_complete=0|1`` — once the workload has
  ended: how many attempts of kind K there were, and the first distinct pids that made
  them;
* ``denied dropped attempts=D`` — attempts beyond the first :data:`MAX_KINDS` kinds,
  answered like every other but not itemised (a hostile workload can make millions of
  denied calls; the evidence stays bounded: at most ``MAX_KINDS`` entries of at most
  :data:`MAX_PIDS` pids each).

A kind without a tally (the launcher was ended before the workload's exit reached it,
e.g. at a deadline) still becomes an entry, with ``tallied`` false: its count is the
lower bound the first note proves. What the launcher's notes could not say becomes a
finding with the :data:`DENIAL_FINDING` prefix, derived here as well.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from bvisor import canonical
from bvisor.contract._wire import (
    U64_MAX,
    as_tuple,
    expect_array,
    expect_bool,
    expect_int,
    expect_map,
    expect_text,
)
from bvisor.contract.errors import ContractError

__all__ = [
    "DENIAL_FINDING",
    "MAX_KINDS",
    "MAX_PIDS",
    "MECHANISMS",
    "SUPERVISOR_NOTE",
    "DenialEvidence",
    "DeniedAttempt",
    "derive",
    "dropped_note",
    "first_note",
    "tally_note",
]

MAX_KINDS = 64
MAX_PIDS = 8
MECHANISMS = ("seccomp", "landlock")
DENIAL_FINDING = "denial evidence: "
# The note with which the launcher says it holds the filter's listener and answers it.
SUPERVISOR_NOTE = "denial supervisor: answering "
_PID_MAX = (1 << 32) - 1
_NR_MAX = (1 << 31) - 1
_NONE = "-"
_KEYS = (
    "mechanism",
    "syscall",
    "number",
    "arch",
    "access",
    "target",
    "answer",
    "count",
    "pids",
    "pids_complete",
    "args",
    "tallied",
)


def _opt_text(value: object, path: str) -> str | None:
    return None if value is None else expect_text(value, path, nonempty=True)


def _opt_int(value: object, path: str, maximum: int) -> int | None:
    return None if value is None else expect_int(value, path, minimum=0, maximum=maximum)


@dataclass(frozen=True, slots=True)
class DeniedAttempt:
    """One kind of denied attempt: what was refused, how, how often, by which processes.

    ``mechanism`` is the kernel mechanism that refused (``seccomp``, ``landlock``).
    seccomp: ``syscall``/``number``/``arch`` name the call (None for a kill, whose call the
    kernel does not report), ``args`` the first attempt's six argument registers (values,
    never memory they point to), ``answer`` the errno name the workload got (``SIGSYS``: it
    was killed). landlock: ``access`` the rights that were missing (``fs.write_file``),
    ``target`` what was refused as the kernel's audit record names it, ``answer`` None (the
    record does not say the errno). ``pids`` the first :data:`MAX_PIDS` distinct pids
    (host-visible) in order, ``pids_complete`` whether that is all of them; ``tallied``
    whether ``count`` is the launcher's final count (else a lower bound).
    """

    mechanism: str
    syscall: str | None
    number: int | None
    arch: str | None
    access: str | None
    target: str | None
    answer: str | None
    count: int
    pids: tuple[int, ...]
    pids_complete: bool
    args: tuple[int, ...]
    tallied: bool

    def __post_init__(self) -> None:
        if self.mechanism not in MECHANISMS:
            raise ContractError("mechanism", f"expected one of {', '.join(MECHANISMS)}")
        for name in ("syscall", "arch", "access", "target", "answer"):
            _opt_text(getattr(self, name), name)
        _opt_int(self.number, "number", _NR_MAX)
        expect_int(self.count, "count", minimum=1, maximum=U64_MAX)
        pids = as_tuple(self.pids, "pids")
        if len(pids) > MAX_PIDS:
            raise ContractError("pids", f"at most {MAX_PIDS} pids are kept")
        for index, pid in enumerate(pids):
            expect_int(pid, f"pids[{index}]", minimum=1, maximum=_PID_MAX)
        if len(set(pids)) != len(pids):
            raise ContractError("pids", "pids must be distinct")
        if len(pids) > self.count:
            raise ContractError("pids", "more pids than attempts", "inconsistent")
        object.__setattr__(self, "pids", pids)
        expect_bool(self.pids_complete, "pids_complete")
        args = as_tuple(self.args, "args")
        if len(args) not in (0, 6):
            raise ContractError("args", "expected no argument registers or all six")
        for index, arg in enumerate(args):
            expect_int(arg, f"args[{index}]", minimum=0, maximum=U64_MAX)
        object.__setattr__(self, "args", args)
        expect_bool(self.tallied, "tallied")

    def summary(self) -> str:
        """One line for people: what, how often, answered how, by whom."""
        what = self.syscall or self.access or ("a call a kill rule stopped" if self.answer else "?")
        if self.number is not None:
            what += f" (nr {self.number})"
        if self.target is not None:
            what += f" {self.target}"
        count = f"{self.count}" if self.tallied else f"at least {self.count}"
        pids = ",".join(map(str, self.pids)) + ("" if self.pids_complete else ",...")
        answer = f" -> {self.answer}" if self.answer else ""
        return f"{self.mechanism}: {what} x{count}{answer}, pid {pids}"

    def to_value(self) -> dict[str, canonical.Value]:
        return {
            "mechanism": self.mechanism,
            "syscall": self.syscall,
            "number": self.number,
            "arch": self.arch,
            "access": self.access,
            "target": self.target,
            "answer": self.answer,
            "count": self.count,
            "pids": list(self.pids),
            "pids_complete": self.pids_complete,
            "args": list(self.args),
            "tallied": self.tallied,
        }

    @classmethod
    def from_value(cls, value: object, path: str = "denied") -> DeniedAttempt:
        body = expect_map(value, path, required=_KEYS)

        def ints(key: str) -> tuple[int, ...]:
            items = expect_array(body[key], f"{path}.{key}")
            return tuple(expect_int(v, f"{path}.{key}[{i}]") for i, v in enumerate(items))

        try:
            return cls(
                mechanism=expect_text(body["mechanism"], f"{path}.mechanism"),
                syscall=_opt_text(body["syscall"], f"{path}.syscall"),
                number=_opt_int(body["number"], f"{path}.number", _NR_MAX),
                arch=_opt_text(body["arch"], f"{path}.arch"),
                access=_opt_text(body["access"], f"{path}.access"),
                target=_opt_text(body["target"], f"{path}.target"),
                answer=_opt_text(body["answer"], f"{path}.answer"),
                count=expect_int(body["count"], f"{path}.count"),
                pids=ints("pids"),
                pids_complete=expect_bool(body["pids_complete"], f"{path}.pids_complete"),
                args=ints("args"),
                tallied=expect_bool(body["tallied"], f"{path}.tallied"),
            )
        except ContractError as exc:
            raise (exc if exc.path.startswith(path) else exc.under(path)) from None


# -- the launcher's notes ----------------------------------------------------------------

_TOKEN = r"[^\s=]+"
_FIRST = re.compile(
    r"denied n=(?P<n>\d+) mechanism=(?P<mechanism>[a-z]+) "
    rf"syscall=(?P<syscall>{_TOKEN}) nr=(?P<nr>\d+|-) arch=(?P<arch>{_TOKEN}) "
    rf"access=(?P<access>{_TOKEN}) answer=(?P<answer>{_TOKEN}) pid=(?P<pid>\d+) "
    r"args=(?P<args>-|(?:0x[0-9a-f]+,){5}0x[0-9a-f]+) target=(?P<target>\S(?:.*\S)?)\Z"
)
_TALLY = re.compile(
    r"denied tally n=(?P<n>\d+) count=(?P<count>\d+) "
    r"pids=(?P<pids>-|\d+(?:,\d+)*) pids_complete=(?P<complete>[01])\Z"
)
_DROPPED = re.compile(r"denied dropped attempts=(?P<attempts>\d+)\Z")
_PREFIX = "denied "


def _token(value: str | None, name: str) -> str:
    if value is None:
        return _NONE
    if not value or value == _NONE or re.fullmatch(_TOKEN, value) is None:
        raise ValueError(f"{name} {value!r} cannot be a note token")
    return value


def first_note(
    n: int,
    *,
    mechanism: str,
    pid: int,
    syscall: str | None = None,
    number: int | None = None,
    arch: str | None = None,
    access: str | None = None,
    answer: str | None = None,
    args: tuple[int, ...] = (),
    target: str | None = None,
) -> str:
    """The note for the first attempt of the ``n``-th distinct kind."""
    if mechanism not in MECHANISMS:
        raise ValueError(f"mechanism {mechanism!r} is not one of {MECHANISMS}")
    if target is not None and (target != target.strip() or target == _NONE or not target):
        raise ValueError(f"target {target!r} cannot end a note")
    if len(args) not in (0, 6):
        raise ValueError("args: no registers or all six")
    shown = ",".join(f"{a:#x}" for a in args) if args else _NONE
    return (
        f"denied n={n} mechanism={mechanism} syscall={_token(syscall, 'syscall')} "
        f"nr={_NONE if number is None else number} arch={_token(arch, 'arch')} "
        f"access={_token(access, 'access')} answer={_token(answer, 'answer')} pid={pid} "
        f"args={shown} target={_NONE if target is None else target}"
    )


def tally_note(n: int, count: int, pids: Iterable[int], complete: bool) -> str:
    """The final count of kind ``n`` and the first distinct pids that attempted it."""
    shown = ",".join(str(p) for p in pids) or _NONE
    return f"denied tally n={n} count={count} pids={shown} pids_complete={int(complete)}"


def dropped_note(attempts: int) -> str:
    """Attempts of kinds beyond :data:`MAX_KINDS`: answered, counted, not itemised."""
    return f"denied dropped attempts={attempts}"


# -- the report's entries from the notes ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class DenialEvidence:
    """The report's ``denied_attempts`` and the denial findings, as the notes imply them."""

    attempts: tuple[DeniedAttempt, ...]
    findings: tuple[str, ...]


def _none(text: str) -> str | None:
    return None if text == _NONE else text


def _first_attempt(match: re.Match[str]) -> DeniedAttempt:
    raw_args = match["args"]
    args = () if raw_args == _NONE else tuple(int(a, 16) for a in raw_args.split(","))
    pid = int(match["pid"])
    return DeniedAttempt(
        mechanism=match["mechanism"],
        syscall=_none(match["syscall"]),
        number=None if match["nr"] == _NONE else int(match["nr"]),
        arch=_none(match["arch"]),
        access=_none(match["access"]),
        target=_none(match["target"]),
        answer=_none(match["answer"]),
        count=1,
        pids=(pid,),
        pids_complete=False,
        args=args,
        tallied=False,
    )


def _tallied(first: DeniedAttempt, match: re.Match[str]) -> DeniedAttempt:
    pids = () if match["pids"] == _NONE else tuple(int(p) for p in match["pids"].split(","))
    if not pids or pids[0] != first.pids[0]:
        raise ContractError("pids", f"the tally's pids {pids} do not start with the first pid")
    return DeniedAttempt(
        mechanism=first.mechanism,
        syscall=first.syscall,
        number=first.number,
        arch=first.arch,
        access=first.access,
        target=first.target,
        answer=first.answer,
        count=int(match["count"]),
        pids=pids,
        pids_complete=match["complete"] == "1",
        args=first.args,
        tallied=True,
    )


def derive(notes: Iterable[str]) -> DenialEvidence:
    """The denied attempts and denial findings the launcher's ``notes`` imply (pure)."""
    firsts: list[DeniedAttempt] = []
    tallied: dict[int, DeniedAttempt] = {}
    dropped: int | None = None
    findings: list[str] = []

    def unreadable(note: str, why: str) -> None:
        shown = note if len(note) <= 120 else note[:119] + "…"
        findings.append(f"{DENIAL_FINDING}unreadable launcher note {shown!r}: {why}")

    for note in notes:
        if not note.startswith(_PREFIX):
            continue
        try:
            if (match := _FIRST.fullmatch(note)) is not None:
                if int(match["n"]) != len(firsts):
                    raise ContractError("n", f"expected kind {len(firsts)} (kinds count 0, 1, ...)")
                if len(firsts) >= MAX_KINDS:
                    raise ContractError("n", f"more than {MAX_KINDS} kinds")
                firsts.append(_first_attempt(match))
            elif (match := _TALLY.fullmatch(note)) is not None:
                n = int(match["n"])
                if n >= len(firsts) or n in tallied:
                    raise ContractError("n", f"a tally for kind {n}, which is unknown or tallied")
                tallied[n] = _tallied(firsts[n], match)
            elif (match := _DROPPED.fullmatch(note)) is not None:
                if dropped is not None:
                    raise ContractError("attempts", "a second count of dropped attempts")
                dropped = int(match["attempts"])
            else:
                raise ContractError("note", "not a denial note of any known shape")
        except (ContractError, ValueError) as exc:
            unreadable(note, str(exc))
    attempts = tuple(tallied.get(n, first) for n, first in enumerate(firsts))
    if dropped:
        findings.append(
            f"{DENIAL_FINDING}{dropped} denied attempts beyond the first {MAX_KINDS} kinds "
            "were answered but not itemised"
        )
    if any(not attempt.tallied for attempt in attempts):
        findings.append(
            f"{DENIAL_FINDING}the launcher ended before its final tally: the counts and pids "
            "of the entries marked untallied are lower bounds"
        )
    return DenialEvidence(attempts, tuple(findings))
