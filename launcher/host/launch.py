"""Host side of a launch: start ``bvisor-linux-launcher`` and observe it to the end.

:func:`run_launcher` encodes the launch body into an envelope in a sealed memfd, places
the authority fds at their declared slots and the channel fds just above them, starts
the launcher (``posix_spawn``: safe from any thread, no Python runs in a forked child)
with an environment holding only the channel variables, and then drains the control
channel, stdout and stderr concurrently until the launcher has exited.

Launcher identity: the launcher file is opened once, its bytes are hashed (BLAKE3 hex,
``LaunchObservation.launcher_identity``) and that same open file is executed through
``/proc/self/fd/N`` (the fd stays open across exec so a ``#!`` console script's
interpreter can read it; the launcher hashes it again as ``entry=`` and closes it).

Refusals made here, before anything is spawned, raise :class:`LaunchRefused`: negative
slots, slots 0-2, slots above ``MAX_SLOT``, two fds at one slot, and an authority fd not in
the descriptor table (or a declared slot with no fd). Channel fds are placed above the
highest slot, so they cannot collide with one.

End of a run: when the launcher process exits, ``on_launcher_exit`` is called (default:
SIGKILL to the launcher's process group, which holds the workload's leftover
descendants unless they left it), then stdout/stderr are drained until EOF or for at most
``drain_grace`` seconds. A deadline (``time.monotonic()`` value) calls ``on_deadline``
once (default: SIGKILL the process group); if the launcher is still alive
``drain_grace`` seconds later, its process group is SIGKILLed regardless.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from bvisor import canonical_native
from bvisor.launcher.basement import hostspawn, memfd, seccomp, window
from bvisor.launcher.host import resident
from bvisor.launcher.host.capture import LineSplitter, StreamSink
from bvisor.launcher.wire import envelope, identity, states
from bvisor.launcher.wire.channel import CONTROL_FD_ENV, HOST_PID_ENV, LAUNCHER_FD_ENV, PLAN_FD_ENV
from bvisor.launcher.wire.protocol import MAX_SLOT, LaunchPlan

__all__ = [
    "DEFAULT_STREAM_CAP",
    "AuthorityFd",
    "LaunchObservation",
    "LaunchOptions",
    "LaunchRefused",
    "launch_confinement_unavailable",
    "notes_confinement_unavailable",
    "run_launcher",
    "run_launcher_payload",
]

DEFAULT_STREAM_CAP = 16 * 1024 * 1024
_READ_CHUNK = 256 * 1024
_UNAVAILABLE = re.compile(
    r"^fault mechanism="
    r"(landlock|seccomp|userns|netns|namespace|cgroup|clone3|no_new_privs|pdeathsig)"
    r" errno=\d+ name=(ENOSYS|EOPNOTSUPP|ENOTSUP)\b"
)
_INT_NOTE = re.compile(r"^workload (pid|exit code|exit signal)=(-?\d+)\Z")
_RUSAGE_NOTE = re.compile(r"^workload rusage (.*)\Z")
_IDENTITY_NOTE = re.compile(r"^identity code=([0-9a-f]+) entry=([0-9a-f]+|unknown)\Z")


class LaunchRefused(ValueError):
    """The host refused to start the launcher (bad slots or fds); nothing was spawned."""


class _HasFileno(Protocol):
    def fileno(self) -> int: ...


@dataclass(frozen=True, slots=True)
class AuthorityFd:
    """An fd the host opened, to be placed at ``slot_index`` in the launcher.

    ``handle`` is an int fd or any object with ``fileno()`` (an open file, a socket...);
    the caller keeps ownership and closes it after :func:`run_launcher` returns.
    """

    slot_index: int
    handle: int | _HasFileno

    def fileno(self) -> int:
        if isinstance(self.handle, int) and not isinstance(self.handle, bool):
            return self.handle
        return int(self.handle.fileno())  # type: ignore[union-attr]


@dataclass(frozen=True, slots=True)
class LaunchOptions:
    """How the host runs and observes the launcher (all optional).

    ``own_process_group`` (default True) starts the launcher in a new process group, and
    the default deadline/exit actions SIGKILL that group. Set it False when stdin is the
    controlling terminal (a background group reading the tty would be stopped by
    SIGTTIN); the default actions then SIGKILL only the launcher, and the workload dies
    with it (it has PDEATHSIG=SIGKILL) — its descendants are then the cgroup's job.

    ``expected_identity`` is the launcher digest the plan was admitted with (part of h_p).
    When given, the host refuses to spawn a launcher file whose bytes hash differently:
    the code that runs must be the code the plan names.
    """

    stdin_fd: int | None = None
    stream_cap: int = DEFAULT_STREAM_CAP
    on_stdout: Callable[[bytes], None] | None = None
    on_stderr: Callable[[bytes], None] | None = None
    on_control_line: Callable[[str], None] | None = None
    deadline: float | None = None
    on_deadline: Callable[[], None] | None = None
    on_spawned: Callable[[int], None] | None = None
    on_launcher_exit: Callable[[], None] | None = None
    drain_grace: float = 2.0
    own_process_group: bool = True
    expected_identity: str | None = None


@dataclass(frozen=True, slots=True)
class LaunchObservation:
    """Everything the host saw of one launch.

    ``launcher_exit`` is the launcher's exit code, or ``-N`` if signal N killed it, or
    None if it could not be reaped. ``workload_pid`` is the host-visible pid.
    ``launcher_code_identity`` is the launcher's own ``code=`` digest (see
    :mod:`bvisor.launcher.wire.identity`) and ``launcher_entry_identity`` its hash of the file it
    was
    started from, which should equal ``launcher_identity``.
    """

    terminal: str | None
    transcript: tuple[str, ...]
    notes: tuple[str, ...]
    lines: tuple[str, ...]
    captured_stdout: bytes
    captured_stderr: bytes
    stdout_total: int
    stderr_total: int
    stdout_truncated: bool
    stderr_truncated: bool
    launcher_exit: int | None
    workload_pid: int | None
    workload_exit_code: int | None
    workload_exit_signal: int | None
    workload_rusage: dict[str, int]
    deadline_hit: bool
    launcher_identity: str
    test_hooks: frozenset[str]
    launcher_code_identity: str | None = None
    launcher_entry_identity: str | None = None
    streams_open_after_exit: bool = False
    unknown_lines: tuple[str, ...] = field(default=())

    def exec_succeeded(self) -> bool:
        """Did the launcher report that the workload was exec'd?"""
        return self.terminal == states.EXEC_SUCCEEDED

    def identity_matches(self) -> bool:
        """Did the launcher hash the same entry file the host hashed and executed?"""
        return self.launcher_entry_identity == self.launcher_identity

    def refusal_code(self) -> str | None:
        """The launcher's refusal code (``refused code=...`` note), if it refused."""
        for note in self.notes:
            if note.startswith("refused code="):
                return note[len("refused code=") :].split(":", 1)[0]
        return None


