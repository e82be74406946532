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
``drain_grace`` seconds later, its process group is SIGKILLed regardless. The deadline
has a thread of its own (:class:`_Watchdog`, waiting on the launcher's pidfd), so nothing
the observation loop does — a blocking callback, a slow disk — can move it; it never
signals a launcher the loop has already reaped (they share a lock), so a recycled pid is
never hit. The launcher is told the same deadline with the gate's opening
(:func:`bvisor.launcher.wire.channel.gate_message`) and stops its own work after the
workload by it, so the grace is for a launcher that hangs, not one that is still busy.

Standard streams. No descriptor of the caller's terminal is ever placed in the launcher:
``stdin_fd`` and every authority fd that is a terminal are refused. The caller's stdin
reaches the workload only as bytes relayed into a pipe (``stdin_source``), and output is
relayed to the caller through :class:`~bvisor.launcher.host.relay.Outlet` objects that
never block the loop. With ``tty`` the workload's fds 0-2 are the slave of a pty the
host made for this run, and the host relays between the pty's master and the caller.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import math
import os
import select
import signal
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from bvisor import canonical_native
from bvisor.contract import notes as wire_notes
from bvisor.launcher.basement import hostspawn, memfd, seccomp, window
from bvisor.launcher.host import resident
from bvisor.launcher.host.capture import Captured, LineSplitter, StreamSink
from bvisor.launcher.host.relay import Outlet, PrivateFd, private_description
from bvisor.launcher.host.terminal import Pty, is_terminal
from bvisor.launcher.wire import channel, envelope, identity, states
from bvisor.launcher.wire.channel import CONTROL_FD_ENV, HOST_PID_ENV, LAUNCHER_FD_ENV, PLAN_FD_ENV
from bvisor.launcher.wire.protocol import MAX_SLOT, LaunchPlan

__all__ = [
    "DEFAULT_STREAM_CAP",
    "AuthorityFd",
    "LaunchAborted",
    "LaunchObservation",
    "LaunchOptions",
    "LaunchRefused",
    "RelayReport",
    "launch_confinement_unavailable",
    "notes_confinement_unavailable",
    "run_launcher",
    "run_launcher_payload",
]

DEFAULT_STREAM_CAP = 16 * 1024 * 1024
_READ_CHUNK = 256 * 1024
# After the run: a reader that took nothing for this long is not waited for any more.
_FLUSH_STALL_S = 0.25


class LaunchRefused(ValueError):
    """The host refused to start the launcher (bad slots or fds); nothing was spawned."""


class LaunchAborted(Exception):
    """``LaunchOptions.before_child`` (or ``on_spawned``) raised, its exception the
    ``__cause__``: the launcher was told at its gate, created no child, and was followed
    to its end."""


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

    ``stdin_fd`` is placed as the launcher's stdin as it is (a terminal is refused);
    ``stdin_source`` instead is one of the caller's fds whose bytes are *relayed* into a
    pipe the workload reads (the fd itself never leaves the host). ``stdout_outlet`` and
    ``stderr_outlet`` receive the streams for the caller without blocking the loop.
    ``tty`` gives the workload a pty of its own as fds 0-2 (its slave; the host closes
    its copy of the slave once the launcher holds it): output is read from the master
    (as stdout; there is no separate stderr) and ``stdin_source`` is relayed into it.
    What the launch layer must add for it to be the workload's *controlling* terminal
    (until then the workload has the pty as fds 0-2 but no session attached to it, so
    Ctrl-C arrives as a byte and SIGWINCH is not sent): a launch-body field saying
    ``tty`` (set from this option by ``prepare_launch``); the launcher's verify requiring
    fds 0, 1 and 2 to be one pty slave (a character device of the pty majors) exactly
    when it is set; and in the child window, after ``setsid()`` and before the fd scrub,
    ``ioctl(0, TIOCSCTTY, 0)`` then ``tcsetpgrp(0, getpid())``, with a note saying so
    instead of "no controlling terminal".
    ``spill_dir`` is where captured bytes past the in-memory head are kept (default
    ``$TMPDIR``).

    ``before_child`` is called once the launcher has started, while it verifies the plan
    and assembles the child's program; the launcher creates no child until it returns
    (the gate of :mod:`bvisor.launcher.wire.channel`). The runner records the plan in it.
    If it raises, the launcher is told, creates nothing and is followed to its end, and
    :class:`LaunchAborted` is raised from what it raised. The time it took is not the
    run's: the deadline moves by as much, and the observation says how long
    (``recorded_for``).
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
    stdin_source: int | None = None
    stdout_outlet: Outlet | None = None
    stderr_outlet: Outlet | None = None
    tty: Pty | None = None
    spill_dir: str | None = None
    before_child: Callable[[], None] | None = None


@dataclass(frozen=True, slots=True)
class RelayReport:
    """What the relay between the caller and the run did (all counts in bytes)."""

    stdin_relayed: int = 0
    stdin_left: str | None = None  # why stdin relaying stopped early, if it did
    stdout_dropped: int = 0
    stderr_dropped: int = 0
    stdout_broken: str | None = None
    stderr_broken: str | None = None


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
    stdout_capture: Captured
    stderr_capture: Captured
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
    # monotonic times: when the launcher was seen gone, when the deadline fired
    launcher_exited_at: float | None = None
    deadline_fired_at: float | None = None
    relay: RelayReport = field(default_factory=RelayReport)
    recorded_for: float = 0.0  # seconds ``before_child`` took (not the run's time)

    @property
    def captured_stdout(self) -> bytes:
        """The kept stdout bytes, all at once (read back from the spill file)."""
        return self.stdout_capture.data()

    @property
    def captured_stderr(self) -> bytes:
        return self.stderr_capture.data()

    def exec_succeeded(self) -> bool:
        """Did the launcher report that the workload was exec'd?"""
        return self.terminal == states.EXEC_SUCCEEDED

    def identity_matches(self) -> bool:
        """Did the launcher hash the same entry file the host hashed and executed?"""
        return self.launcher_entry_identity == self.launcher_identity

    def refusal_code(self) -> str | None:
        """The launcher's refusal code (``refused code=...`` note), if it refused."""
        return next((c for c in map(wire_notes.refusal_code, self.notes) if c is not None), None)


def notes_confinement_unavailable(lines: Iterable[str]) -> bool:
    """Do these launcher notes show a confinement primitive missing (ENOSYS/EOPNOTSUPP)?"""
    return any(map(wire_notes.confinement_unavailable, lines))


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
        if is_terminal(stdin_fd):
            raise LaunchRefused(
                f"options.stdin_fd {stdin_fd} is a terminal: a terminal of the caller never "
                "reaches a workload (relay it with stdin_source, or lend a pty with tty)"
            )
    if opts.tty is not None and stdin_fd is not None:
        raise LaunchRefused("options.tty and options.stdin_fd cannot both give fd 0")
    path = os.fspath(launcher_path)
    try:
        launcher_fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise LaunchRefused(f"launcher {path!r} cannot be opened: {exc.strerror}") from None
    opened: list[int] = [launcher_fd]
    gate_w: int | None = None
    stdin_outlet: Outlet | None = None
    source: PrivateFd | None = None
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
        if opts.stdin_source is not None:
            try:
                source = private_description(opts.stdin_source, write=False)
            except OSError as exc:
                raise LaunchRefused(
                    f"options.stdin_source {opts.stdin_source} cannot be read: {exc.strerror}"
                ) from None
        if opts.tty is None and stdin_fd is None:
            # A pipe, not the host's /dev/null: an fd to a host file would let the
            # workload fchmod or utime that very file (Landlock does not see metadata, and
            # the fd predates the workload's read-only mount view). With no source it is
            # closed at once (EOF); with one, the host relays the caller's bytes into it.
            stdin_fd, stdin_writer = os.pipe2(os.O_CLOEXEC)
            opened.append(stdin_fd)
            if source is not None:
                stdin_outlet = Outlet(stdin_writer, owned=True)
            else:
                os.close(stdin_writer)
        elif opts.tty is not None and source is not None:
            stdin_outlet = Outlet(os.dup(opts.tty.master), owned=True)
        control_r, control_w = os.pipe2(os.O_CLOEXEC)
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        gate_r, gate_w = os.pipe2(os.O_CLOEXEC)
        readers = [control_r, out_r, err_r]
        opened += [control_w, out_w, err_w, gate_r]  # the launcher's ends
        base = max(slots, default=2) + 1
        plan_slot, control_slot, launcher_slot, gate_slot = base, base + 1, base + 2, base + 3
        if opts.tty is not None:
            slave = opts.tty.slave
            placements = [(slave, 0), (slave, 1), (slave, 2)]
            os.close(out_r)
            os.close(err_r)
            out_r = os.dup(opts.tty.master)
            readers = [control_r, out_r]
        else:
            assert stdin_fd is not None
            placements = [(stdin_fd, 0), (out_w, 1), (err_w, 2)]
        placements += [(fd, slot) for slot, fd in slots.items()]
        placements += [
            (plan_fd, plan_slot),
            (control_w, control_slot),
            (launcher_fd, launcher_slot),
            (gate_r, gate_slot),
        ]
        env = {
            PLAN_FD_ENV: str(plan_slot),
            CONTROL_FD_ENV: str(control_slot),
            LAUNCHER_FD_ENV: str(launcher_slot),
            channel.GATE_FD_ENV: str(gate_slot),
            HOST_PID_ENV: str(os.getpid()),
        }
        try:
            pending = _start(opts, launcher_fd, launcher_identity, placements, env)
        except OSError:
            for fd in readers:
                os.close(fd)
            raise
    except BaseException:
        if gate_w is not None:
            os.close(gate_w)
        if stdin_outlet is not None:
            stdin_outlet.close()
        if source is not None:
            source.close()
        raise
    finally:
        for fd in opened:
            os.close(fd)
        if opts.tty is not None:
            # The launcher holds the slave now; the host's copy would keep the master
            # from ever reading EOF (EIO) after the run.
            opts.tty.close_slave()
    relay = _StdinRelay(source, stdin_outlet)
    child, spent, failure = _through_gate(pending, gate_w, opts, readers, relay)
    if failure is not None:
        # The gate closed without opening: the launcher creates nothing and ends.
        _observe(child, readers, opts, launcher_identity, test_hooks, relay)
        raise LaunchAborted(f"the launch was abandoned before any child: {failure!r}") from failure
    if spent and opts.deadline is not None:
        opts = dataclasses.replace(opts, deadline=opts.deadline + spent)
    observation = _observe(child, readers, opts, launcher_identity, test_hooks, relay)
    return dataclasses.replace(observation, recorded_for=spent)


def _through_gate(
    pending: _Pending,
    gate: int,
    opts: LaunchOptions,
    readers: list[int],
    relay: _StdinRelay,
) -> tuple[_LauncherChild, float, BaseException | None]:
    """``before_child`` while the launcher starts, then its start confirmed, then the gate
    opened — or left shut (closed, always) when ``before_child`` or ``on_spawned`` raised,
    which is returned. The seconds ``before_child`` took come back too. The opening
    carries the run's deadline (:func:`bvisor.launcher.wire.channel.gate_message`)."""
    failure: BaseException | None = None
    spent = 0.0
    try:
        if opts.before_child is not None:
            began = time.monotonic()
            try:
                opts.before_child()
            except BaseException as exc:
                failure = exc
            spent = time.monotonic() - began
        try:
            child = pending.started()
        except BaseException:
            for fd in readers:
                os.close(fd)
            relay.close()
            if failure is not None:
                raise LaunchAborted(f"the launch was abandoned: {failure!r}") from failure
            raise
        if failure is None and opts.on_spawned is not None:
            try:
                opts.on_spawned(child.pid)
            except BaseException as exc:
                failure = exc
        if failure is None:
            opening = channel.gate_message(_deadline_ns(opts.deadline, spent))
            with contextlib.suppress(BrokenPipeError):  # the launcher already ended (refused)
                os.write(gate, opening)
    finally:
        os.close(gate)
    return child, spent, failure


def _deadline_ns(deadline: float | None, spent: float) -> int | None:
    """The run's deadline as the gate tells the launcher: moved by the time the record
    took (as the watchdog's is), in whole nanoseconds rounded up, so the launcher's own
    deadline is never before the one the watchdog enforces."""
    if deadline is None:
        return None
    return math.ceil((deadline + spent) * 1_000_000_000)


class _LauncherChild(Protocol):
    """The run's launcher as the host follows it: spawned for the run, or by a resident."""

    pid: int
    pidfd: int | None  # the launcher's own pidfd (for the deadline's watchdog)

    def fileno(self) -> int | None: ...  # readable once the launcher has exited

    def gone(self) -> bool: ...

    def reap(self) -> int | None: ...

    def close(self) -> None: ...


class _Pending(Protocol):
    """A launcher asked for, not yet known to have started (a resident forks it)."""

    def started(self) -> _LauncherChild: ...


class _SpawnedLauncher:
    """A launcher this process spawned for the run: followed by pidfd, reaped by waitpid."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        try:
            self.pidfd: int | None = os.pidfd_open(pid)
        except OSError:
            self.pidfd = None

    def fileno(self) -> int | None:
        return self.pidfd

    def gone(self) -> bool:
        return _launcher_gone(self.pid, self.pidfd)

    def reap(self) -> int | None:
        return _reap(self.pid)

    def close(self) -> None:
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None

    def started(self) -> _SpawnedLauncher:
        return self  # posix_spawn has returned: it has started


def _start(
    opts: LaunchOptions,
    launcher_fd: int,
    launcher_identity: str,
    placements: list[tuple[int, int]],
    env: dict[str, str],
) -> _Pending:
    """Hand the run to this launcher file's resident, or spawn a launcher for it.

    Only runs in their own process group go to a resident; if the resident cannot be
    started or has died before taking the run, the run is spawned fresh (nothing of it
    had begun). Placements and variables are the same either way, less the launcher fd
    (the resident hashed its own at start). A run handed to a resident is confirmed
    started later (:meth:`resident.HandedOver.started`): the host records the plan while
    the resident forks.
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
                return keeper.submit(
                    handed,
                    int(env[PLAN_FD_ENV]),
                    int(env[CONTROL_FD_ENV]),
                    int(env[channel.GATE_FD_ENV]),
                )
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
        if is_terminal(fd):
            raise LaunchRefused(
                f"authority_fds[{index}] (slot {slot}) is a terminal: a terminal of the caller "
                "never reaches a workload (its settings, its input queue and TIOCSTI with it)"
            )
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


class _Watchdog:
    """The wall deadline on a thread of its own, waiting on the launcher's pidfd.

    At the deadline (if the launcher has not exited by then) it calls ``on_deadline``;
    ``grace`` seconds later it SIGKILLs the launcher's group if the launcher is still
    there. It records when the launcher exited, to the moment. Every signal it sends is
    sent under ``lock`` and only while ``reaped`` is false, so it can never hit a pid the
    observation loop has already reaped (and the kernel may have given to someone else).
    """

    def __init__(
        self,
        pid: int,
        pidfd: int | None,
        deadline: float | None,
        on_deadline: Callable[[], None],
        kill: Callable[[], None],
        grace: float,
    ) -> None:
        self.lock = threading.Lock()
        self.reaped = False
        self.fired_at: float | None = None
        self.exited_at: float | None = None
        self._pid, self._pidfd = pid, pidfd
        self._deadline, self._grace = deadline, grace
        self._on_deadline, self._kill = on_deadline, kill
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC)
        self._thread = threading.Thread(target=self._run, name="bvisor-deadline", daemon=True)

    def start(self) -> None:
        if self._deadline is not None:  # without one the thread would have nothing to do
            self._thread.start()

    def _wait_exit(self, until: float) -> bool | None:
        """True: the launcher exited; False: ``until`` came; None: asked to stop."""
        while True:
            left = until - time.monotonic()
            if left <= 0:
                return False
            poller = select.poll()
            poller.register(self._wake_r, select.POLLIN)
            step = left if self._pidfd is not None else min(left, 0.02)
            if self._pidfd is not None:
                poller.register(self._pidfd, select.POLLIN)
            ready = {fd for fd, _ in poller.poll(int(step * 1000) + 1)}
            if self._wake_r in ready:
                return None
            if self._pidfd in ready or (self._pidfd is None and self._gone()):
                if self.exited_at is None:
                    self.exited_at = time.monotonic()
                return True

    def _gone(self) -> bool:
        with self.lock:
            return self.reaped or _launcher_gone(self._pid, None)

    def _run(self) -> None:
        if self._deadline is None:
            return
        outcome = self._wait_exit(self._deadline)
        if outcome is not False:
            return
        with self.lock:
            if self.reaped:
                return
            self.fired_at = time.monotonic()
            try:
                self._on_deadline()
            except Exception:  # the kill must happen whatever the callback did
                self._kill()
        if self._wait_exit(time.monotonic() + self._grace) is False:
            with self.lock:
                if not self.reaped:
                    self._kill()

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")
        if self._thread.ident is not None:  # started
            self._thread.join()
        os.close(self._wake_r)
        os.close(self._wake_w)


