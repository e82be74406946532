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

The four ``*PhaseResolved`` states are reported only when the child window says the phase
completed: the C code writes one marker byte per phase to a close-on-exec status pipe and
an errno record on failure; EOF after every marker with no record means the exec
happened. Nothing between clone3 and exec runs Python.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import sys
from dataclasses import dataclass, field
from typing import Any, NoReturn

from bvisor.launcher.basement import fds, landlock, lifeline, memfd, mounts, seccomp, window
from bvisor.launcher.process.verify import Refusal, verify_body
from bvisor.launcher.wire import envelope, identity, states
from bvisor.launcher.wire.channel import CONTROL_FD_ENV, HOST_PID_ENV, LAUNCHER_FD_ENV, PLAN_FD_ENV
from bvisor.launcher.wire.protocol import DescriptorRole, LaunchBody, ProtocolError

__all__ = ["EXIT_FAULTED", "EXIT_OK", "EXIT_REFUSED", "main"]

EXIT_OK = 0
EXIT_REFUSED = 3
EXIT_FAULTED = 4

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
CLONE_INTO_CGROUP = 0x200000000
CLONE_NEWNS = 0x00020000
CLONE_NEWIPC = 0x08000000

# marker byte -> (state, phase name used in fault notes)
_MARKERS = {
    ord("N"): states.NAMESPACE_PHASE_RESOLVED,
    ord("F"): states.FD_PHASE_RESOLVED,
    ord("L"): states.FILESYSTEM_PHASE_RESOLVED,
    ord("P"): states.POLICY_PHASE_RESOLVED,
    ord("R"): states.READY_TO_EXEC,
}
_MARKER_ORDER = b"NFLPR"
# phase byte in an error record -> (phase, mechanism)
_FAULT_PHASES = {
    ord("S"): ("sync", "pdeathsig"),
    ord("N"): ("namespace", "namespace"),
    ord("F"): ("fds", "fds"),
    ord("n"): ("privilege", "no_new_privs"),
    ord("C"): ("privilege", "capabilities"),
    ord("M"): ("namespace", "cgroupfs_hide"),
    ord("L"): ("filesystem", "landlock"),
    ord("P"): ("policy", "seccomp"),
    ord("X"): ("exec", "exec"),
}
_MAX_PLAN = envelope.HEADER_SIZE + envelope.MAX_BODY


class Fault(Exception):
    """An OS operation failed; carries the errno and the mechanism it belongs to."""

    def __init__(self, mechanism: str, err: int, detail: str) -> None:
        super().__init__(detail)
        self.mechanism = mechanism
        self.errno = err
        self.detail = detail

    def note(self) -> str:
        name = errno.errorcode.get(self.errno, "EUNKNOWN")
        return f"fault mechanism={self.mechanism} errno={self.errno} name={name}: {self.detail}"


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


@dataclass
class _Prepared:
    """Everything made before clone3 (closed by the launcher after the child exists)."""

    seccomp_program: seccomp.SeccompProgram | None = None
    ruleset: landlock.LandlockRuleset | None = None
    clone_flags: int = 0
    cgroup_fd: int = -1
    hide_paths: list[str] = field(default_factory=list)
    writable_slots: list[int] | None = None  # None: no read-only mount view
    notes_ns: list[str] = field(default_factory=list)
    notes_fd: list[str] = field(default_factory=list)
    notes_fs: list[str] = field(default_factory=list)
    notes_policy: list[str] = field(default_factory=list)