def notes_confinement_unavailable(notes: Iterable[str]) -> bool:
    """Do these launcher notes show a confinement primitive missing (ENOSYS/EOPNOTSUPP)?"""
    return any(_UNAVAILABLE.match(note) for note in notes)


def launch_confinement_unavailable(obs: LaunchObservation) -> bool:
    """The launcher faulted because the kernel lacks a confinement primitive.

    True only for SetupFaulted with an ENOSYS/EOPNOTSUPP fault on a confinement
    mechanism; EPERM, EINVAL and everything else are real failures, not "unavailable".
    """
    return obs.terminal == states.SETUP_FAULTED and notes_confinement_unavailable(obs.notes)


def run_launcher(
    launcher_path: str | os.PathLike[str],
    plan: LaunchPlan,
    authority_fds: Sequence[AuthorityFd],
    *,
    options: LaunchOptions | None = None,
) -> LaunchObservation:
    """Start the launcher on ``plan`` with ``authority_fds`` and observe it to the end."""
    body = plan.body
    declared = [slot.slot_index for slot in body.descriptor_table]
    payload = envelope.seal(body.encode())
    return run_launcher_payload(
        launcher_path,
        payload,
        authority_fds,
        declared_slots=declared,
        options=options,
        test_hooks=body.test_hooks,
    )