@dataclass
class _StdinRelay:
    """The caller's stdin (a host-owned description) and the pipe or pty it feeds."""

    source: PrivateFd | None
    outlet: Outlet | None
    relayed: int = 0
    eof: bool = False
    stopped: str | None = None

    def wants_input(self) -> bool:
        return (
            self.source is not None
            and self.outlet is not None
            and not self.eof
            and self.outlet.broken is None
            and self.outlet.has_room()
        )

    def read(self) -> None:
        assert self.source is not None and self.outlet is not None
        try:
            chunk = os.read(self.source.fd, _READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            chunk = b""
            self.stopped = f"reading the caller's stdin failed: {exc.strerror}"
        if not chunk:
            self.eof = True
            self.source.close()
            return
        self.relayed += len(chunk)
        self.outlet.offer(chunk)
        self.outlet.pump()

    def settle(self) -> None:
        """Close the pipe once the source ended and everything was written (EOF)."""
        outlet = self.outlet
        if outlet is None:
            return
        if outlet.broken is not None and self.stopped is None:
            self.stopped = f"the workload stopped reading stdin ({outlet.broken})"
        if (self.eof and not outlet.pending) or outlet.broken is not None:
            if self.source is not None:
                self.source.close()
            outlet.close()
            self.outlet = None

    def close(self) -> None:
        if self.source is not None:
            self.source.close()
        if self.outlet is not None:
            left = self.outlet.pending
            if left and self.stopped is None:
                self.stopped = f"{left} bytes of stdin were not taken before the run ended"
            self.outlet.close()
            self.outlet = None


def _observe(
    child: _LauncherChild,
    readers: list[int],
    opts: LaunchOptions,
    launcher_identity: str,
    test_hooks: frozenset[str],
    stdin: _StdinRelay,
) -> LaunchObservation:
    control_r, out_r = readers[0], readers[1]
    err_r = readers[2] if len(readers) > 2 else None
    control = LineSplitter(opts.on_control_line)
    out = StreamSink(opts.stream_cap, opts.on_stdout, spill_dir=opts.spill_dir)
    err = StreamSink(opts.stream_cap, opts.on_stderr, spill_dir=opts.spill_dir)
    sinks: dict[int, StreamSink | LineSplitter] = {control_r: control, out_r: out}
    outlets: dict[int, Outlet | None] = {control_r: None, out_r: opts.stdout_outlet}
    if err_r is not None:
        sinks[err_r] = err
        outlets[err_r] = opts.stderr_outlet
    relays = [o for o in (opts.stdout_outlet, opts.stderr_outlet) if o is not None]
    open_fds = set(readers)
    closed: set[int] = set()  # readers closed early (their writes to the caller failed)
    pid = child.pid
    pidfd = child.fileno()  # readable once the launcher has exited

    def kill() -> None:
        _kill_run(pid, opts.own_process_group)

    watchdog = _Watchdog(
        pid, child.pidfd, opts.deadline, opts.on_deadline or kill, kill, opts.drain_grace
    )
    watchdog.start()
    exited = False
    drain_until: float | None = None
    launcher_exit: int | None = None
    exited_at: float | None = None
    try:
        while True:
            now = time.monotonic()
            flushing = [o for o in relays if o.pending]
            stalled = all(now - o.progress_at > _FLUSH_STALL_S for o in flushing)
            if exited and (
                (not open_fds and (not flushing or stalled))
                or (drain_until is not None and now >= drain_until)
            ):
                break
            poller = select.poll()
            for fd in open_fds:
                outlet = outlets.get(fd)
                if outlet is None or outlet.has_room():
                    poller.register(fd, select.POLLIN)
            waits: dict[int, Outlet] = {}
            for outlet in [*relays, *([stdin.outlet] if stdin.outlet is not None else [])]:
                target = outlet.poll_fd()
                if outlet.pending and target is not None and target not in waits:
                    waits[target] = outlet
                    poller.register(target, select.POLLOUT)
            source = stdin.source
            if source is not None and stdin.wants_input():
                poller.register(source.fd, select.POLLIN)
            if pidfd is not None and not exited:
                poller.register(pidfd, select.POLLIN)
            timeout = None if drain_until is None else max(0, int((drain_until - now) * 1000) + 1)
            if (
                (pidfd is None and not exited)
                or (exited and flushing)
                or (source is not None and source.mode == "blocking" and stdin.wants_input())
            ):
                timeout = 50 if timeout is None or timeout > 50 else timeout
            for fd, event in poller.poll(timeout):
                if fd == pidfd:
                    continue
                if fd in waits and event & (select.POLLOUT | select.POLLERR | select.POLLHUP):
                    waits[fd].pump()
                    if fd not in sinks and (source is None or fd != source.fd):
                        continue
                if source is not None and fd == source.fd and stdin.source is not None:
                    stdin.read()
                    continue
                if fd not in sinks or fd not in open_fds:
                    continue
                try:
                    chunk = os.read(fd, _READ_CHUNK)
                except BlockingIOError:
                    continue
                except OSError as exc:
                    if exc.errno != errno.EIO:  # EIO: a pty master whose slave is closed
                        raise
                    chunk = b""
                outlet = outlets.get(fd)
                if chunk:
                    sinks[fd].feed(chunk)
                    if outlet is not None:
                        outlet.offer(chunk)
                else:
                    open_fds.discard(fd)
                    if outlet is not None:
                        outlet.finish_filter()
            for outlet in relays:
                if outlet.pending and outlet.poll_fd() is None:
                    outlet.pump()  # writes that never wait: a file, /dev/null
            _close_streams_nobody_reads(open_fds, outlets, closed)
            if opts.tty is not None and out_r in closed and opts.tty.master >= 0:
                _hang_up(opts.tty, stdin)
            stdin.settle()
            if not exited and child.gone():
                exited = True
                exited_at = watchdog.exited_at or time.monotonic()
                (opts.on_launcher_exit or kill)()
                with watchdog.lock:
                    launcher_exit = child.reap()
                    watchdog.reaped = True
                drain_until = time.monotonic() + opts.drain_grace
                stdin.close()
                for outlet in relays:
                    outlet.lossy = True  # the run is over: never wait on a slow reader
                    outlet.progress_at = max(outlet.progress_at, time.monotonic())
    finally:
        watchdog.stop()
        child.close()
        for fd in readers:
            if fd not in closed:
                os.close(fd)
        if not exited:
            with watchdog.lock:
                kill()
                launcher_exit = child.reap()
                watchdog.reaped = True
        stdin.close()
        for outlet in relays:
            outlet.abandon()
    control.close()
    relay = RelayReport(
        stdin_relayed=stdin.relayed,
        stdin_left=stdin.stopped,
        stdout_dropped=opts.stdout_outlet.dropped if opts.stdout_outlet else 0,
        stderr_dropped=opts.stderr_outlet.dropped if opts.stderr_outlet else 0,
        stdout_broken=opts.stdout_outlet.broken if opts.stdout_outlet else None,
        stderr_broken=opts.stderr_outlet.broken if opts.stderr_outlet else None,
    )
    return _build_observation(
        control.lines,
        out,
        err,
        launcher_exit=launcher_exit,
        deadline_hit=watchdog.fired_at is not None,
        launcher_identity=launcher_identity,
        test_hooks=test_hooks,
        streams_open=bool(open_fds),
        exited_at=watchdog.exited_at or exited_at,
        fired_at=watchdog.fired_at,
        relay=relay,
    )


def _close_streams_nobody_reads(
    open_fds: set[int], outlets: dict[int, Outlet | None], closed: set[int]
) -> None:
    """Close the read end of a workload stream whose writes to the caller fail.

    ``bvisor run -- yes | head -1``: once ``head`` exits, the host's writes fail (EPIPE;
    ECONNRESET from a socket, ENOSPC from a full disk...) and everything after is dropped,
    but a workload that only writes would never learn it and would run until its wall
    budget, or forever. Closing the host's read end gives the workload what the pipe would
    have given it without bvisor in between: EPIPE on its next write, and SIGPIPE. With
    ``--tty`` the stream is a copy of the pty's master, and the host then closes its other
    copies too (:func:`_hang_up`): the kernel hangs the run's terminal up. The capture
    ends there; what was captured is still hashed into the report, and the relay fact
    names the error.
    """
    for fd in sorted(open_fds):
        outlet = outlets.get(fd)
        if outlet is not None and outlet.broken is not None:
            open_fds.discard(fd)
            closed.add(fd)
            os.close(fd)


def _hang_up(tty: Pty, stdin: _StdinRelay) -> None:
    """The caller's terminal reader is gone: close every copy of the pty's master the
    host holds (the output's was closed already, then the stdin relay's and the pty's
    own), so the kernel hangs the run's terminal up, as when a terminal closes: SIGHUP to
    the workload's session, and EIO for its next write. ``TIOCSIG`` on a master cannot
    send SIGHUP, and a workload only reading its blocked pty would wait for its budget."""
    stdin.close()
    tty.close()


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
    exited_at: float | None = None,
    fired_at: float | None = None,
    relay: RelayReport | None = None,
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
            number = wire_notes.parse_int_note(note)
            if number is not None and number[0] not in numbers:
                numbers[number[0]] = number[1]
            usage = wire_notes.rusage_text(note)
            if usage is not None and not rusage:
                for item in usage.split():
                    key, _, value = item.partition("=")
                    if value.isdigit():
                        rusage[key] = int(value)
            ident = wire_notes.parse_identity(note)
            if ident is not None and code_identity is None:
                code_identity, entry_identity = ident
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
        stdout_capture=out.captured(),
        stderr_capture=err.captured(),
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
        launcher_exited_at=exited_at,
        deadline_fired_at=fired_at,
        relay=relay or RelayReport(),
    )
