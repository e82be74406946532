"""Build the seccomp denylist with libseccomp and export it as a ready BPF program.

libseccomp is used through cffi ABI mode (``dlopen("libseccomp.so.2")``; no header is
installed, so the few declarations used are written out in ``_build_seccomp.py`` from the
library's public API and precompiled into ``bvisor.launcher._seccomp_abi``). The launcher
builds the filter *before* clone3 and exports the classic-BPF program bytes; the child
window only hands those bytes to ``seccomp(SECCOMP_SET_MODE_FILTER)``, so no library
code runs between clone and exec.

Filter shape: default action ALLOW; a denylist of syscalls answered with EPERM.

* baseline (every filter): what no workload of a boundary needs and Landlock does not
  cover, found by attacking the boundary from inside —
  new namespaces (``unshare``/``clone`` with any ``CLONE_NEW*`` flag, ``setns``; a nested
  user namespace hands back a full capability set, with which a workload without a
  Landlock filesystem domain could mount its own cgroup controller and lift its budget);
  ``clone3`` answers ENOSYS (its flags live in memory, so it cannot be checked; libc then
  falls back to ``clone``, whose flags can); the kernel keyrings (``keyctl``, ``add_key``,
  ``request_key``: the caller's session keyring would otherwise be shared; and a
  filesystem's fscrypt keys, the ``FS_IOC_*_ENCRYPTION_KEY*`` ioctls: removing its user's
  claim locked an encrypted directory for the whole host); acting on
  *another* process's limits or scheduling (``prlimit64``, ``setpriority``,
  ``sched_set*``, ``ioprio_set`` with a pid other than 0 — Landlock's signal scope does
  not cover them, and ``RLIMIT_CPU`` kills); io_uring (its SQPOLL thread is a new task,
  and it creates sockets without ``socket()``); setuid/setgid bits in ``chmod``-family
  and file-creating modes (``openat2`` answers ENOSYS as its mode lives in memory); and
  the mount syscalls; file leases and directory notifications (``fcntl`` F_SETLEASE,
  F_NOTIFY: a lease on a readable host file stalls the host's writers); inotify and
  fanotify watches (``inotify_add_watch``, ``fanotify_mark``: a read root is the host's
  own directory, so a watch on ``/etc`` or ``/usr`` reports every host process's opens
  and reads there, root's included; a filter cannot tell a write root's path from a read
  root's, so no watch is allowed); and the kernel facilities an unprivileged process
  reaches as far as a host sysctl lets it (``perf_event_open``: with
  ``kernel.perf_event_paranoid`` at 1 or below, kernel profiling, and at 0 or below every
  process on a CPU; ``bpf``: ``kernel.unprivileged_bpf_disabled``; ``userfaultfd``:
  ``vm.unprivileged_userfaultfd`` lets it stall the kernel's own page faults;
  ``syslog``: ``kernel.dmesg_restrict`` at 0 hands out the kernel's log) — what the
  workload may do must not hang on how the host happens to be tuned, and each is a large
  kernel surface no workload of a boundary needs; and ``io_setup``, whose AIO contexts are
  drawn from one host-wide pool (``fs.aio-max-nr``): a single call can take all of it,
  and then every program on the host that uses native AIO, root's included, fails; and
  changing ``RLIMIT_CORE`` (``setrlimit``, ``prlimit64`` with a new limit), which the
  launcher sets to 1 so that a crash starts no ``core_pattern`` pipe helper (the kernel
  runs it as root in the host's namespaces); and evicting cached pages (``fadvise64``
  DONTNEED, ``madvise``/``process_madvise`` COLD or PAGEOUT): a read root's files are
  cached for every user of the host, so dropping them slows the host's programs and,
  timed against a probe of what is still cached, shows when another user read them;
  and setting a tty's line discipline (``ioctl`` TIOCSETD), which loads the discipline's
  module into the host's kernel where ``kernel.ldisc_autoload`` is on.
* deny_new_tasks: clone, clone3, fork, vfork -> EPERM (threads included: a denylist
  cannot tell CLONE_THREAD apart for clone3, whose flags live in memory). execve,
  execveat, write and exit_group are never on the list.
* deny_sockets: socket() of every family -> EPERM (an AF_UNIX socket could connect to a
  host daemon's pathname socket, and Landlock does not cover connect); socketpair() only
  as an AF_UNIX stream or seqpacket pair (a datagram pair can ``sendto`` any host
  pathname socket); ``connect`` and ``sendto`` with an address -> EPERM as well.
* inet_sockets_only (a network allow list): socket() only for AF_INET and AF_INET6 (the
  workload's empty namespace holds nothing but the proxy's listener on its loopback); every
  other family -> EPERM, AF_UNIX (a host daemon's pathname socket), AF_NETLINK and
  AF_PACKET included; socketpair as for deny_sockets. The family is an ``int``: the
  filter compares its low 32 bits (what the kernel reads), never the whole register.

Denial evidence (``notify_denials``): every rule above that answers EPERM instead returns
SECCOMP_RET_USER_NOTIF, and the child installs the filter with a listener
(:mod:`bvisor.launcher.process.denials` answers each notification with EPERM and records
it). Three things change with it, each because the notification route must be the only
one: the ENOSYS answers (``clone3``, ``openat2``) stay plain errno rules — they deny no
action, they send libc to the older call whose arguments the filter then judges, so they
are not denials to report; kill rules stay kill rules (a kill is recorded from the exit
status); and the workload may not install a seccomp filter of its own (``seccomp`` with
SECCOMP_SET_MODE_FILTER, ``prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER)`` are denied and
reported). Without that last rule a workload could stack a filter answering USER_NOTIF
for the same syscalls: for equal actions the newest filter wins, so its notifications
would bypass the supervisor — with no listener the kernel answers ENOSYS unseen, and
once the supervisor's listener is closed the workload could even attach its own and
answer CONTINUE, running the denied call.

Architectures: only the native ABI is in the filter and the "bad arch" action is
KILL_PROCESS, so a syscall made through another ABI (int 0x80 i386 entry on x86_64) kills
the process instead of bypassing the list. libseccomp's x86_64 filter also treats x32
syscall numbers (bit 30 set) as a foreign ABI; :func:`build_filter` verifies that by
checking the exported program contains that comparison on x86_64. Rules name syscalls,
and libseccomp's name table may be older than the kernel: on x86_64 a name it does not
know is added by its number (``X86_64_NUMBERS``), and one that table lacks too fails the
build, never a rule silently left out.
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import io
import os
import struct
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bvisor.contract import seccomp as labels
from bvisor.launcher.basement import memfd

__all__ = [
    "SeccompError",
    "SeccompProgram",
    "build_filter",
    "prebuild_one",
    "seccomp_filter_available",
    "warm",
]


SCMP_ACT_KILL_PROCESS = 0x80000000
SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_ACT_NOTIFY = 0x7FC00000
SCMP_FLTATR_ACT_BADARCH = 2
SCMP_CMP_NE = 1
SCMP_CMP_EQ = 4
SCMP_CMP_MASKED_EQ = 7
F_SETLEASE, F_NOTIFY = 1024, 1026
RLIMIT_CORE = 4
POSIX_FADV_DONTNEED = 4
MADV_COLD, MADV_PAGEOUT = 20, 21
AF_UNIX = 1
SOCK_TYPE_MASK = 0xF
SOCK_STREAM, SOCK_DGRAM, SOCK_RAW, SOCK_SEQPACKET = 1, 2, 3, 5
PAIR_TYPES_ALLOWED = (SOCK_STREAM, SOCK_SEQPACKET)
S_ISUID, S_ISGID = 0o4000, 0o2000
IOPRIO_WHO_PROCESS = 1
# FS_IOC_ADD_ENCRYPTION_KEY, _REMOVE_ENCRYPTION_KEY, _REMOVE_ENCRYPTION_KEY_ALL_USERS and
# _GET_ENCRYPTION_KEY_STATUS: the keyring of a filesystem's fscrypt keys (linux/fscrypt.h).
FSCRYPT_KEY_IOCTLS = (0xC0506617, 0xC0406618, 0xC0406619, 0xC080661A)
TIOCSETD = 0x5423
SECCOMP_SET_MODE_FILTER, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 1, 22, 2
# CLONE_NEWTIME, NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET.
NAMESPACE_FLAGS = (
    0x80,
    0x20000,
    0x02000000,
    0x04000000,
    0x08000000,
    0x10000000,
    0x20000000,
    0x40000000,
)
_X32_SYSCALL_BIT = 0x40000000
_LOW_WORD = 0xFFFFFFFF  # what the kernel reads of an int argument
_AUDIT_ARCH_X86_64 = 0xC000003E
_BPF_INSN = struct.Struct("=HBBI")


def SCMP_ACT_ERRNO(err: int) -> int:
    return 0x00050000 | (err & 0xFFFF)


# The labels of deny_new_tasks are the very syscalls it denies.
NEW_TASK_SYSCALLS = labels.NEW_TASKS
NEVER_DENIED = ("execve", "execveat", "write", "exit_group")
BASELINE_DENIED = (
    "setns",
    "keyctl",
    "add_key",
    "request_key",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "open_tree",
    "open_tree_attr",
    "move_mount",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    "inotify_add_watch",
    "fanotify_mark",
    # What these reach is set by a host sysctl, not by the boundary (see the docstring).
    "perf_event_open",
    "bpf",
    "userfaultfd",
    "syslog",
    # One pool for the whole host (see the docstring).
    "io_setup",
)
# Syscalls whose first argument names a process; only 0 ("myself") is allowed.
OWN_PROCESS_ONLY = (
    "prlimit64",
    "sched_setaffinity",
    "sched_setscheduler",
    "sched_setparam",
    "sched_setattr",
)
# (syscall, index of its mode argument) for calls that set or create with a file mode.
MODE_ARGUMENT = (
    ("chmod", 1),
    ("fchmod", 1),
    ("fchmodat", 2),
    ("fchmodat2", 2),
    ("creat", 1),
    ("open", 2),
    ("openat", 3),
    ("mknod", 1),
    ("mknodat", 2),
)

# The x86_64 numbers of the syscalls above that a libseccomp older than the kernel may not
# know by name (its name table, not the kernel, answers seccomp_syscall_resolve_name; a
# syscall since 424 has one number on every architecture but a few, and these are x86_64's).
# libseccomp 2.5.4 has no open_tree_attr, and libseccomp 2.5.3 (Ubuntu 22.04) no fchmodat2,
# which its 6.8 kernels have: without the number, that rule would be silently left out and
# a root caller's workload could set a setuid bit on a file it owns on the host.
X86_64_NUMBERS = {
    "io_uring_setup": 425,
    "io_uring_enter": 426,
    "io_uring_register": 427,
    "open_tree": 428,
    "move_mount": 429,
    "fsopen": 430,
    "fsconfig": 431,
    "fsmount": 432,
    "fspick": 433,
    "clone3": 435,
    "openat2": 437,
    "process_madvise": 440,
    "mount_setattr": 442,
    "fchmodat2": 452,
    "open_tree_attr": 467,
}

_lib: Any = None
_ffi: Any = None


class SeccompError(OSError):
    """libseccomp is missing or refused to build/export the filter."""


@dataclass(frozen=True, slots=True)
class SeccompProgram:
    """A ready classic-BPF program plus a description for the launcher's note.

    ``notified``: the syscalls whose rules notify instead of answering, as (number, name,
    errno the rule means) sorted by number; empty unless built with ``notify_denials``.
    """

    bpf: bytes
    denied: tuple[str, ...]
    arch: str
    notified: tuple[tuple[int, str, int], ...] = ()

    @property
    def instructions(self) -> int:
        return len(self.bpf) // _BPF_INSN.size


def _abi_ffi() -> Any:
    """The precompiled declarations (``bvisor.launcher._seccomp_abi``), generated if missing."""
    try:
        precompiled = importlib.import_module("bvisor.launcher._seccomp_abi")
    except Exception:  # missing, or generated by another cffi version: parse inline
        from cffi import FFI

        from bvisor.launcher.basement._build_seccomp import CDEF

        inline = FFI()
        inline.cdef(CDEF)
        return inline
    return precompiled.ffi


def ensure_generated() -> None:
    """Write ``launcher/_seccomp_abi.py`` from the declarations if it does not exist.

    Called by the host before it spawns a launcher (the launcher itself never writes
    code); if the package directory is read-only the launcher parses the declarations
    inline instead, which is slower but equivalent.
    """
    target = Path(__file__).resolve().parent.parent / "_seccomp_abi.py"
    if target.exists():
        return
    from bvisor.launcher.basement._build_seccomp import ffibuilder

    if not os.access(target.parent, os.W_OK):
        return
    staged = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with contextlib.redirect_stdout(io.StringIO()):  # cffi announces what it writes
        ffibuilder.emit_python_code(str(staged))
    generated = staged.read_text(encoding="utf-8")
    staged.write_text(_GENERATED_HEADER + generated, encoding="utf-8")
    os.replace(staged, target)


# The generated module is cffi's output, not ours to lint or type-check.
_GENERATED_HEADER = "# ruff: noqa\n# mypy: ignore-errors\n# fmt: off\n"


def _library() -> Any:
    global _lib, _ffi
    if _lib is None:
        _ffi = _abi_ffi()
        try:
            _lib = _ffi.dlopen("libseccomp.so.2")
        except OSError as exc:
            raise SeccompError(errno.ENOSYS, f"libseccomp.so.2 cannot be loaded: {exc}") from None
    return _lib


def warm() -> None:
    """Load libseccomp and build one filter, so that a process forked from this one (a
    resident launcher's run) finds the library mapped, its ABI module imported and the
    kernel's seccomp API level already asked, instead of paying for it on every run. A
    missing library is not an error here: the run that needs it says so.
    """
    with contextlib.suppress(SeccompError):
        build_filter(deny_new_tasks=False, deny_sockets=True)


def prebuild_one() -> bool:
    """Build (and keep) one more of the filters :func:`build_filter` can be asked for; False
    once every one is kept. A resident launcher calls it while it has nothing else to do,
    so that its runs' forks find their filter built."""
    for flags in _FLAG_SETS:
        if flags not in _built:
            try:
                _built[flags] = _build(*flags)
            except SeccompError:
                _built[flags] = None
            return True
    return False


def seccomp_filter_available() -> bool:
    """Does this kernel offer seccomp filters with the errno action (and libseccomp load)?"""
    try:
        with open("/proc/sys/kernel/seccomp/actions_avail", encoding="ascii") as fh:
            actions = fh.read().split()
    except OSError:
        return False
    if "errno" not in actions or "allow" not in actions:
        return False
    try:
        _library()
    except SeccompError:
        return False
    return True


# What seccomp_syscall_resolve_name answers for a name libseccomp does not know (its
# header's __NR_SCMP_ERROR); a syscall it knows that this architecture lacks is another
# negative number (__PNR_*, below -10000).
_NR_SCMP_ERROR = -1


def _check(rc: int, what: str) -> None:
    if rc < 0:
        raise SeccompError(-rc, f"libseccomp {what}: {os.strerror(-rc)}")


# deny_new_tasks, deny_sockets, threads_only, notify_denials, inet_sockets_only
_Flags = tuple[bool, bool, bool, bool, bool]
_FLAG_SETS: tuple[_Flags, ...] = tuple(
    (tasks, sockets, threads, notify, inet)
    for tasks in (False, True)
    for threads in (False, True)
    for sockets in (False, True)
    for inet in (False, True)
    for notify in (False, True)
    if not (tasks and threads) and not (sockets and inet)
)
# What each set of flags built, kept: a program depends on nothing else (the library and
# the architecture are this process's), and a SeccompProgram is immutable. None: that set
# could not be built when tried (it is built again, and fails again, when asked for).
_built: dict[_Flags, SeccompProgram | None] = {}


def build_filter(
    *,
    deny_new_tasks: bool,
    deny_sockets: bool,
    threads_only: bool = False,
    notify_denials: bool = False,
    inet_sockets_only: bool = False,
) -> SeccompProgram:
    """Build, export and sanity-check the denylist program (or hand back the one built
    for the same flags before)."""
    flags = (deny_new_tasks, deny_sockets, threads_only, notify_denials, inet_sockets_only)
    kept = _built.get(flags)
    if kept is None:
        kept = _built[flags] = _build(*flags)
    return kept


def _build(
    deny_new_tasks: bool,
    deny_sockets: bool,
    threads_only: bool,
    notify_denials: bool,
    inet_sockets_only: bool,
) -> SeccompProgram:
    if deny_new_tasks and threads_only:
        raise SeccompError(errno.EINVAL, "deny_new_tasks and threads_only exclude each other")
    if deny_sockets and inet_sockets_only:
        raise SeccompError(errno.EINVAL, "deny_sockets and inet_sockets_only exclude each other")
    lib = _library()
    ctx = lib.seccomp_init(SCMP_ACT_ALLOW)
    if ctx == _ffi.NULL:
        raise SeccompError(errno.ENOMEM, "seccomp_init failed")
    rules = _Rules(lib, ctx, notify_denials)
    denied: list[str] = []
    try:
        _check(lib.seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS), "badarch")
        denied += _add_baseline(rules, new_tasks_ruled=deny_new_tasks or threads_only)
        if threads_only:
            denied += _add_thread_rules(rules)
        if deny_new_tasks:
            for name in NEW_TASK_SYSCALLS:
                rules.deny(name)
            denied += NEW_TASK_SYSCALLS
        if deny_sockets:
            denied += _add_socket_rules(rules)
        if inet_sockets_only:
            denied += _add_inet_only_rules(rules)
        if notify_denials:
            denied += _add_no_own_filter(rules)
        bpf = _export(lib, ctx)
    finally:
        lib.seccomp_release(ctx)
    arch = os.uname().machine
    if int(lib.seccomp_arch_native()) == _AUDIT_ARCH_X86_64 and not _mentions(
        bpf, _X32_SYSCALL_BIT
    ):
        raise SeccompError(errno.EINVAL, "exported filter does not reject x32 syscall numbers")
    if len(bpf) == 0 or len(bpf) % _BPF_INSN.size or len(bpf) // _BPF_INSN.size > 4096:
        raise SeccompError(errno.EINVAL, f"exported filter has an invalid size {len(bpf)}")
    if notify_denials and not _mentions_return(bpf, SCMP_ACT_NOTIFY):
        raise SeccompError(errno.EINVAL, "exported filter has no notifying rule")
    named = {
        "deny_new_tasks": deny_new_tasks,
        "deny_sockets": deny_sockets,
        "threads_only": threads_only,
        "notify_denials": notify_denials,
        "inet_sockets_only": inet_sockets_only,
    }
    if tuple(denied) != labels.expected_denials(named):  # the note must say what is denied
        raise SeccompError(errno.EINVAL, f"the filter's denials {denied} are not its flags'")
    notified = tuple(sorted((nr, name, errno.EPERM) for nr, name in rules.notified.items()))
    return SeccompProgram(bpf=bpf, denied=tuple(denied), arch=arch, notified=notified)