class Launcher:
    """One launch: verify, prepare, create the child, follow it, wait for the workload."""

    def __init__(self, control: Control) -> None:
        self.ctl = control
        self.child_pid: int | None = None
        self.exec_done = False

    # -- the run ---------------------------------------------------------------------

    def run(self) -> int:
        try:
            self.ctl.state(states.LAUNCHER_STARTED)
            self._check_single_threaded()
            self._identity()
            self.ctl.state(states.IDENTITY_VERIFIED)
            body = self._read_plan()
            for hook in sorted(body.test_hooks):
                self.ctl.note(f"DANGER test hook active: {hook}")
            verify_body(body)
            self.ctl.state(states.PLAN_VERIFIED)
            self._verify_handles(body)
            self.ctl.state(states.HANDLES_VERIFIED)
            self._close_on_exec(body)
            prepared = self._prepare(body)
            self._launch(body, prepared)
        except Refusal as refusal:
            return self._finish_refused(refusal)
        except Fault as fault:
            return self._finish_faulted(fault.note())
        except BaseException as exc:  # fail closed on anything unforeseen
            return self._finish_faulted(f"fault mechanism=launcher internal error: {exc!r}")
        return EXIT_OK

    def _finish_refused(self, refusal: Refusal) -> int:
        self._kill_child()
        if self.ctl.terminal is None:
            self.ctl.note(f"refused code={refusal.code}: {refusal.detail}")
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
        code = identity.code_identity((window.module_file(),))
        entry = "unknown"
        raw = os.environ.get(LAUNCHER_FD_ENV)
        if raw is not None and raw.isdigit():
            launcher_fd = int(raw)
            try:
                entry = identity.hash_fd(launcher_fd)
            finally:
                os.close(launcher_fd)
        self.ctl.note(f"identity code={code.digest} entry={entry}")
        self.ctl.note(
            "identity hashed: entry=the launcher file the host executed (by fd); "
            "code=blake3(canonical [[module, blake3]]) over " + ", ".join(p for p, _ in code.files)
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

    def _close_on_exec(self, body: LaunchBody) -> None:
        """Defence in depth: only kept fds may survive exec even if the scrub is skipped."""
        keep = set(body.target.keep_fds)
        for slot in body.descriptor_table:
            if slot.slot_index not in keep:
                fds.set_cloexec(slot.slot_index)
        fds.set_cloexec(self.ctl.fd)

    # -- preparation (before clone3) ---------------------------------------------------

    def _prepare(self, body: LaunchBody) -> _Prepared:
        target, hooks = body.target, body.test_hooks
        prepared = _Prepared()
        if target.user_namespace is not None:
            if "skip_userns" not in hooks:
                prepared.clone_flags |= CLONE_NEWUSER
            prepared.notes_ns.append(
                f"userns uid_map={target.user_namespace.uid_map!r} "
                f"gid_map={target.user_namespace.gid_map!r} setgroups=deny"
            )
        if target.network_namespace is not None:
            if "skip_netns" not in hooks:
                prepared.clone_flags |= CLONE_NEWNET
            prepared.notes_ns.append("netns created")
        if target.user_namespace is not None or os.geteuid() == 0:
            # SysV shared memory, message queues and semaphores (and POSIX queues) live in
            # the IPC namespace; neither Landlock nor seccomp sees them, and a workload
            # with the caller's uid could read, write and outlive the caller's objects.
            prepared.clone_flags |= CLONE_NEWIPC
            prepared.notes_ns.append("ipc namespace created")
        else:
            prepared.notes_ns.append("ipc namespace shared: no user namespace, not root")
        if target.cgroup is not None:
            if target.cgroup.v2_slot is not None:
                if "skip_cgroup_placement" not in hooks:
                    prepared.clone_flags |= CLONE_INTO_CGROUP
                    prepared.cgroup_fd = target.cgroup.v2_slot
                prepared.notes_ns.append(f"cgroup placed v2 slot={target.cgroup.v2_slot}")
            for slot_index in target.cgroup.v1_slots:
                prepared.notes_ns.append(f"cgroup placed v1 slot={slot_index}")
            hide = mounts.cgroup_mount_cover()
            if "skip_cgroupfs_hide" not in hooks:
                prepared.clone_flags |= CLONE_NEWNS
                prepared.hide_paths = hide
            prepared.notes_ns.append(
                "cgroupfs hidden: private mount namespace, empty read-only tmpfs over "
                + ", ".join(hide)
            )
        prepared.notes_fd.append(f"environment exact: {len(target.envp)} entries")
        prepared.notes_fs.append("no_new_privs set")
        if body.target.drop_capabilities:
            prepared.notes_fs.append(
                "capabilities dropped: bounding, ambient, effective, permitted, inheritable; "
                "securebits noroot+no_setuid_fixup+no_ambient_raise locked"
            )
        if target.landlock is not None and target.landlock.handle_filesystem:
            self._prepare_readonly_view(body, prepared)
        if target.landlock is not None:
            prepared.ruleset = self._prepare_landlock(body)
            prepared.notes_fs.append(
                f"landlock abi={prepared.ruleset.abi} rules={prepared.ruleset.rules} "
                f"handled={prepared.ruleset.handled:#x} scoped={prepared.ruleset.scoped:#x}"
            )
        if target.seccomp is not None:
            req = target.seccomp
            try:
                program = seccomp.build_filter(
                    deny_new_tasks=req.deny_new_tasks,
                    deny_sockets=req.deny_sockets,
                )
            except seccomp.SeccompError as exc:
                raise Fault("seccomp", exc.errno or errno.EINVAL, str(exc)) from None
            if "skip_seccomp" not in hooks:
                prepared.seccomp_program = program
            prepared.notes_policy.append(
                f"seccomp denylist installed deny_new_tasks={int(req.deny_new_tasks)} "
                f"deny_sockets={int(req.deny_sockets)} arch={program.arch} "
                f"badarch=kill_process instructions={program.instructions} "
                f"denied={','.join(program.denied) or 'none'}"
            )
        return prepared

    def _prepare_readonly_view(self, body: LaunchBody, prepared: _Prepared) -> None:
        """Part of the Landlock filesystem mechanism: a read-only mount tree (see the C).

        Mounting needs CAP_SYS_ADMIN over the new mount namespace: a user namespace of the
        workload's own, or a root launcher. Without either, the view cannot be made and
        the launch faults rather than run with metadata changes unconfined.
        """
        target = body.target
        assert target.landlock is not None
        if target.user_namespace is None and os.geteuid() != 0:
            raise Fault(
                "mounts",
                errno.EPERM,
                "a read-only mount view needs a user namespace or a root launcher",
            )
        writable = [r.slot for r in target.landlock.rules if r.access in ("write", "read_write")]
        if "skip_readonly_view" not in body.test_hooks:
            prepared.clone_flags |= CLONE_NEWNS
            prepared.writable_slots = writable
        prepared.notes_fs.append(
            f"mounts read-only: every mount but the {len(writable)} writable roots"
        )

    def _prepare_landlock(self, body: LaunchBody) -> landlock.LandlockRuleset:
        request = body.target.landlock
        assert request is not None
        try:
            abi = landlock.abi_version()
        except landlock.LandlockError as exc:
            raise Fault("landlock", exc.errno or errno.ENOSYS, str(exc)) from None
        floor = max(request.abi_floor, 3 if request.handle_filesystem else landlock.SCOPE_ABI)
        if abi < floor:
            raise Fault(
                "landlock",
                errno.EOPNOTSUPP,
                f"kernel Landlock ABI {abi} is below the floor {floor}",
            )
        try:
            return landlock.create_ruleset(
                abi,
                [(rule.slot, rule.access) for rule in request.rules],
                request.scope,
                handle_filesystem=request.handle_filesystem,
            )
        except landlock.LandlockError as exc:
            raise Fault("landlock", exc.errno or errno.EINVAL, str(exc)) from None

    # -- the child ---------------------------------------------------------------------

    def _launch(self, body: LaunchBody, prepared: _Prepared) -> None:
        target, hooks = body.target, body.test_hooks
        cw = window.load()
        ffi, lib = cw.ffi, cw.lib
        keep = sorted(set(target.keep_fds))
        sync_r, sync_w = os.pipe2(os.O_CLOEXEC)
        status_r, status_w = os.pipe2(os.O_CLOEXEC)
        internal = [status_w, target.exe_slot]
        ruleset_fd = -1
        if prepared.ruleset is not None and "skip_landlock" not in hooks:
            ruleset_fd = prepared.ruleset.fd
            internal.append(ruleset_fd)
        keepalive: list[Any] = []

        def cstr(text: str) -> Any:
            buf = ffi.new("char[]", text.encode("utf-8"))
            keepalive.append(buf)
            return buf

        argv = ffi.new("char *[]", [cstr(a) for a in target.argv] + [ffi.NULL])
        table = list(target.envp)
        if "skip_env_scrub" in hooks:  # test-only lie: leak the launcher's own environment
            table += sorted(os.environ.items())
        envp = ffi.new("char *[]", [cstr(f"{k}={v}") for k, v in table] + [ffi.NULL])
        keep_arr = ffi.new("int[]", keep or [0])
        internal_arr = ffi.new("int[]", internal)
        bpf = prepared.seccomp_program.bpf if prepared.seccomp_program is not None else b""
        bpf_buf = ffi.new("unsigned char[]", bpf or b"\0")
        req = ffi.new("struct bv_spawn_req *")
        req.clone_flags = prepared.clone_flags
        req.cgroup_fd = prepared.cgroup_fd
        req.sync_fd = sync_r
        req.status_fd = status_w
        req.exe_fd = target.exe_slot
        req.argv = argv
        req.envp = envp
        req.keep_fds = keep_arr
        req.n_keep = len(keep)
        req.internal_fds = internal_arr
        req.n_internal = len(internal)
        req.scrub_fds = 0 if "skip_fd_scrub" in hooks else 1
        req.landlock_ruleset_fd = ruleset_fd
        req.seccomp_filter = bpf_buf
        req.seccomp_len = len(bpf) // 8
        req.parent_pid = os.getpid()
        req.drop_caps = int(target.drop_capabilities and "skip_caps_drop" not in hooks)
        # Part of the ambient scrub, like the fd scrub (and skipped with it by the test hook).
        req.new_session = req.scrub_fds
        hide = ffi.new("char *[]", [cstr(path) for path in prepared.hide_paths] + [ffi.NULL])
        req.hide_paths = hide
        req.n_hide = len(prepared.hide_paths)
        writable = prepared.writable_slots or []
        writable_arr = ffi.new("int[]", writable or [0])
        writable_paths = ffi.new(
            "char *[]",
            [cstr(os.readlink(f"/proc/self/fd/{slot}")) for slot in writable] + [ffi.NULL],
        )
        req.readonly_view = int(prepared.writable_slots is not None)
        req.writable_fds = writable_arr
        req.writable_paths = writable_paths
        req.n_writable = len(writable)
        pid_out = ffi.new("int *")
        rc = int(lib.bv_spawn(req, pid_out))
        os.close(sync_r)
        os.close(status_w)
        if prepared.ruleset is not None:
            os.close(prepared.ruleset.fd)
        if rc != 0:
            os.close(sync_w)
            os.close(status_r)
            mechanism = "clone3"
            for flag, name in (
                (CLONE_NEWUSER, "userns"),
                (CLONE_NEWNET, "netns"),
                (CLONE_INTO_CGROUP, "cgroup"),
                (CLONE_NEWNS, "mountns"),
                (CLONE_NEWIPC, "ipcns"),
            ):
                if prepared.clone_flags & flag and rc != errno.ENOSYS:
                    mechanism = name
                    break
            raise Fault(
                mechanism, rc, f"clone3(flags={prepared.clone_flags:#x}): {os.strerror(rc)}"
            )
        self.child_pid = int(pid_out[0])
        self.ctl.state(states.CHILD_CREATED)
        self.ctl.note(f"workload pid={self.child_pid}")
        try:
            self._rendezvous(body, self.child_pid)
            os.write(sync_w, b"G")
        finally:
            os.close(sync_w)
        self._follow(status_r, prepared, keep, hooks)
        self._wait_workload(self.child_pid)

    def _rendezvous(self, body: LaunchBody, pid: int) -> None:
        """Parent half of the window: id maps and v1 cgroup placement, child still waiting."""
        target = body.target
        if target.user_namespace is not None and "skip_userns" not in body.test_hooks:
            ns = target.user_namespace
            for name, text in (
                ("uid_map", ns.uid_map),
                ("setgroups", "deny"),
                ("gid_map", ns.gid_map),
            ):
                try:
                    _write_file(f"/proc/{pid}/{name}", text)
                except OSError as exc:
                    raise Fault(
                        "userns", exc.errno or errno.EIO, f"write {name}: {exc.strerror}"
                    ) from None
        if target.cgroup is not None and "skip_cgroup_placement" not in body.test_hooks:
            for slot_index in target.cgroup.v1_slots:
                try:
                    fd = os.open("cgroup.procs", os.O_WRONLY | os.O_CLOEXEC, dir_fd=slot_index)
                    try:
                        os.write(fd, str(pid).encode("ascii"))
                    finally:
                        os.close(fd)
                except OSError as exc:
                    raise Fault(
                        "cgroup",
                        exc.errno or errno.EIO,
                        f"v1 slot {slot_index} cgroup.procs: {exc.strerror}",
                    ) from None

    def _follow(
        self, status_r: int, prepared: _Prepared, keep: list[int], hooks: frozenset[str]
    ) -> None:
        """Turn the child's marker bytes into states; EOF after 'R' means exec happened."""
        data = b""
        expected = 0
        try:
            while True:
                chunk = os.read(status_r, 64)
                if not chunk:
                    break
                data += chunk
                while (
                    expected < len(_MARKER_ORDER)
                    and data[:1] == _MARKER_ORDER[expected : expected + 1]
                ):
                    marker = data[0]
                    data = data[1:]
                    expected += 1
                    self.ctl.state(_MARKERS[marker])
                    self._phase_notes(marker, prepared, keep)
                if data[:1] == b"E" and len(data) >= 6:
                    break
                if data and data[:1] != b"E":
                    raise Fault("launcher", errno.EPROTO, f"unexpected status bytes {data!r}")
        finally:
            os.close(status_r)
        if data[:1] == b"E" and len(data) >= 6:
            phase, mechanism = _FAULT_PHASES.get(data[1], ("unknown", "unknown"))
            err = int.from_bytes(data[2:6], sys.byteorder, signed=True)
            raise Fault(mechanism, err, f"child window failed in phase {phase}: {os.strerror(err)}")
        if expected != len(_MARKER_ORDER) or data:
            raise Fault("launcher", errno.EPROTO, "child exited during setup without reporting why")
        self.exec_done = True
        self.ctl.state(states.EXEC_SUCCEEDED)

    def _phase_notes(self, marker: int, prepared: _Prepared, keep: list[int]) -> None:
        if marker == ord("N"):
            for text in prepared.notes_ns:
                self.ctl.note(text)
        elif marker == ord("F"):
            self.ctl.note("fds kept " + ",".join(str(fd) for fd in [0, 1, 2, *keep]))
            self.ctl.note("new session: no controlling terminal")
            for text in prepared.notes_fd:
                self.ctl.note(text)
        elif marker == ord("L"):
            for text in prepared.notes_fs:
                self.ctl.note(text)
        elif marker == ord("P"):
            for text in prepared.notes_policy:
                self.ctl.note(text)

    def _wait_workload(self, pid: int) -> None:
        # Wait for the exit without reaping: while the zombie holds its pid, the workload's
        # process group id cannot be reused, so killing that group reaches only what the
        # workload left behind (it leads its own session, so the host's kill of the
        # launcher's group would not). With a run cgroup, cgroup.kill covers this anyway.
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
        with contextlib.suppress(OSError):
            if os.getpgid(pid) == pid:
                os.killpg(pid, signal.SIGKILL)
        _, status, usage = os.wait4(pid, 0)
        self.child_pid = None
        if os.WIFSIGNALED(status):
            self.ctl.note(f"workload exit signal={os.WTERMSIG(status)}")
        else:
            self.ctl.note(f"workload exit code={os.WEXITSTATUS(status)}")
        self.ctl.note(
            f"workload rusage utime_us={int(usage.ru_utime * 1_000_000)} "
            f"stime_us={int(usage.ru_stime * 1_000_000)} maxrss_kb={usage.ru_maxrss}"
        )

    def _kill_child(self) -> None:
        pid, self.child_pid = self.child_pid, None
        if pid is None:
            return
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            os.waitpid(pid, 0)


def _write_file(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, text.encode("ascii"))
    finally:
        os.close(fd)


def _die(message: str) -> NoReturn:
    sys.stderr.write(f"bvisor-linux-launcher: {message}\n")
    sys.exit(EXIT_FAULTED)


def main() -> int:
    """Entry point of the ``bvisor-linux-launcher`` console script."""
    raw = os.environ.get(CONTROL_FD_ENV, "")
    if not raw.isdigit():
        _die(f"{CONTROL_FD_ENV} is not set; this program is started by bvisor, not by hand")
    control = Control(int(raw))
    host = os.environ.get(HOST_PID_ENV, "")
    try:
        # Before anything else: a launcher must never outlive the host that supervises it.
        lifeline.die_with_host(int(host) if host.isdigit() else -1)
    except (OSError, lifeline.HostGone) as exc:
        _die(f"cannot tie the launcher to its host: {exc}")
    try:
        code = Launcher(control).run()
    except OSError as exc:  # the control channel itself is gone
        _die(f"control channel failed: {exc}")
    # Every control line went out with os.write and the workload is reaped, so nothing is
    # left to flush: skip interpreter finalization, which only delays the host's verdict.
    os._exit(code)