def run_launcher_payload(
    launcher_path: str | os.PathLike[str],
    payload: bytes,
    authority_fds: Sequence[AuthorityFd],
    *,
    declared_slots: Sequence[int] | None = None,
    options: LaunchOptions | None = None,
    test_hooks: frozenset[str] = frozenset(),
    seal: bool = True,
) -> LaunchObservation:
    """Like :func:`run_launcher` but with raw envelope bytes (tests tamper with them).

    ``seal=False`` leaves the memfd unsealed, which the launcher must refuse. When
    ``declared_slots`` is None the host-side table check is skipped (the launcher still
    checks every slot it is told about).
    """
    opts = options or LaunchOptions()
    slots = _check_authority(authority_fds, declared_slots)
    window.ensure_built()
    seccomp.ensure_generated()
    canonical_native.validator()  # built (if a checkout never was) before a launcher hashes it
    stdin_fd = opts.stdin_fd
    if stdin_fd is not None:
        try:
            os.fstat(stdin_fd)
        except OSError as exc:
            raise LaunchRefused(
                f"options.stdin_fd {stdin_fd} is not open: {exc.strerror}"
            ) from None
    path = os.fspath(launcher_path)
    try:
        launcher_fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise LaunchRefused(f"launcher {path!r} cannot be opened: {exc.strerror}") from None
    opened: list[int] = [launcher_fd]
    try:
        launcher_identity = identity.hash_fd(launcher_fd)
        expected = opts.expected_identity
        if expected is not None and launcher_identity != expected:
            raise LaunchRefused(
                f"launcher {path!r} hashes to {launcher_identity}, but the plan was admitted "
                f"for launcher {expected}; refusing to run different code than planned"
            )
        plan_fd = memfd.sealed_memfd(payload, seal=seal)
        opened.append(plan_fd)
        if stdin_fd is None:
            # An empty pipe, not the host's /dev/null: an fd to a host file would let the
            # workload fchmod or utime that very file (Landlock does not see metadata, and
            # the fd predates the workload's read-only mount view). Reads give EOF alike.
            stdin_fd, stdin_writer = os.pipe2(os.O_CLOEXEC)
            os.close(stdin_writer)
            opened.append(stdin_fd)
        control_r, control_w = os.pipe2(os.O_CLOEXEC)
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        readers = [control_r, out_r, err_r]
        writers = [control_w, out_w, err_w]
        opened += writers
        base = max(slots, default=2) + 1
        plan_slot, control_slot, launcher_slot = base, base + 1, base + 2
        placements = [(stdin_fd, 0), (out_w, 1), (err_w, 2)]
        placements += [(fd, slot) for slot, fd in slots.items()]
        placements += [
            (plan_fd, plan_slot),
            (control_w, control_slot),
            (launcher_fd, launcher_slot),
        ]
        env = {
            PLAN_FD_ENV: str(plan_slot),
            CONTROL_FD_ENV: str(control_slot),
            LAUNCHER_FD_ENV: str(launcher_slot),
            HOST_PID_ENV: str(os.getpid()),
        }
        try:
            child = _start(opts, launcher_fd, launcher_identity, placements, env)
        except OSError:
            for fd in readers:
                os.close(fd)
            raise
    finally:
        for fd in opened:
            os.close(fd)
    if opts.on_spawned is not None:
        opts.on_spawned(child.pid)
    return _observe(child, readers, opts, launcher_identity, test_hooks)


class _LauncherChild(Protocol):
    """The run's launcher as the host follows it: spawned for the run, or by a resident."""

    pid: int

    def fileno(self) -> int | None: ...  # readable once the launcher has exited

    def gone(self) -> bool: ...

    def reap(self) -> int | None: ...