class _Rules:
    """Adds rules to one libseccomp context; ``deny`` is the denial action of this filter.

    A denial answers EPERM, or — with ``notify`` — hands the call to the listener (which
    answers EPERM); the syscalls given to the listener are remembered so it can name them.
    """

    def __init__(self, lib: Any, ctx: Any, notify: bool) -> None:
        self.lib, self.ctx, self.notify = lib, ctx, notify
        self.notified: dict[int, str] = {}
        self.x86_64 = int(lib.seccomp_arch_native()) == _AUDIT_ARCH_X86_64

    def deny(self, name: str, args: Any = None) -> None:
        if self.notify:
            number = self.add(name, SCMP_ACT_NOTIFY, args)
            if number is not None:
                self.notified[number] = name
        else:
            self.add(name, SCMP_ACT_ERRNO(errno.EPERM), args)

    def add(self, name: str, action: int, args: Any = None) -> int | None:
        """Add one rule; the syscall's number, or None where this ABI lacks the syscall.

        libseccomp answers a syscall the architecture lacks with a negative pseudo number
        of its own table (e.g. socketcall on x86_64), and a name it does not know at all
        with ``__NR_SCMP_ERROR``: an older libseccomp than the kernel (fchmodat2, in the
        kernel since 6.6, is unknown to libseccomp before 2.5.5). Skipping that rule too
        would leave the call allowed while the filter's note says it is denied: on x86_64
        the name is looked up in :data:`X86_64_NUMBERS`, and a name that table lacks too
        (or any unknown name elsewhere) refuses the filter, naming the call.
        """
        number = int(self.lib.seccomp_syscall_resolve_name(name.encode("ascii")))
        if number == _NR_SCMP_ERROR:
            known = X86_64_NUMBERS.get(name) if self.x86_64 else None
            if known is None:
                raise SeccompError(
                    errno.ENOSYS,
                    f"libseccomp does not know the syscall {name}, so its rule cannot be added "
                    "(a newer libseccomp is needed)",
                )
            number = known
        if number < 0:
            # A syscall this ABI does not have (e.g. no vfork on some arches) needs no rule.
            return None
        count = 0 if args is None else len(args)
        _check(
            self.lib.seccomp_rule_add_exact_array(
                self.ctx, action, number, count, args or _ffi.NULL
            ),
            f"rule {name}",
        )
        return number


