"""``bvisor-linux-launcher``: verify a launch plan, confine a child, exec it, report.

The host starts this process with an empty environment except the channel variables
(``BVISOR_PLAN_FD``: sealed memfd with the envelope; ``BVISOR_CONTROL_FD``: pipe for the
state machine; ``BVISOR_LAUNCHER_FD``: the launcher file the host hashed and executed)
and with the authority fds at their declared slots. It writes one line per state to the
control channel (see :mod:`bvisor.launcher.wire.states`) and ``# `` notes around them, and exits

* 0 — the exec happened; the launcher then waited for the workload and reported its
  status and rusage in notes;
* 3 — refused: the plan or a handle failed verification; no child was created;
* 4 — faulted: an OS operation failed; if a child existed it was killed before exec.

The schedule is the program: the verified entries are handed, in order, to their
mechanism modules (``mechanisms/``), which assemble the child's program (clone3 flags, one
op per mechanism for the C child window, steps at the rendezvous). The four
``*PhaseResolved`` states are reported only when the child window says the ops of that
phase completed: the C code writes a marker per op to a close-on-exec status pipe and an
errno record (with a detail) on failure; EOF after the ready marker with no record means
the exec happened. Nothing between clone3 and exec runs Python.

With a PID namespace the launcher's child is the namespace's init, which forks the
workload; init reports the workload's real status on a pipe of its own and exits when
the launcher releases it, which ends every process left in the namespace.

With denial evidence the launcher is also the seccomp filter's supervisor: while it waits
for the workload it answers every notified (denied) call and notes it
(:mod:`bvisor.launcher.process.denials`).
In between, the mechanisms' after-workload steps run (the outputs walk,
``mechanisms/outputs.py``), while the run's mounts still exist.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import sys
from typing import Any, NoReturn

from bvisor.contract import mechanisms as mech
from bvisor.contract import notes
from bvisor.launcher.basement import fds, lifeline, memfd, window
from bvisor.launcher.process.denials import DenialSupervisor
from bvisor.launcher.process.mechanisms import PREPARE
from bvisor.launcher.process.program import Fault, Op, Program, state_groups
from bvisor.launcher.process.verify import Refusal, Verified, verify_body
from bvisor.launcher.wire import envelope, identity, states
from bvisor.launcher.wire.channel import (
    CONTROL_FD_ENV,
    GATE_BYTES,
    GATE_FD_ENV,
    HOST_PID_ENV,
    LAUNCHER_FD_ENV,
    PLAN_FD_ENV,
    GateError,
    parse_gate,
)
from bvisor.launcher.wire.protocol import DescriptorRole, LaunchBody, ProtocolError
from bvisor.launcher.wire.resident import RESIDENT_FD_ENV

__all__ = [
    "EXIT_FAULTED",
    "EXIT_OK",
    "EXIT_REFUSED",
    "Control",
    "Launcher",
    "LauncherIdentity",
    "main",
]

EXIT_OK = 0
EXIT_REFUSED = 3
EXIT_FAULTED = 4

_MAX_PLAN = envelope.HEADER_SIZE + envelope.MAX_BODY
_SETUP_INDEX = 0xFFFF


def _fault_note(fault: Fault) -> str:
    name = errno.errorcode.get(fault.errno, "EUNKNOWN")
    return notes.fault_note(fault.mechanism, fault.errno, name, fault.detail)


class Control:
    """The control channel: one state or ``# note`` per line."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.terminal: str | None = None

    def _line(self, text: str) -> None:
        data = (text.replace("\n", " ") + "\n").encode("utf-8", "replace")
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view) :]

    def state(self, name: str) -> None:
        assert name in states.STATES
        if name in states.TERMINALS:
            self.terminal = name
        self._line(name)

    def note(self, text: str) -> None:
        self._line(states.NOTE_PREFIX + text)


class LauncherIdentity:
    """What this launcher is: its code digest (and the modules it covers) and entry digest."""

    __slots__ = ("code", "entry", "resident_pid")

    def __init__(self, code: identity.CodeIdentity, entry: str) -> None:
        self.code = code
        self.entry = entry
        self.resident_pid: int | None = None  # set when a resident launcher measured it

    @classmethod
    def measure(cls) -> LauncherIdentity:
        """Hash the loaded code and the entry file the host handed over (then close it)."""
        code = identity.code_identity((window.module_file(),))
        entry = "unknown"
        raw = os.environ.get(LAUNCHER_FD_ENV)
        if raw is not None and raw.isdigit():
            launcher_fd = int(raw)
            try:
                entry = identity.hash_fd(launcher_fd)
            finally:
                os.close(launcher_fd)
        return cls(code, entry)