class _SpawnedLauncher:
    """A launcher this process spawned for the run: followed by pidfd, reaped by waitpid."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        try:
            self._pidfd: int | None = os.pidfd_open(pid)
        except OSError:
            self._pidfd = None

    def fileno(self) -> int | None:
        return self._pidfd

    def gone(self) -> bool:
        return _launcher_gone(self.pid, self._pidfd)

    def reap(self) -> int | None:
        try:
            return _reap(self.pid)
        finally:
            if self._pidfd is not None:
                os.close(self._pidfd)
                self._pidfd = None


def _start(
    opts: LaunchOptions,
    launcher_fd: int,
    launcher_identity: str,
    placements: list[tuple[int, int]],
    env: dict[str, str],
) -> _LauncherChild:
    """Hand the run to this launcher file's resident, or spawn a launcher for it.

    Only runs in their own process group go to a resident; if the resident cannot be
    started or has died before taking the run, the run is spawned fresh (nothing of it
    had begun). Placements and variables are the same either way, less the launcher fd
    (the resident hashed its own at start).
    """
    if opts.own_process_group and resident.resident_enabled():
        try:
            keeper = resident.resident_for(launcher_fd, launcher_identity)
        except resident.ResidentGone:
            keeper = None
        if keeper is not None:
            launcher_slot = int(env[LAUNCHER_FD_ENV])
            handed = [(fd, slot) for fd, slot in placements if slot != launcher_slot]
            try:
                return keeper.submit(handed, int(env[PLAN_FD_ENV]), int(env[CONTROL_FD_ENV]))
            except resident.ResidentGone:
                pass  # the run was not handed over: start it fresh
    pid = hostspawn.spawn_with_fds(
        f"/proc/self/fd/{env[LAUNCHER_FD_ENV]}",
        ["bvisor-linux-launcher"],
        env,
        placements,
        new_process_group=opts.own_process_group,
    )
    return _SpawnedLauncher(pid)


def _check_authority(
    authority_fds: Sequence[AuthorityFd], declared: Sequence[int] | None
) -> dict[int, int]:
    slots: dict[int, int] = {}
    for index, authority in enumerate(authority_fds):
        slot = authority.slot_index
        if not isinstance(slot, int) or isinstance(slot, bool) or slot < 0:
            raise LaunchRefused(
                f"authority_fds[{index}].slot_index {slot!r} is negative or not an int"
            )
        if slot < 3:
            raise LaunchRefused(
                f"authority_fds[{index}].slot_index {slot} collides with stdio (0-2)"
            )
        if slot > MAX_SLOT:
            raise LaunchRefused(f"authority_fds[{index}].slot_index {slot} is above {MAX_SLOT}")
        if slot in slots:
            raise LaunchRefused(f"authority_fds[{index}].slot_index {slot} is used twice")
        try:
            fd = authority.fileno()
            os.fstat(fd)
        except (OSError, ValueError, TypeError) as exc:
            raise LaunchRefused(
                f"authority_fds[{index}] (slot {slot}) is not an open fd: {exc}"
            ) from None
        slots[slot] = fd
    if declared is not None:
        if len(set(declared)) != len(declared):
            raise LaunchRefused(f"descriptor_table declares a slot twice: {sorted(declared)}")
        missing = sorted(set(declared) - set(slots))
        extra = sorted(set(slots) - set(declared))
        if missing:
            raise LaunchRefused(f"descriptor_table slots {missing} have no authority fd")
        if extra:
            raise LaunchRefused(f"authority fds at slots {extra} are not in the descriptor_table")
    return slots


def _kill_run(pid: int, own_group: bool) -> None:
    """SIGKILL the launcher's process group (or only the launcher, if it has none)."""
    with contextlib.suppress(OSError):
        if own_group:
            os.killpg(pid, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)


def _observe(
    child: _LauncherChild,
    readers: list[int],
    opts: LaunchOptions,
    launcher_identity: str,
    test_hooks: frozenset[str],
) -> LaunchObservation:
    control_r, out_r, err_r = readers
    control = LineSplitter(opts.on_control_line)
    sinks: dict[int, StreamSink | LineSplitter] = {
        control_r: control,
        out_r: StreamSink(opts.stream_cap, opts.on_stdout),
        err_r: StreamSink(opts.stream_cap, opts.on_stderr),
    }
    open_fds = set(readers)
    pid = child.pid
    pidfd = child.fileno()
    deadline_hit = False
    forced_at: float | None = None
    exited = False
    drain_until: float | None = None
    launcher_exit: int | None = None
    poller = select.poll()
    for fd in open_fds:
        poller.register(fd, select.POLLIN)
    if pidfd is not None:
        poller.register(pidfd, select.POLLIN)
    try:
        while True:
            now = time.monotonic()
            if (
                not exited
                and opts.deadline is not None
                and not deadline_hit
                and now >= opts.deadline
            ):
                deadline_hit = True
                forced_at = now + opts.drain_grace
                (opts.on_deadline or (lambda: _kill_run(pid, opts.own_process_group)))()
            if not exited and forced_at is not None and now >= forced_at:
                _kill_run(pid, opts.own_process_group)
                forced_at = None
            if exited and (not open_fds or (drain_until is not None and now >= drain_until)):
                break
            timeout = _poll_timeout(
                now, exited, opts.deadline if not deadline_hit else None, forced_at, drain_until
            )
            if pidfd is None and not exited:
                timeout = 50 if timeout is None or timeout > 50 else timeout
            for fd, _event in poller.poll(timeout):
                if fd == pidfd:
                    continue
                try:
                    chunk = os.read(fd, _READ_CHUNK)
                except BlockingIOError:
                    continue
                if chunk:
                    sinks[fd].feed(chunk)
                else:
                    poller.unregister(fd)
                    open_fds.discard(fd)
            if not exited and child.gone():
                exited = True
                if pidfd is not None:
                    poller.unregister(pidfd)
                (opts.on_launcher_exit or (lambda: _kill_run(pid, opts.own_process_group)))()
                launcher_exit = child.reap()
                drain_until = time.monotonic() + opts.drain_grace
    finally:
        for fd in readers:
            os.close(fd)
        if not exited:
            _kill_run(pid, opts.own_process_group)
            launcher_exit = child.reap()
    control.close()
    out, err = sinks[out_r], sinks[err_r]
    assert isinstance(out, StreamSink) and isinstance(err, StreamSink)
    return _build_observation(
        control.lines,
        out,
        err,
        launcher_exit=launcher_exit,
        deadline_hit=deadline_hit,
        launcher_identity=launcher_identity,
        test_hooks=test_hooks,
        streams_open=bool(open_fds),
    )