def _add_baseline(rules: _Rules, *, new_tasks_ruled: bool) -> list[str]:
    """The rules every filter carries (see the module docstring for why each exists).

    ``new_tasks_ruled``: clone/clone3 get rules of their own (deny_new_tasks or
    threads_only), which already refuse namespace flags; rules here would overlap them.
    """
    denied: list[str] = []
    for name in BASELINE_DENIED:
        rules.deny(name)
    # A filesystem's fscrypt keys are a keyring of the host's, reached by an ioctl on any
    # file of that filesystem (a write root, a read root): a workload could remove its
    # user's claim to the key of an encrypted directory it can name (its own cwd inside an
    # encrypted home gives the key's identifier), locking it for the whole host, or add
    # keys charged to its user's key quota that outlive the run. The request is an int.
    for request in FSCRYPT_KEY_IOCTLS:
        rules.deny("ioctl", _args(_int_is(1, request)))
    denied.append(labels.BASELINE_GROUP)
    namespace_calls = ("unshare",) if new_tasks_ruled else ("unshare", "clone")
    for name in namespace_calls:
        for flag in NAMESPACE_FLAGS:
            rules.deny(name, _args((0, SCMP_CMP_MASKED_EQ, flag, flag)))
    if not new_tasks_ruled:
        rules.add("clone3", SCMP_ACT_ERRNO(errno.ENOSYS))
    denied.append(labels.BASELINE[0])
    for name in OWN_PROCESS_ONLY:
        rules.deny(name, _args((0, SCMP_CMP_NE, 0, 0)))
    rules.deny("setpriority", _args((0, SCMP_CMP_NE, 0, 0)))  # PRIO_PROCESS only
    rules.deny("setpriority", _args((1, SCMP_CMP_NE, 0, 0)))
    rules.deny("ioprio_set", _args((0, SCMP_CMP_NE, IOPRIO_WHO_PROCESS, 0)))
    rules.deny("ioprio_set", _args((1, SCMP_CMP_NE, 0, 0)))
    denied.append(labels.BASELINE[1])
    for name, index in MODE_ARGUMENT:
        for bit in (S_ISUID, S_ISGID):
            rules.deny(name, _args((index, SCMP_CMP_MASKED_EQ, bit, bit)))
    rules.add("openat2", SCMP_ACT_ERRNO(errno.ENOSYS))
    denied.append(labels.BASELINE[2])
    # A lease on a readable host file stalls the host's writers for up to lease-break-time
    # and tells the workload they are writing; a directory notification reports host
    # activity. Neither is the workload's business.
    for command in (F_SETLEASE, F_NOTIFY):
        rules.deny("fcntl", _args(_int_is(1, command)))
    denied.append(labels.BASELINE[3])
    # The launcher sets RLIMIT_CORE to 1 (launcher.process.mechanisms.seccomp): the one
    # value at which the kernel starts no core_pattern pipe helper, a program it runs as
    # root in the host's namespaces, fed the crashing workload's memory. The workload may
    # not change it (lowered to 0, the helper runs again).
    rules.deny("setrlimit", _args(_int_is(0, RLIMIT_CORE)))
    rules.deny("prlimit64", _args(_int_is(1, RLIMIT_CORE), (2, SCMP_CMP_NE, 0, 0)))
    denied.append(labels.BASELINE[4])
    # The page cache is the host's: a read root's files are cached for every user, so
    # dropping their pages (fadvise DONTNEED; madvise COLD or PAGEOUT of a mapping, which
    # the owner of a file may do, and a root caller's workload owns root's) slows the
    # host's programs and, timed against a probe of what is still cached, shows when
    # another user touched them. A filter cannot tell a read root's fd from a write
    # root's, so no eviction is allowed; the advice is an int, compared by its low word.
    rules.deny("fadvise64", _args(_int_is(3, POSIX_FADV_DONTNEED)))
    for advice in (MADV_COLD, MADV_PAGEOUT):
        rules.deny("madvise", _args(_int_is(2, advice)))
        rules.deny("process_madvise", _args(_int_is(3, advice)))
    denied.append(labels.BASELINE[5])
    # Setting a tty's line discipline (a --tty run's pty, or any tty it can open) makes the
    # kernel load that discipline's module when kernel.ldisc_autoload is on (modprobe,
    # run as root in the host's namespaces): a module of the host's kernel, and its code
    # reachable, for as long as the host runs. The request is an int.
    rules.deny("ioctl", _args(_int_is(1, TIOCSETD)))
    denied.append(labels.BASELINE[6])
    return denied


