"""The default spec ``bvisor run -- CMD`` uses when no ``--spec`` is given.

It confines as much as a typical command allows, and every part is something this kernel
must enforce (the planner refuses rather than weakening it):

* no network: an empty network namespace inside a user namespace, plus seccomp refusing
  every socket(), connect() and addressed sendto() (only unnamed AF_UNIX stream and
  seqpacket pairs remain, so no host daemon socket is reachable);
* a private root holding only the current directory (read-write), the system (``/usr``,
  ``/lib*``, ``/bin``, ``/sbin``, ``/etc``, read-only), a minimal ``/dev``, a ``/proc`` of
  its own PID namespace and a private ``/tmp`` (with ``HOME`` = ``/tmp/home``; run from
  ``/tmp`` itself, that directory is the read-write one and ``HOME``); nothing
  else of the host exists for it, and Landlock grants the same paths as a second layer;
* descendants allowed, all in the run's PID namespace and killed at once at the end;
* a minimal environment (``PATH``, ``LANG``, ``HOME``), no inherited fds beyond stdio,
  stdout and stderr captured, stdin relayed when it is not a terminal; the workload
  starts in the current directory;
* default limits (:class:`DefaultLimits`): a process count (tasks: threads count), resident
  memory and storage. Each is Enforced where this host has the mechanism (the pids and
  memory controllers), and otherwise still asked for as Mediated — witnessed, not capped —
  so the run goes ahead and its report says the limit was not enforced. Storage has no
  capping mechanism in this backend: it is always Mediated (witnessed).

The command is resolved as a shell would (PATH lookup, ``#!`` interpreters followed; see
:mod:`bvisor.launcher.host.script`), so ``./build.sh`` or a venv's ``pip`` runs with its
interpreter as the confined executable.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bvisor.contract import (
    BoundarySpec,
    Budget,
    BudgetDimension,
    BudgetRequirements,
    CaptureStreams,
    ChildSpawn,
    EnvEntry,
    Environment,
    EnvLiteral,
    EnvPolicy,
    EvidenceRequirements,
    FdsNone,
    Filesystem,
    FsAccess,
    InheritedFds,
    Kill,
    KillGuarantee,
    KillTarget,
    LaunchWorkload,
    MinGuarantee,
    Network,
    NetworkDenyAll,
    ProcessWorkload,
    SpawnPolicy,
    StdStreams,
    TempRoot,
)

if TYPE_CHECKING:
    import argparse

    from bvisor.contract.profile import ProfileSnapshot

__all__ = [
    "DEFAULT_MEMORY_CAP",
    "DEFAULT_PATH",
    "DEFAULT_PROCESSES",
    "DEFAULT_STORAGE",
    "DefaultLimits",
    "add_limit_arguments",
    "default_limits",
    "default_spec",
    "limits_from_args",
    "parse_size",
    "process_workload",
    "with_terminal",
]

DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
DEFAULT_PROCESSES = 4096  # tasks (threads count): a parallel build fits, a fork bomb stops
DEFAULT_MEMORY_CAP = 16 << 30  # at most half the memory the caller may use, and this
DEFAULT_STORAGE = 16 << 30  # witnessed growth of the writable roots


def process_workload(command: Sequence[str], cwd: str | None = None) -> ProcessWorkload:
    """A workload for ``command`` as a shell would run it (PATH, ``#!`` interpreters).

    Raises ``CommandUnrunnable`` (a ``ValueError``) with one line saying why a command
    cannot start. The ``argv[0]`` the user typed is passed on where the contract has a
    place for it (``ProcessWorkload.argv0``) and differs from what the planner derives.
    """
    from bvisor.launcher.host.script import resolve_command

    resolved = resolve_command(command, path=DEFAULT_PATH, cwd=os.path.abspath(cwd or "."))
    extra: dict[str, Any] = {}
    if "argv0" in getattr(ProcessWorkload, "__dataclass_fields__", {}) and (
        resolved.argv0 != os.path.basename(resolved.exe)
    ):
        extra["argv0"] = resolved.argv0
    return ProcessWorkload(exe=resolved.exe, args=resolved.args, **extra)


HOME = "/tmp/home"  # the private root's own HOME (rules v2 make it with the temp root)
TEMP_DIR = "/tmp"  # where the temp root is mounted


@dataclass(frozen=True, slots=True)
class DefaultLimits:
    """The default spec's budgets; None leaves a dimension unrequested (``--limit-X off``)."""

    processes: int | None = DEFAULT_PROCESSES
    memory: int | None = None  # None here: derived from the host (see default_limits)
    storage: int | None = DEFAULT_STORAGE
    memory_off: bool = False


def _meminfo_total() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _own_memory_limit() -> int | None:
    """The memory limit of the cgroup bvisor itself runs in (v2 memory.max, v1 limit)."""
    from bvisor.launcher.host.probe import own_memory_limit

    return own_memory_limit()


def default_memory() -> int:
    """Half of what the caller may use (host RAM, or its own cgroup's limit if lower),
    at most ``DEFAULT_MEMORY_CAP``: the workload is OOM-killed long before the host is."""
    candidates = [n for n in (_meminfo_total(), _own_memory_limit()) if n]
    usable = min(candidates) if candidates else DEFAULT_MEMORY_CAP * 2
    half = (usable // 2) // (1 << 20) * (1 << 20)
    return max(min(half, DEFAULT_MEMORY_CAP), 64 << 20)


def _guarantee(snapshot: ProfileSnapshot, dimension: BudgetDimension) -> MinGuarantee:
    """Enforced where this host's ceiling reaches it, else Mediated (the run still goes)."""
    from bvisor.contract import Enforcement

    cell = snapshot.cell(f"budget:{dimension.value}")  # the ceiling's budget cell key
    if cell is not None and cell.enforcement is Enforcement.ENFORCED:
        return MinGuarantee.ENFORCED
    return MinGuarantee.MEDIATED


def default_limits(
    snapshot: ProfileSnapshot, limits: DefaultLimits | None = None
) -> BudgetRequirements:
    """The default budgets for this host (``snapshot``): Enforced where it can, else
    Mediated."""
    chosen = limits or DefaultLimits()
    memory = None if chosen.memory_off else (chosen.memory or default_memory())
    budgets: dict[BudgetDimension, Budget] = {}
    if chosen.processes is not None:
        dimension = BudgetDimension.PROCESS_COUNT
        budgets[dimension] = Budget(chosen.processes, _guarantee(snapshot, dimension))
    if memory is not None:
        dimension = BudgetDimension.RESIDENT_BYTES
        budgets[dimension] = Budget(memory, _guarantee(snapshot, dimension))
    if chosen.storage is not None:
        # No mechanism caps storage in this backend: witnessed, never claimed Enforced.
        budgets[BudgetDimension.STORAGE_BYTES] = Budget(chosen.storage, MinGuarantee.MEDIATED)
    return BudgetRequirements.from_items(budgets)


MAX_LIMIT = (1 << 64) - 1  # a budget's limit is an unsigned 64-bit number
_UNITS = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str, *, bytes_unit: bool = True) -> int | None:
    """``4096``, ``512M``, ``8G`` (powers of 1024), or ``off`` (None). ValueError if bad."""
    raw = text.strip().lower()
    if raw in ("off", "none"):
        return None
    scale = 1
    if raw[-1:] in _UNITS:
        if not bytes_unit:
            raise ValueError(f"{text!r}: a count takes no unit")
        scale, raw = _UNITS[raw[-1]], raw[:-1]
    if not raw.isascii() or not raw.isdigit() or len(raw) > 40:
        raise ValueError(f"{text!r}: expected a number, a number with K/M/G/T, or 'off'")
    value = int(raw) * scale
    if value > MAX_LIMIT:
        raise ValueError(f"{text!r}: larger than {MAX_LIMIT}, the largest limit a budget holds")
    return value


def add_limit_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags that change the default spec's limits (``bvisor run`` and ``bvisor plan``)."""
    parser.add_argument(
        "--limit-procs",
        metavar="N",
        help=f"default spec: at most N tasks, threads included (default {DEFAULT_PROCESSES}; "
        "'off' for none); Enforced with a pids controller, else witnessed only",
    )
    parser.add_argument(
        "--limit-memory",
        metavar="SIZE",
        help="default spec: resident memory, e.g. 2G (default: half the memory this host "
        "lets bvisor use, at most 16G; 'off' for none); Enforced with a memory controller",
    )
    parser.add_argument(
        "--limit-storage",
        metavar="SIZE",
        help="default spec: growth of the writable directory (default 16G; 'off' for none); "
        "witnessed, never capped",
    )


def limits_from_args(args: argparse.Namespace) -> DefaultLimits | str:
    """The limits the flags ask for, or a message naming the bad flag."""
    values: dict[str, Any] = {}
    for flag, name, is_bytes in (
        ("--limit-procs", "limit_procs", False),
        ("--limit-memory", "limit_memory", True),
        ("--limit-storage", "limit_storage", True),
    ):
        raw = getattr(args, name, None)
        if raw is None:
            continue
        try:
            values[name] = parse_size(raw, bytes_unit=is_bytes)
        except ValueError as exc:
            return f"{flag} {exc}"
        if values[name] == 0:
            return f"{flag} {raw!r}: use 'off' to ask for no limit, not 0"
    limits = DefaultLimits()
    if "limit_procs" in values:
        limits = dataclasses.replace(limits, processes=values["limit_procs"])
    if "limit_memory" in values:
        memory = values["limit_memory"]
        limits = dataclasses.replace(limits, memory=memory, memory_off=memory is None)
    if "limit_storage" in values:
        limits = dataclasses.replace(limits, storage=values["limit_storage"])
    return limits


def limits_given(args: argparse.Namespace) -> bool:
    return any(
        getattr(args, name, None) is not None
        for name in ("limit_procs", "limit_memory", "limit_storage")
    )


def with_terminal(spec: BoundarySpec) -> BoundarySpec:
    """``spec`` with the workload given a terminal of its own (``bvisor run --tty``): its
    stream capture says ``tty`` (a new one, capturing stdout, stderr and stdin, when it
    had none), so the plan gives it ``/dev/pts`` and the pty as controlling terminal."""
    controls: list[Any] = []
    found = False
    for control in spec.controls:
        if isinstance(control, CaptureStreams):
            control = CaptureStreams(streams=dataclasses.replace(control.streams, tty=True))
            found = True
        controls.append(control)
    if not found:
        controls.append(
            CaptureStreams(streams=StdStreams(stdout=True, stderr=True, stdin=True, tty=True))
        )
    return dataclasses.replace(spec, controls=tuple(controls))


def default_spec(
    command: Sequence[str],
    cwd: str | None = None,
    *,
    snapshot: ProfileSnapshot | None = None,
    limits: DefaultLimits | None = None,
) -> BoundarySpec:
    """The documented default boundary around ``command``, run from ``cwd``.

    ``snapshot`` (this host's profile) decides which limits are asked Enforced; without
    one this host is probed for it.
    """
    workdir = os.path.abspath(cwd or os.getcwd())
    if snapshot is None:
        from bvisor.launcher.host.backend import LinuxBackend

        snapshot = LinuxBackend().probe()
    workload = dataclasses.replace(process_workload(command, workdir), cwd=workdir)
    # Run from /tmp itself, the current directory *is* the temp directory the caller
    # works in: it is granted like any working directory (the host's /tmp, read-write)
    # and is HOME, instead of a private /tmp that would hide it.
    in_tmp = workdir == TEMP_DIR
    home = workdir if in_tmp else HOME
    temp: tuple[TempRoot, ...] = () if in_tmp else (TempRoot(),)
    return BoundarySpec(
        workload=workload,
        capabilities=(
            Filesystem(access=FsAccess.READ_WRITE, roots=(workdir,), recursive=True),
            Network(policy=NetworkDenyAll()),
            ChildSpawn(policy=SpawnPolicy.ALLOW_DESCENDANTS_WITHIN_BOUNDARY),
            Environment(
                policy=EnvPolicy.exact(
                    (
                        EnvEntry(name="HOME", value=EnvLiteral(home)),
                        EnvEntry(name="LANG", value=EnvLiteral("C.UTF-8")),
                        EnvEntry(name="PATH", value=EnvLiteral(DEFAULT_PATH)),
                    )
                )
            ),
            InheritedFds(policy=FdsNone()),
        ),
        controls=(
            LaunchWorkload(),
            # stdin: the caller's pipe or file is relayed in (a terminal never is).
            CaptureStreams(streams=StdStreams(stdout=True, stderr=True, stdin=True)),
            *temp,
            Kill(target=KillTarget.RUN_TREE, guarantee=KillGuarantee.ATOMIC),
        ),
        budgets=default_limits(snapshot, limits),
        evidence=EvidenceRequirements(),
    )