class Launcher:
    """One launch: verify, assemble the program, create the child, follow it, wait.

    ``measured`` is the identity a resident launcher measured once at its start (it is
    reported the same way); a launcher started for one run measures itself.
    """

    def __init__(self, control: Control, measured: LauncherIdentity | None = None) -> None:
        self.ctl = control
        self.measured = measured
        self.child_pid: int | None = None
        self.exec_done = False
        self.denials: DenialSupervisor | None = None
        self.workload_pid: int | None = None

    # -- the run ---------------------------------------------------------------------

    def run(self) -> int:
        try:
            self.ctl.state(states.LAUNCHER_STARTED)
            self._check_single_threaded()
            self._identity()
            self.ctl.state(states.IDENTITY_VERIFIED)
            body = self._read_plan()
            for hook in sorted(body.test_hooks):
                self.ctl.note(notes.danger_note(hook))
            verified = verify_body(body)
            self.ctl.state(states.PLAN_VERIFIED)
            self._verify_handles(body)
            self.ctl.state(states.HANDLES_VERIFIED)
            self._close_on_exec(verified)
            program = self._assemble(verified)
            program.deadline_ns = self._await_gate()
            self._launch(program)
        except Refusal as refusal:
            return self._finish_refused(refusal)
        except Fault as fault:
            return self._finish_faulted(_fault_note(fault))
        except BaseException as exc:  # fail closed on anything unforeseen
            return self._finish_faulted(notes.internal_fault_note(exc))
        return EXIT_OK

    def _finish_refused(self, refusal: Refusal) -> int:
        self._kill_child()
        if self.ctl.terminal is None:
            self.ctl.note(notes.refused_note(refusal.code, refusal.detail))
            self.ctl.state(states.SETUP_REFUSED)
        return EXIT_REFUSED

    def _finish_faulted(self, note: str) -> int:
        if not self.exec_done:
            self._kill_child()
        try:
            self.ctl.note(note)
            if self.ctl.terminal is None:
                self.ctl.state(states.SETUP_FAULTED)
        except OSError:
            pass
        return EXIT_FAULTED

    # -- verification ------------------------------------------------------------------

    def _check_single_threaded(self) -> None:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Threads:"):
                    count = int(line.split()[1])
                    if count != 1:
                        raise Refusal("not-single-threaded", f"launcher has {count} threads")
                    return
        raise Refusal("not-single-threaded", "/proc/self/status has no Threads line")

    def _identity(self) -> None:
        measured = self.measured if self.measured is not None else LauncherIdentity.measure()
        code = measured.code
        self.ctl.note(notes.identity_note(code.digest, measured.entry))
        self.ctl.note(
            "identity hashed: entry=the launcher file the host executed (by fd); "
            "code=blake3(canonical [[module, blake3]]) over " + ", ".join(p for p, _ in code.files)
        )
        if measured.resident_pid is not None:
            self.ctl.note(
                f"identity measured once at the start of resident launcher pid="
                f"{measured.resident_pid}; this run's launcher is its fork pid={os.getpid()}"
            )

    def _read_plan(self) -> LaunchBody:
        raw = os.environ.get(PLAN_FD_ENV, "")
        if not raw.isdigit():
            raise Refusal("plan-missing", f"{PLAN_FD_ENV} is not set to an fd number")
        plan_fd = int(raw)
        try:
            data = memfd.read_sealed(plan_fd, _MAX_PLAN)
        except memfd.MemfdError as exc:
            raise Refusal("plan-unsealed", str(exc)) from None
        except OSError as exc:
            raise Refusal("plan-missing", f"plan fd {plan_fd}: {exc.strerror}") from None
        finally:
            with contextlib.suppress(OSError):
                os.close(plan_fd)
        try:
            body_bytes = envelope.open_envelope(data)
        except envelope.EnvelopeError as exc:
            raise Refusal(exc.code, exc.detail) from None
        try:
            return LaunchBody.decode(body_bytes)
        except ProtocolError as exc:
            raise Refusal("body-malformed", str(exc)) from None

    def _await_gate(self) -> int | None:
        """Wait until the host has recorded the plan (:mod:`bvisor.launcher.wire.channel`);
        the run's wall deadline the opening carries (CLOCK_MONOTONIC ns), or None.

        No gate named: the host recorded the plan before it started this launcher (and
        sent no deadline). A gate that is not a pipe to read, or that ends without
        opening, creates nothing.
        """
        raw = os.environ.get(GATE_FD_ENV)
        if raw is None:
            return None
        if not (raw.isascii() and raw.isdigit()):
            raise Refusal("gate-invalid", f"{GATE_FD_ENV} is not set to an fd number")
        gate = int(raw)
        try:
            facts = fds.inspect(gate)
            if facts.kind != "Fifo" or facts.access != "read":
                raise Refusal("gate-invalid", f"gate fd {gate} is a {facts.kind} ({facts.access})")
            opened = _read_exactly(gate, GATE_BYTES)
        except OSError as exc:
            raise Refusal("gate-invalid", f"gate fd {gate}: {exc.strerror}") from None
        finally:
            with contextlib.suppress(OSError):
                os.close(gate)
        try:
            return parse_gate(opened)
        except GateError:
            raise Fault(
                "launcher",
                errno.ECANCELED,
                "the host did not record the plan (it could not, or it was stopped): "
                "no child was created",
            ) from None

    def _verify_handles(self, body: LaunchBody) -> None:
        for slot in body.descriptor_table:
            where = f"slot {slot.slot_index} ({slot.role.value})"
            try:
                facts = fds.inspect(slot.slot_index)
            except OSError as exc:
                raise Refusal("handle-mismatch", f"{where} is not open: {exc.strerror}") from None
            if facts.kind != slot.expected.kind.value:
                raise Refusal(
                    "handle-mismatch",
                    f"{where} is a {facts.kind}, expected {slot.expected.kind.value}",
                )
            if slot.expected.writable and not facts.writable:
                raise Refusal(
                    "handle-mismatch", f"{where} is opened {facts.access}, expected writable"
                )
            if not slot.expected.writable and facts.access not in ("read", "path"):
                raise Refusal(
                    "handle-mismatch", f"{where} is opened {facts.access}, expected read-only"
                )
            if slot.role is DescriptorRole.TARGET_EXE:
                if facts.access == "path":
                    raise Refusal("handle-mismatch", f"{where} must be opened O_RDONLY, not O_PATH")
                if os.pread(slot.slot_index, 2, 0) == b"#!":
                    raise Refusal(
                        "exe-is-script",
                        f"{where} is a '#!' script; the exe fd closes at exec so the kernel "
                        "cannot hand it to an interpreter: run the interpreter as the exe",
                    )
            if slot.role in (DescriptorRole.CGROUP_V2_LEAF, DescriptorRole.CGROUP_V1_LEAF):
                want = (
                    fds.CGROUP2_SUPER_MAGIC
                    if slot.role is DescriptorRole.CGROUP_V2_LEAF
                    else fds.CGROUP_SUPER_MAGIC
                )
                try:
                    actual = fds.fs_type(slot.slot_index)
                except OSError as exc:
                    raise Refusal(
                        "handle-mismatch", f"{where}: fstatfs failed: {exc.strerror}"
                    ) from None
                if actual != want:
                    raise Refusal(
                        "handle-mismatch",
                        f"{where} is on filesystem {actual:#x}, expected {want:#x}",
                    )

    def _close_on_exec(self, verified: Verified) -> None:
        """Defence in depth: only kept fds may survive exec even if the scrub is skipped."""
        keep = set(verified.inherited)
        for slot in verified.body.descriptor_table:
            if slot.slot_index not in keep:
                fds.set_cloexec(slot.slot_index)
        fds.set_cloexec(self.ctl.fd)

    # -- the program (before clone3) ---------------------------------------------------

    def _assemble(self, verified: Verified) -> Program:
        """Each launcher-side entry, in schedule order, adds its mechanism to the program."""
        cw = window.load()
        program = Program(verified, cw.ffi, cw.lib)
        for entry_id, phase, params in verified.entries():
            if not mech.BY_ID[entry_id].launcher_side:
                continue
            prepare = PREPARE.get(entry_id)
            if prepare is None:
                raise Refusal("lowering-unknown-entry", f"this launcher cannot apply {entry_id}")
            prepare(program, phase, params)
        return program

    # -- the child ---------------------------------------------------------------------

    def _launch(self, program: Program) -> None:
        ffi, lib = program.ffi, program.lib
        sync_r, sync_w = os.pipe2(os.O_CLOEXEC)
        status_r, status_w = os.pipe2(os.O_CLOEXEC)
        program.internal_fds.append(status_w)
        try:
            ops = program.finish()
        except BaseException:
            for fd in (sync_r, sync_w, status_r, status_w, *program.close_after_spawn):
                os.close(fd)
            raise
        table = ffi.new("struct bv_op[]", len(ops))
        for index, op in enumerate(ops):
            table[index].code = op.code
            table[index].args = op.args
        req = ffi.new("struct bv_spawn_req *")
        req.clone_flags = program.clone_flags
        req.cgroup_fd = program.cgroup_fd
        req.sync_fd = sync_r
        req.sync_write_fd = sync_w
        req.status_fd = status_w
        req.parent_pid = os.getpid()
        req.ops = table
        req.n_ops = len(ops)
        join = program.new("int[]", program.cgroup_join_fds or [-1])
        req.join_fds = join
        req.n_join_fds = len(program.cgroup_join_fds)
        pid_out = ffi.new("int *")
        rc = int(lib.bv_spawn(req, pid_out))
        for fd in (sync_r, status_w, *program.close_after_spawn):
            os.close(fd)
        if rc != 0:
            os.close(sync_w)
            os.close(status_r)
            raise Fault("clone3", rc, f"clone3(flags={program.clone_flags:#x}): {os.strerror(rc)}")
        self.child_pid = int(pid_out[0])
        self.ctl.state(states.CHILD_CREATED)
        init = program.init_fds is not None
        self.ctl.note(notes.pid_note(self.child_pid, init=init))
        if not init:
            self.workload_pid = self.child_pid
        try:
            for _, step in program.rendezvous:
                step(self.child_pid)
            if program.cgroup_join_fds:
                self._await_join(status_r, ops)
                for confirm in program.after_join:
                    confirm(self.child_pid)
            os.write(sync_w, b"G")
        finally:
            os.close(sync_w)
        self._follow(status_r, ops, program)
        if program.denials is not None:
            self.denials = program.denials
            self.denials.take_listener(self.ctl.note)
        if program.init_fds is not None:
            self._wait_init(program, *program.init_fds)
        else:
            self._wait_workload(program, self.child_pid)

    def _await_join(self, status_r: int, ops: list[Op]) -> None:
        """Wait for the child's 'J' (it joined its cgroup v1 leaves); its failure record,
        or its exit, faults the launch before it was let go."""
        first = os.read(status_r, 1)
        if first == b"J":
            return
        if not first:
            raise Fault("cgroup", errno.EPROTO, "the child exited before joining its cgroup")
        if first != b"E":
            raise Fault("cgroup", errno.EPROTO, f"status byte {first!r} before the cgroup join")
        record = first + _read_exactly(status_r, 7)
        if len(record) == 8:
            record += _read_exactly(status_r, record[7])
        if len(record) < 8 or len(record) < 8 + record[7]:
            raise Fault("cgroup", errno.EPROTO, f"a cut failure record {record!r} before the join")
        self._raise_child_fault(record, ops)

    def _follow(self, status_r: int, ops: list[Op], program: Program) -> None:
        """Turn the child's op markers into states; EOF after 'R' means exec happened."""
        groups = state_groups(ops)
        reported = 0

        def report_through(index: int) -> None:
            nonlocal reported
            while reported < len(groups) and groups[reported][1] <= index:
                state = groups[reported][0]
                self.ctl.state(state)
                for text in program.notes.get(state, []):
                    self.ctl.note(text)
                reported += 1

        data = b""
        ready = False
        failure: bytes | None = None
        try:
            report_through(-1)
            while failure is None:
                chunk = os.read(status_r, 4096)
                if not chunk:
                    break
                data += chunk
                while data:
                    kind = data[:1]
                    if kind == b"O":
                        if len(data) < 3:
                            break  # the rest of the record is still coming
                        index = int.from_bytes(data[1:3], sys.byteorder)
                        data = data[3:]
                        if index >= len(ops):
                            raise Fault("launcher", errno.EPROTO, f"marker for op {index}")
                        if ops[index].name == "init":
                            self._note_workload()
                        done = ops[index].on_done
                        if done is not None:
                            assert self.child_pid is not None
                            for text in done(self.child_pid):
                                self.ctl.note(text)
                        report_through(index)
                    elif kind == b"R":
                        data = data[1:]
                        report_through(len(ops))
                        self.ctl.state(states.READY_TO_EXEC)
                        ready = True
                    elif kind == b"E":
                        if len(data) < 8 or len(data) < 8 + data[7]:
                            break
                        failure, data = data[: 8 + data[7]], b""
                    else:
                        raise Fault(
                            "launcher", errno.EPROTO, f"unexpected status bytes {data[:8]!r}"
                        )
        finally:
            os.close(status_r)
        if failure is not None:
            self._raise_child_fault(failure, ops)
        if not ready or data:
            raise Fault("launcher", errno.EPROTO, "child exited during setup without reporting why")
        self.exec_done = True
        self.ctl.state(states.EXEC_SUCCEEDED)

    def _raise_child_fault(self, record: bytes, ops: list[Op]) -> NoReturn:
        index = int.from_bytes(record[1:3], sys.byteorder)
        err = int.from_bytes(record[3:7], sys.byteorder, signed=True)
        detail = record[8 : 8 + record[7]].decode("utf-8", "replace")
        if index == _SETUP_INDEX or index >= len(ops):
            mechanism, where = "window", "setup"
        else:
            mechanism = ops[index].name
            where = f"op {index} ({ops[index].entry})"
        raise Fault(mechanism, err, f"child window failed at {where}: {detail}: {os.strerror(err)}")

    def _note_workload(self) -> None:
        """Name the workload's host pid once init has forked it (init's only child)."""
        assert self.child_pid is not None
        children = f"/proc/{self.child_pid}/task/{self.child_pid}/children"
        try:
            with open(children, encoding="ascii") as fh:
                pids = fh.read().split()
        except OSError:
            pids = []
        if pids:
            self.workload_pid = int(pids[0])
            self.ctl.note(notes.pid_note(int(pids[0]), init=False))

    # -- the end -----------------------------------------------------------------------

    def _after_workload(self, program: Program, init_pid: int | None) -> None:
        """The mechanisms' steps once the workload exited; a failed step is noted, never
        allowed to cost the report of the workload's status."""
        for step in program.after_workload:
            try:
                step(init_pid, self.ctl.note)
            except Exception as exc:
                self.ctl.note(f"after-workload step failed: {exc!r}")

    def _wait_workload(self, program: Program, pid: int) -> None:
        # Wait for the exit without reaping: while the zombie holds its pid, the workload's
        # process group id cannot be reused, so killing that group reaches only what the
        # workload left behind (it leads its own session, so the host's kill of the
        # launcher's group would not). With a run cgroup, cgroup.kill covers this anyway.
        if self.denials is not None and self.denials.listening:
            exited = os.pidfd_open(pid)
            try:
                self.denials.serve_until(exited)
            finally:
                os.close(exited)
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
        with contextlib.suppress(OSError):
            if os.getpgid(pid) == pid:
                os.killpg(pid, signal.SIGKILL)
        _, status, usage = os.wait4(pid, 0)
        self.child_pid = None
        signo = self._note_exit(status)
        self._after_workload(program, None)  # no init: nothing holds the run's mounts
        self._finish_report(signo, usage)

    def _wait_init(self, program: Program, report_r: int, release_w: int) -> None:
        """Read init's report of the workload's status, run the after-workload steps
        while init still holds the namespace, release init, reap it."""
        assert self.child_pid is not None
        record = b""
        alive, signo = False, None
        try:
            if self.denials is not None:
                self.denials.serve_until(report_r)  # readable: init's report, or its death
            try:
                while len(record) < 5:
                    chunk = os.read(report_r, 5 - len(record))
                    if not chunk:
                        break
                    record += chunk
            finally:
                os.close(report_r)
            alive = len(record) == 5 and record[:1] == b"W"
            if alive:
                signo = self._note_exit(int.from_bytes(record[1:5], sys.byteorder, signed=True))
            self._after_workload(program, self.child_pid if alive else None)
        finally:
            os.close(release_w)  # init exits now: the namespace, and all left in it, ends
        _, _, usage = os.wait4(self.child_pid, 0)
        self.child_pid = None
        if not alive:
            # Init was killed before the workload ended (the run's teardown, or the host's
            # death): the kernel killed every process of the namespace with SIGKILL.
            signo = self._note_exit(signal.SIGKILL, raw=False)
            self.ctl.note(notes.INIT_KILLED)
        self._finish_report(signo, usage)

    def _note_exit(self, status: int, *, raw: bool = True) -> int | None:
        """Note how the workload ended, as soon as it is known: before the after-workload
        steps, so a step the host kills for outliving the deadline (an outputs walk stuck
        in one fsync) leaves the real status, and the run is a timeout, not a fault.
        ``status`` is a raw wait status, or (``raw`` false) the signal that ended it;
        returns the signal, if one did."""
        signo = status if not raw else os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
        if signo is not None:
            self.ctl.note(notes.exit_note(signal=signo))
        else:
            self.ctl.note(notes.exit_note(code=os.WEXITSTATUS(status)))
        return signo

    def _finish_report(self, signo: int | None, usage: Any) -> None:
        """The denial tallies, then the rusage (the note that says the tallies are done)."""
        if self.denials is not None:
            self.denials.finish(self.workload_pid, signo)
        self.ctl.note(
            notes.rusage_note(
                int(usage.ru_utime * 1_000_000), int(usage.ru_stime * 1_000_000), usage.ru_maxrss
            )
        )

    def _kill_child(self) -> None:
        pid, self.child_pid = self.child_pid, None
        if pid is None:
            return
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            os.waitpid(pid, 0)