CLONE_VM, CLONE_SIGHAND, CLONE_VFORK, CLONE_THREAD = 0x100, 0x800, 0x4000, 0x10000
CLONE_PTRACE, CLONE_UNTRACED = 0x2000, 0x00800000
_THREAD_FORBIDDEN = (*NAMESPACE_FLAGS, CLONE_PTRACE, CLONE_UNTRACED, CLONE_VFORK)


def _add_thread_rules(rules: _Rules) -> list[str]:
    """Threads yes, processes no (AllowThreadsWithinBoundary).

    ``clone`` is allowed only when its flags hold CLONE_THREAD, CLONE_SIGHAND and CLONE_VM
    and none of the namespace flags, CLONE_PTRACE, CLONE_UNTRACED or CLONE_VFORK (a mask,
    not an exact set: Go makes threads without SETTLS/CHILD_CLEARTID). A fork-like clone
    (neither THREAD nor VM) and a vfork-like one (VM|VFORK, no THREAD), fork and vfork
    answer EPERM, so a program that tries falls back or reports an error; ``clone3``
    answers ENOSYS, so libc falls back to ``clone``. Every other clone kills the process
    (SIGSYS, seen in the report): no legitimate thread library makes one. The rules for
    different actions partition the flag space, so none overlaps another.
    """
    kill = SCMP_ACT_KILL_PROCESS
    thread, vm, vfork, sighand = CLONE_THREAD, CLONE_VM, CLONE_VFORK, CLONE_SIGHAND

    def when(mask: int, value: int) -> Any:
        return _args((0, SCMP_CMP_MASKED_EQ, mask, value))

    rules.deny("clone", when(thread | vm, 0))  # fork-like
    rules.deny("clone", when(thread | vm | vfork, vm | vfork))  # vfork-like
    rules.add("clone", kill, when(thread | vm | vfork, vm))  # shares memory, not a thread
    rules.add("clone", kill, when(thread | vm, thread))  # a thread without its memory
    rules.add("clone", kill, when(thread | vm | sighand, thread | vm))
    base = thread | vm | sighand
    for flag in _THREAD_FORBIDDEN:
        rules.add("clone", kill, when(base | flag, base | flag))
    for name in ("fork", "vfork"):
        rules.deny(name)
    rules.add("clone3", SCMP_ACT_ERRNO(errno.ENOSYS))
    return list(labels.THREADS_ONLY)


