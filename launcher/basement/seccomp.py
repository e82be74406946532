"""Build the seccomp denylist with libseccomp and export it as a ready BPF program.

libseccomp is used through cffi ABI mode (``dlopen("libseccomp.so.2")``; no header is
installed, so the few declarations used are written out in ``_build_seccomp.py`` from the
library's public API and precompiled into ``launcher._seccomp_abi``). The launcher
builds the filter *before* clone3 and exports the classic-BPF program bytes; the child
window only hands those bytes to ``seccomp(SECCOMP_SET_MODE_FILTER)``, so no library
code runs between clone and exec.

Filter shape: default action ALLOW; a denylist of syscalls answered with EPERM.

* deny_new_tasks: clone, clone3, fork, vfork -> EPERM (threads included: a denylist
  cannot tell CLONE_THREAD apart for clone3, whose flags live in memory). execve,
  execveat, write and exit_group are never on the list.
* deny_non_unix_sockets: socket() and socketpair() with a family other than AF_UNIX ->
  EPERM; io_uring_setup -> EPERM as well, because io_uring can create sockets without
  the socket() syscall.

Architectures: only the native ABI is in the filter and the "bad arch" action is
KILL_PROCESS, so a syscall made through another ABI (int 0x80 i386 entry on x86_64) kills
the process instead of bypassing the list. libseccomp's x86_64 filter also treats x32
syscall numbers (bit 30 set) as a foreign ABI; :func:`build_filter` verifies that by
checking the exported program contains that comparison on x86_64.
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import io
import os
import platform
import struct
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cffi import FFI

__all__ = ["SeccompError", "SeccompProgram", "build_filter", "seccomp_filter_available"]


SCMP_ACT_KILL_PROCESS = 0x80000000
SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_FLTATR_ACT_BADARCH = 2
SCMP_CMP_NE = 1
AF_UNIX = 1
_X32_SYSCALL_BIT = 0x40000000
_AUDIT_ARCH_X86_64 = 0xC000003E
_BPF_INSN = struct.Struct("=HBBI")


def SCMP_ACT_ERRNO(err: int) -> int:
    return 0x00050000 | (err & 0xFFFF)


NEW_TASK_SYSCALLS = ("clone", "clone3", "fork", "vfork")
SOCKET_SYSCALLS = ("socket", "socketpair")
NEVER_DENIED = ("execve", "execveat", "write", "exit_group")

_lib: Any = None
_ffi: Any = None


class SeccompError(OSError):
    """libseccomp is missing or refused to build/export the filter."""


@dataclass(frozen=True, slots=True)
class SeccompProgram:
    """A ready classic-BPF program plus a description for the launcher's note."""

    bpf: bytes
    denied: tuple[str, ...]
    arch: str

    @property
    def instructions(self) -> int:
        return len(self.bpf) // _BPF_INSN.size


def _abi_ffi() -> Any:
    """The precompiled declarations (``launcher._seccomp_abi``), generated if missing."""
    try:
        precompiled = importlib.import_module("launcher._seccomp_abi")
    except ImportError:
        from launcher.basement._build_seccomp import CDEF

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
    from launcher.basement._build_seccomp import ffibuilder

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


def _check(rc: int, what: str) -> None:
    if rc < 0:
        raise SeccompError(-rc, f"libseccomp {what}: {os.strerror(-rc)}")


def build_filter(*, deny_new_tasks: bool, deny_non_unix_sockets: bool) -> SeccompProgram:
    """Build, export and sanity-check the denylist program."""
    lib = _library()
    ctx = lib.seccomp_init(SCMP_ACT_ALLOW)
    if ctx == _ffi.NULL:
        raise SeccompError(errno.ENOMEM, "seccomp_init failed")
    denied: list[str] = []
    try:
        _check(lib.seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS), "badarch")
        eperm = SCMP_ACT_ERRNO(errno.EPERM)
        if deny_new_tasks:
            for name in NEW_TASK_SYSCALLS:
                _deny(lib, ctx, name, eperm, None)
                denied.append(name)
        if deny_non_unix_sockets:
            not_unix = _ffi.new("struct scmp_arg_cmp[1]")
            not_unix[0].arg = 0
            not_unix[0].op = SCMP_CMP_NE
            not_unix[0].datum_a = AF_UNIX
            not_unix[0].datum_b = 0
            for name in SOCKET_SYSCALLS:
                _deny(lib, ctx, name, eperm, not_unix)
                denied.append(f"{name}(family!=AF_UNIX)")
            _deny(lib, ctx, "io_uring_setup", eperm, None)
            denied.append("io_uring_setup")
        bpf = _export(lib, ctx)
    finally:
        lib.seccomp_release(ctx)
    arch = platform.machine()
    if int(lib.seccomp_arch_native()) == _AUDIT_ARCH_X86_64 and not _mentions(
        bpf, _X32_SYSCALL_BIT
    ):
        raise SeccompError(errno.EINVAL, "exported filter does not reject x32 syscall numbers")
    if len(bpf) == 0 or len(bpf) % _BPF_INSN.size or len(bpf) // _BPF_INSN.size > 4096:
        raise SeccompError(errno.EINVAL, f"exported filter has an invalid size {len(bpf)}")
    return SeccompProgram(bpf=bpf, denied=tuple(denied), arch=arch)


def _deny(lib: Any, ctx: Any, name: str, action: int, args: Any) -> None:
    number = lib.seccomp_syscall_resolve_name(name.encode("ascii"))
    if number < 0:
        # A syscall this ABI does not have (e.g. no vfork on some arches) needs no rule.
        return
    count = 0 if args is None else len(args)
    _check(
        lib.seccomp_rule_add_exact_array(ctx, action, number, count, args or _ffi.NULL),
        f"rule {name}",
    )


def _export(lib: Any, ctx: Any) -> bytes:
    fd = os.memfd_create("bvisor-seccomp", os.MFD_CLOEXEC)
    try:
        _check(lib.seccomp_export_bpf(ctx, fd), "export")
        size = os.fstat(fd).st_size
        chunks: list[bytes] = []
        offset = 0
        while offset < size:
            chunk = os.pread(fd, size - offset, offset)
            if not chunk:
                break
            chunks.append(chunk)
            offset += len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _mentions(bpf: bytes, constant: int) -> bool:
    return any(k == constant for _code, _jt, _jf, k in _BPF_INSN.iter_unpack(bpf))
