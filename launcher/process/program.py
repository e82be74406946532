"""The child's program, assembled from the verified schedule one mechanism at a time.

The launcher walks the lowering entries in schedule order and hands each launcher-side
entry, with its typed parameters, to its mechanism module (``mechanisms/``). A module adds
what its mechanism needs to a :class:`Program`: clone3 flags, an op for the child window
(its C phase function and the argument struct it reads), a step the launcher takes while
the child waits at the rendezvous (writing id maps, confirming its cgroup), fds the child
needs until exec, and the notes the transcript reports once the mechanism's phase is done.
Nothing here runs a mechanism; :mod:`bvisor.launcher.process.main` creates the child from
the finished program. A mechanism may also ask for a step once the workload has exited
(``after_workload``): with a PID namespace it runs while the namespace's init still waits
for its release, so the run's mounts are still there to read; it must stop by the run's
wall deadline (``deadline_ns``), which the launcher learns when the host opens its gate.

Ops run in the order they were added, which is schedule order, with one exception the
window's structure needs: the PID namespace's init forks the workload at the end of the
filesystem phase, after the root is built (so /proc belongs to the new namespace) and
before privileges are dropped (``at_end_of``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bvisor.contract.lowering import Phase
from bvisor.contract.transcript import state_of
from bvisor.launcher.process.verify import Refusal, Verified
from bvisor.launcher.wire import states

if TYPE_CHECKING:
    from bvisor.launcher.process.denials import DenialSupervisor

__all__ = ["OP_CODES", "Fault", "Note", "Op", "Program", "state_groups", "state_of"]

Note = Callable[[str], None]  # writes one ``# `` note to the control channel

# The op codes of the child window (window.h's enum bv_op_code): one definition per side,
# tested to agree.
OP_CODES: dict[str, int] = {
    "rootfs": 1,
    "init": 2,
    "caps_drop": 3,
    "no_new_privs": 4,
    "ambient": 5,
    "landlock": 6,
    "seccomp": 7,
    "exec": 8,
    "cgroupfs_hide": 9,
    "netproxy": 10,
    "userlimits": 11,
    "netdns": 12,
    "utsns": 13,
}

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_INTO_CGROUP = 0x200000000


class Fault(Exception):
    """An OS operation failed; carries the errno and the mechanism it belongs to."""

    def __init__(self, mechanism: str, err: int, detail: str) -> None:
        super().__init__(detail)
        self.mechanism = mechanism
        self.errno = err
        self.detail = detail


@dataclass
class Op:
    """One op of the child window: which phase function, its arguments, for which entry."""

    name: str
    args: Any  # a cffi struct pointer; kept alive by the Program
    phase: Phase
    entry: str
    at_end_of_phase: bool = False
    # Run by the launcher once the child reports this op done, with the child's pid; it
    # returns notes for the transcript (and raises Fault to stop the launch).
    on_done: Callable[[int], list[str]] | None = None

    @property
    def code(self) -> int:
        return OP_CODES[self.name]


@dataclass
class Program:
    """What the mechanisms asked for, gathered before clone3 (see the module docstring)."""

    verified: Verified
    ffi: Any
    lib: Any
    clone_flags: int = 0
    cgroup_fd: int = -1
    ops: list[Op] = field(default_factory=list)
    rendezvous: list[tuple[str, Callable[[int], None]]] = field(default_factory=list)
    finishers: list[Callable[[Program], None]] = field(default_factory=list)
    # Steps once the workload exited: given init's pid while it holds the namespace (or
    # None when there is no init, or it died first, and the namespace is gone) and a way
    # to write notes.
    after_workload: list[Callable[[int | None, Note], None]] = field(default_factory=list)
    # The run's wall deadline (CLOCK_MONOTONIC ns) the host sent with the gate's opening,
    # or None: the after-workload steps stop by it, so they cannot outrun the wall budget.
    deadline_ns: int | None = None
    internal_fds: list[int] = field(default_factory=list)
    close_after_spawn: list[int] = field(default_factory=list)
    # cgroup v1 ``tasks`` files the child writes "0" to before the rendezvous, and the
    # launcher's checks, once the child says it joined, that it is in each leaf
    cgroup_join_fds: list[int] = field(default_factory=list)
    after_join: list[Callable[[int], None]] = field(default_factory=list)
    notes: dict[str, list[str]] = field(default_factory=dict)  # transcript state -> notes
    keepalive: list[Any] = field(default_factory=list)
    init_fds: tuple[int, int] | None = None  # (report read end, release write end)
    envp: list[str] | None = None  # NAME=value entries, set by the ambient scrub
    denials: DenialSupervisor | None = None  # set by seccomp when denials are notified

    @property
    def hooks(self) -> frozenset[str]:
        return self.verified.body.test_hooks

    def skipped(self, hook: str) -> bool:
        """True when the test-only lie switch ``hook`` is on (the run says so in DANGER)."""
        return hook in self.hooks

    def note(self, phase: Phase, text: str, *, policy: bool = False) -> None:
        """A note reported with the phase state that covers ``phase`` (``policy``: the
        seccomp filter's, reported with PolicyPhaseResolved)."""
        self.notes.setdefault(state_of(phase, policy=policy), []).append(text)

    def add_op(
        self,
        name: str,
        args: Any,
        phase: Phase,
        entry: str,
        *,
        at_end_of_phase: bool = False,
        on_done: Callable[[int], list[str]] | None = None,
    ) -> None:
        self.ops.append(Op(name, args, phase, entry, at_end_of_phase, on_done))

    def at_rendezvous(self, mechanism: str, step: Callable[[int], None]) -> None:
        """Run ``step(pid)`` while the child waits (a failure faults the launch)."""
        self.rendezvous.append((mechanism, step))

    def when_complete(self, finisher: Callable[[Program], None]) -> None:
        """Run ``finisher`` once every mechanism has been prepared (e.g. to list the fds
        the child needs until exec, which only the whole program knows)."""
        self.finishers.append(finisher)

    def new(self, ctype: str, init: Any = None) -> Any:
        value = self.ffi.new(ctype, init)
        self.keepalive.append(value)
        return value

    def cstr(self, text: str) -> Any:
        return self.new("char[]", text.encode("utf-8"))

    def cstrings(self, texts: list[str]) -> Any:
        """A NULL-terminated ``char *[]``."""
        return self.new("char *[]", [self.cstr(t) for t in texts] + [self.ffi.NULL])

    def ordered_ops(self) -> list[Op]:
        """Schedule order, with end-of-phase ops moved to the end of their phase."""
        ranked = sorted(
            enumerate(self.ops), key=lambda pair: (pair[1].phase, pair[1].at_end_of_phase, pair[0])
        )
        return [op for _, op in ranked]

    def finish(self) -> list[Op]:
        for finisher in self.finishers:
            finisher(self)
        ops = self.ordered_ops()
        if not ops or ops[-1].name != "exec":
            raise Refusal("lowering-inconsistent", "the program does not end with exec")
        return ops


# The transcript's four phase states, and which ops each one covers.
_GROUPS: tuple[tuple[str, Callable[[Op], bool]], ...] = (
    (states.NAMESPACE_PHASE_RESOLVED, lambda op: op.phase <= Phase.FS_SETUP),
    (states.FD_PHASE_RESOLVED, lambda op: Phase.PRIVILEGE_DROP <= op.phase <= Phase.FD_HYGIENE),
    (
        states.FILESYSTEM_PHASE_RESOLVED,
        lambda op: op.phase == Phase.POLICY_INSTALL and op.name != "seccomp",
    ),
    (states.POLICY_PHASE_RESOLVED, lambda op: op.name == "seccomp"),
)


def state_groups(ops: list[Op]) -> list[tuple[str, int]]:
    """``(state, index of the op after which it is reported)`` in transcript order.

    A state whose group has no op is reported with the state before it (-1: before any
    op), so every run reports all four, in order.
    """
    result: list[tuple[str, int]] = []
    last = -1
    for state, member in _GROUPS:
        indexes = [i for i, op in enumerate(ops) if member(op)]
        last = max([last, *indexes])
        result.append((state, last))
    return result