AF_INET, AF_INET6 = 2, 10
_FAMILY_BITS = 6  # families 0-63 are named one by one; a higher number sets a bit above


def _add_pair_rules(rules: _Rules) -> None:
    """socketpair only as an AF_UNIX stream or seqpacket pair: connected, they reach
    nothing outside; a datagram pair could sendmsg() to any pathname socket it can name
    (the address sits in memory, out of a filter's sight). The decision is on the type the
    kernel will really make: every other type is refused, SOCK_RAW included, which AF_UNIX
    silently turns into SOCK_DGRAM (flags such as SOCK_CLOEXEC are masked off)."""
    rules.deny("socketpair", _args((0, SCMP_CMP_NE, AF_UNIX, 0)))
    for sock_type in range(SOCK_TYPE_MASK + 1):
        if sock_type not in PAIR_TYPES_ALLOWED:
            rules.deny("socketpair", _args((1, SCMP_CMP_MASKED_EQ, SOCK_TYPE_MASK, sock_type)))


def _add_inet_only_rules(rules: _Rules) -> list[str]:
    """NetworkAllowList: sockets of the internet families only (the proxy is on lo).

    libseccomp cannot AND two comparisons on one argument, so the refused families are
    listed: each of 0-63 but AF_INET/AF_INET6 by its low 32 bits (masked, so high bits in
    the register cannot dodge it), and any number with a bit at 64 or above set.
    """
    for family in range(1 << _FAMILY_BITS):
        if family not in (AF_INET, AF_INET6):
            rules.deny("socket", _args((0, SCMP_CMP_MASKED_EQ, _LOW_WORD, family)))
    for bit in range(_FAMILY_BITS, 32):
        rules.deny("socket", _args((0, SCMP_CMP_MASKED_EQ, 1 << bit, 1 << bit)))
    _add_pair_rules(rules)
    return list(labels.INET_ONLY)


