"""The launcher's notes that another process reads: one writer and one reader per note.

The launcher writes ``# `` notes on its control channel (:mod:`bvisor.contract.transcript`);
the host reads some of them while the run goes on (the workload's pid, its exit status and
rusage, the launcher's identity, a refusal's code, a fault on a missing kernel feature, the
PID namespace's init to kill at a deadline), replay reads some from the ledger (the exit
status, a test hook's DANGER mark, a SIGSYS kill), and ``bvisor run`` explains a refusal or a
fault from them. The format of each such note was written by the launcher and parsed again
by every reader; a changed word on one side would have silently turned a fact into
"unknown". Here each has one formatter (the launcher's) and the readers' parsers, side by
side, in the pure bottom layer every side may import. The text is the wire: a note's
wording recorded in a ledger stays as it was, so a formatter here is never reworded.

Notes that only a person reads (what a mechanism did) stay with their mechanism; denial
notes live in :mod:`bvisor.contract.denials`, output notes in :mod:`bvisor.contract.outputs`.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = [
    "DANGER_PREFIX",
    "EXIT_PREFIX",
    "INIT_KILLED",
    "RUSAGE_PREFIX",
    "UNAVAILABLE_MECHANISMS",
    "confinement_unavailable",
    "danger_note",
    "exit_note",
    "fault_note",
    "identity_note",
    "init_pid",
    "internal_fault_note",
    "is_refusal",
    "noted_exit",
    "noted_workload_pid",
    "parse_fault",
    "parse_identity",
    "parse_int_note",
    "pid_note",
    "refusal_code",
    "refused_note",
    "rusage_note",
    "rusage_text",
]

# -- the workload's pid, exit status and rusage (launcher -> host, replay) --------------

EXIT_PREFIX: Final = "workload exit "
RUSAGE_PREFIX: Final = "workload rusage "
INIT_KILLED: Final = "workload ended with its PID namespace: init was killed"
_INIT_PID: Final = "init pid="
_WORKLOAD_PID: Final = "workload pid="
_INT_NOTE: Final = re.compile(r"^workload (pid|exit code|exit signal)=(-?\d+)\Z")


def pid_note(pid: int, *, init: bool) -> str:
    """The child's pid: the PID namespace's init, or (without one) the workload itself."""
    return f"{_INIT_PID if init else _WORKLOAD_PID}{pid}"


def exit_note(*, code: int | None = None, signal: int | None = None) -> str:
    """How the workload ended: ``workload exit signal=N`` or ``workload exit code=N``."""
    if (code is None) == (signal is None):
        raise ValueError("exit_note: exactly one of code and signal")
    return f"{EXIT_PREFIX}signal={signal}" if signal is not None else f"{EXIT_PREFIX}code={code}"


def rusage_note(utime_us: int, stime_us: int, maxrss_kb: int) -> str:
    """The workload's resource usage as ``wait4`` gave it."""
    return f"{RUSAGE_PREFIX}utime_us={utime_us} stime_us={stime_us} maxrss_kb={maxrss_kb}"


def parse_int_note(note: str) -> tuple[str, int] | None:
    """``("pid" | "exit code" | "exit signal", N)`` for a workload pid or exit note."""
    match = _INT_NOTE.match(note)
    return None if match is None else (match.group(1), int(match.group(2)))


def rusage_text(note: str) -> str | None:
    """The ``key=value ...`` text of a rusage note, or None for any other note."""
    return note[len(RUSAGE_PREFIX) :] if note.startswith(RUSAGE_PREFIX) else None


def noted_workload_pid(note: str) -> str | None:
    """The text after ``workload pid=``, as written (replay compares it exactly)."""
    return note[len(_WORKLOAD_PID) :] if note.startswith(_WORKLOAD_PID) else None


def noted_exit(note: str) -> str | None:
    """``code=N`` or ``signal=N`` from an exit note, or None for any other note."""
    return note[len(EXIT_PREFIX) :] if note.startswith(EXIT_PREFIX) else None


def init_pid(note: str) -> int | None:
    """The PID namespace init's pid from its note, or None for any other note."""
    if not note.startswith(_INIT_PID):
        return None
    digits = note[len(_INIT_PID) :]
    return int(digits) if digits.isascii() and digits.isdigit() else None


# -- the launcher's identity (launcher -> host) ------------------------------------------

_IDENTITY: Final = re.compile(r"^identity code=([0-9a-f]+) entry=([0-9a-f]+|unknown)\Z")


def identity_note(code: str, entry: str) -> str:
    """The digests the launcher measured: its code and its entry file (or ``unknown``)."""
    return f"identity code={code} entry={entry}"


def parse_identity(note: str) -> tuple[str, str] | None:
    """``(code, entry)`` from an identity note, or None for any other note."""
    match = _IDENTITY.match(note)
    return None if match is None else (match.group(1), match.group(2))


# -- refusals and faults (launcher -> host, bvisor run) ----------------------------------

_REFUSED: Final = "refused code="
_FAULT: Final = re.compile(r"^fault mechanism=(\w+) errno=(\d+) name=(\w+)")
# A fault with one of these errnos on one of these mechanisms means the kernel lacks the
# primitive (the host then says "unavailable", not "failed").
UNAVAILABLE_MECHANISMS: Final = (
    "landlock", "seccomp", "userns", "netns", "namespace", "cgroup", "clone3",
    "no_new_privs", "pdeathsig",
)  # fmt: skip
_UNAVAILABLE_ERRNOS: Final = ("ENOSYS", "EOPNOTSUPP", "ENOTSUP")


def refused_note(code: str, detail: str) -> str:
    """The launcher refused the plan or a handle (nothing was created)."""
    return f"{_REFUSED}{code}: {detail}"


def refusal_code(note: str) -> str | None:
    """The code of a refusal note, or None for any other note."""
    return note[len(_REFUSED) :].split(":", 1)[0] if note.startswith(_REFUSED) else None


def is_refusal(note: str) -> bool:
    """Whether ``note`` is the launcher's refusal note."""
    return note.startswith(_REFUSED)


def fault_note(mechanism: str, errno: int, name: str, detail: str) -> str:
    """An OS operation of ``mechanism`` failed with ``errno`` (``name``: its symbol)."""
    return f"fault mechanism={mechanism} errno={errno} name={name}: {detail}"


def internal_fault_note(exc: BaseException) -> str:
    """The launcher met something it did not foresee (it fails closed)."""
    return f"fault mechanism=launcher internal error: {exc!r}"


def parse_fault(note: str) -> tuple[str, int, str] | None:
    """``(mechanism, errno, name)`` of a fault note, or None for any other note."""
    match = _FAULT.match(note)
    return None if match is None else (match.group(1), int(match.group(2)), match.group(3))


def confinement_unavailable(note: str) -> bool:
    """A fault note saying the kernel lacks a confinement primitive (ENOSYS/EOPNOTSUPP)."""
    fault = parse_fault(note)
    return (
        fault is not None and fault[0] in UNAVAILABLE_MECHANISMS and fault[2] in _UNAVAILABLE_ERRNOS
    )


# -- test hooks (launcher -> replay) -----------------------------------------------------

DANGER_PREFIX: Final = "DANGER test hook active: "


def danger_note(hook: str) -> str:
    """The launcher honours ``hook`` (a test that skips a mechanism): said before anything."""
    return f"{DANGER_PREFIX}{hook}"
