"""A libseccomp older than the kernel does not know its newest syscalls by name, and a
rule for a name it does not know was left out of the filter as if the kernel lacked the
syscall: with libseccomp 2.5.3 (Ubuntu 22.04) on a 6.8 kernel, ``fchmodat2`` could set the
setuid bit that ``fchmodat`` may not. The oracle is the kernel: the built program is
installed in a child, and the file's mode is read afterwards by the parent."""

from __future__ import annotations

import ctypes
import os
import stat
import struct
from pathlib import Path
from typing import Any

import pytest

from bvisor.launcher.basement import seccomp
from tests.features import require_feature

pytestmark = pytest.mark.skipif(
    os.uname().machine != "x86_64", reason="the numbers looked up are x86_64's"
)


def _older_library(monkeypatch: pytest.MonkeyPatch, unknown: frozenset[bytes]) -> None:
    """This process's libseccomp, but one whose name table lacks ``unknown``."""
    real = seccomp._library()

    class Older:
        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

        def seccomp_syscall_resolve_name(self, name: bytes) -> int:
            return -1 if name in unknown else int(real.seccomp_syscall_resolve_name(name))

    monkeypatch.setattr(seccomp, "_lib", Older())


class _Fprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_void_p))


def _setuid_bit_set_under(program: bytes, target: Path) -> bool:
    """Does ``fchmodat2(target, 04755)`` in a child under ``program`` leave the bit set?"""
    pid = os.fork()
    if pid == 0:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.syscall.restype = ctypes.c_long
            code = ctypes.create_string_buffer(program, len(program))
            fprog = _Fprog(len(program) // 8, ctypes.addressof(code))
            if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
                os._exit(2)
            if libc.syscall(ctypes.c_long(317), ctypes.c_long(1), ctypes.c_long(0),
                            ctypes.byref(fprog)) != 0:  # seccomp(SET_MODE_FILTER)  # fmt: skip
                os._exit(3)
            libc.syscall(ctypes.c_long(452), ctypes.c_long(-100), bytes(target),
                         ctypes.c_long(0o4755), ctypes.c_long(0))  # fchmodat2  # fmt: skip
            os._exit(0)
        except BaseException:
            os._exit(4)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, status
    return bool(target.stat().st_mode & stat.S_ISUID)


def test_a_syscall_the_library_does_not_know_is_still_denied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_feature("seccomp")
    target = tmp_path / "file"
    target.write_bytes(b"")
    target.chmod(0o755)
    allow_all = struct.pack("=HBBI", 0x06, 0, 0, seccomp.SCMP_ACT_ALLOW)  # BPF_RET|BPF_K
    assert _setuid_bit_set_under(allow_all, target)  # the oracle can go red: the owner may
    target.chmod(0o755)
    _older_library(monkeypatch, frozenset({b"fchmodat2", b"open_tree_attr"}))
    built = seccomp._build(False, False, False, False, False)
    assert not _setuid_bit_set_under(built.bpf, target)
    assert stat.S_IMODE(target.stat().st_mode) == 0o755


def test_a_name_neither_the_library_nor_the_table_knows_fails_the_build(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    require_feature("seccomp")
    _older_library(monkeypatch, frozenset({b"mount"}))
    with pytest.raises(seccomp.SeccompError, match="does not know the syscall mount"):
        seccomp._build(False, False, False, False, False)