def _add_socket_rules(rules: _Rules) -> list[str]:
    """NetworkDenyAll: no socket reaches anything outside the workload's own pairs."""
    # No socket at all: an AF_UNIX socket could still connect() to a host daemon's
    # pathname socket (Landlock does not cover connect), which is a route out.
    rules.deny("socket")
    _add_pair_rules(rules)
    # Nothing can be connected, and nothing may be sent to an address.
    rules.deny("connect")
    rules.deny("sendto", _args((4, SCMP_CMP_NE, 0, 0)))
    return list(labels.SOCKETS)


def _add_no_own_filter(rules: _Rules) -> list[str]:
    """With denial evidence, no seccomp filter of the workload's own (module docstring)."""
    rules.deny("seccomp", _args(_int_is(0, SECCOMP_SET_MODE_FILTER)))
    # prctl's option is an int; its second argument an unsigned long, read whole.
    rules.deny(
        "prctl",
        _args(_int_is(0, PR_SET_SECCOMP), (1, SCMP_CMP_EQ, SECCOMP_MODE_FILTER, 0)),
    )
    return list(labels.NO_OWN_FILTER)


def _int_is(index: int, value: int) -> tuple[int, int, int, int]:
    """Argument ``index``, an ``int`` (or ``unsigned int``) to the kernel, equals ``value``.

    The kernel reads only such an argument's low 32 bits, and the filter sees the whole
    register: compared whole, ``(1 << 32) | F_SETLEASE`` matched no rule and the kernel
    took it for F_SETLEASE. So only the low word is compared."""
    return (index, SCMP_CMP_MASKED_EQ, _LOW_WORD, value)