def _poll_timeout(
    now: float,
    exited: bool,
    deadline: float | None,
    forced_at: float | None,
    drain_until: float | None,
) -> int | None:
    moments = [m for m in (deadline, forced_at, drain_until) if m is not None]
    if not moments:
        return None
    return max(0, int((min(moments) - now) * 1000) + 1)


def _launcher_gone(pid: int, pidfd: int | None) -> bool:
    if pidfd is not None:
        ready, _, _ = select.select([pidfd], [], [], 0)
        return bool(ready)
    try:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True
    return info is not None


def _reap(pid: int) -> int | None:
    while True:
        try:
            _, status = os.waitpid(pid, 0)
        except ChildProcessError:
            return None
        except InterruptedError:  # pragma: no cover - PEP 475 retries
            continue
        if os.WIFSIGNALED(status):
            return -os.WTERMSIG(status)
        if os.WIFEXITED(status):
            return os.WEXITSTATUS(status)


def _build_observation(
    lines: list[str],
    out: StreamSink,
    err: StreamSink,
    *,
    launcher_exit: int | None,
    deadline_hit: bool,
    launcher_identity: str,
    test_hooks: frozenset[str],
    streams_open: bool,
) -> LaunchObservation:
    transcript: list[str] = []
    notes: list[str] = []
    unknown: list[str] = []
    terminal: str | None = None
    numbers: dict[str, int] = {}
    rusage: dict[str, int] = {}
    code_identity: str | None = None
    entry_identity: str | None = None
    for line in lines:
        if line.startswith(states.NOTE_PREFIX):
            note = line[len(states.NOTE_PREFIX) :]
            notes.append(note)
            match = _INT_NOTE.match(note)
            if match and match.group(1) not in numbers:
                numbers[match.group(1)] = int(match.group(2))
            usage = _RUSAGE_NOTE.match(note)
            if usage and not rusage:
                for item in usage.group(1).split():
                    key, _, value = item.partition("=")
                    if value.isdigit():
                        rusage[key] = int(value)
            ident = _IDENTITY_NOTE.match(note)
            if ident and code_identity is None:
                code_identity, entry_identity = ident.group(1), ident.group(2)
        elif line in states.STATES:
            transcript.append(line)
            if line in states.TERMINALS and terminal is None:
                terminal = line
        else:
            unknown.append(line)
    return LaunchObservation(
        terminal=terminal,
        transcript=tuple(transcript),
        notes=tuple(notes),
        lines=tuple(lines),
        captured_stdout=out.data(),
        captured_stderr=err.data(),
        stdout_total=out.total,
        stderr_total=err.total,
        stdout_truncated=out.truncated,
        stderr_truncated=err.truncated,
        launcher_exit=launcher_exit,
        workload_pid=numbers.get("pid"),
        workload_exit_code=numbers.get("exit code"),
        workload_exit_signal=numbers.get("exit signal"),
        workload_rusage=rusage,
        deadline_hit=deadline_hit,
        launcher_identity=launcher_identity,
        test_hooks=test_hooks,
        launcher_code_identity=code_identity,
        launcher_entry_identity=entry_identity,
        streams_open_after_exit=streams_open,
        unknown_lines=tuple(unknown),
    )