def _read_exactly(fd: int, size: int) -> bytes:
    """``size`` bytes from the pipe ``fd``; fewer when the writer is gone."""
    data = b""
    while len(data) < size:
        chunk = os.read(fd, size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def _die(message: str) -> NoReturn:
    """For a launcher started without a control channel (by hand): only stderr is left."""
    sys.stderr.write(f"bvisor-linux-launcher: {message}\n")
    sys.exit(EXIT_FAULTED)


def say_untied(control: Control, exc: OSError | lifeline.HostGone) -> None:
    """The launcher could not be tied to its host (a launcher started for one run, or
    one the resident forked): said on the control channel, as every later fault is. Its
    stderr is the workload's, captured as the workload's output, so a message there was
    recorded as bytes no workload wrote (replay rightly failed the run, and ``bvisor
    run`` judged the line as the workload's). A host that is gone hears nothing either
    way. The caller then exits ``EXIT_FAULTED``."""
    number = exc.errno if isinstance(exc, OSError) and exc.errno else errno.ESRCH
    name = errno.errorcode.get(number, "EUNKNOWN")
    with contextlib.suppress(OSError):
        control.state(states.LAUNCHER_STARTED)
        control.note(notes.fault_note("launcher", number, name, f"tying it to its host: {exc}"))
        control.state(states.SETUP_FAULTED)


def main() -> int:
    """Entry point of the ``bvisor-linux-launcher`` console script."""
    if RESIDENT_FD_ENV in os.environ:
        from bvisor.launcher.process.resident import serve

        os._exit(serve())
    raw = os.environ.get(CONTROL_FD_ENV, "")
    if not raw.isdigit():
        _die(f"{CONTROL_FD_ENV} is not set; this program is started by bvisor, not by hand")
    control = Control(int(raw))
    host = os.environ.get(HOST_PID_ENV, "")
    try:
        # Before anything else: a launcher must never outlive the host that supervises it.
        lifeline.die_with_host(int(host) if host.isdigit() else -1)
    except (OSError, lifeline.HostGone) as exc:
        say_untied(control, exc)
        os._exit(EXIT_FAULTED)
    try:
        code = Launcher(control).run()
    except OSError as exc:  # the control channel itself is gone
        _die(f"control channel failed: {exc}")
    # Every control line went out with os.write and the workload is reaped, so nothing is
    # left to flush: skip interpreter finalization, which only delays the host's verdict.
    os._exit(code)