def _args(*comparisons: tuple[int, int, int, int]) -> Any:
    """A ``struct scmp_arg_cmp[]`` from (argument index, operator, datum_a, datum_b)."""
    array = _ffi.new(f"struct scmp_arg_cmp[{len(comparisons)}]")
    for slot, (arg, op, datum_a, datum_b) in zip(array, comparisons, strict=True):
        slot.arg = arg
        slot.op = op
        slot.datum_a = datum_a
        slot.datum_b = datum_b
    return array


def _export(lib: Any, ctx: Any) -> bytes:
    fd = os.memfd_create("bvisor-seccomp", os.MFD_CLOEXEC)
    try:
        _check(lib.seccomp_export_bpf(ctx, fd), "export")
        return memfd.read_all(fd, os.fstat(fd).st_size)
    finally:
        os.close(fd)


def _mentions(bpf: bytes, constant: int) -> bool:
    return any(k == constant for _code, _jt, _jf, k in _BPF_INSN.iter_unpack(bpf))


_BPF_RET_K = 0x06  # BPF_RET | BPF_K


def _mentions_return(bpf: bytes, action: int) -> bool:
    """Does some instruction return ``action`` (its errno/data bits aside)?"""
    return any(
        code == _BPF_RET_K and k & 0xFFFF0000 == action
        for code, _jt, _jf, k in _BPF_INSN.iter_unpack(bpf)
    )
