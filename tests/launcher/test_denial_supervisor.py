"""The denial route fails closed: with no supervisor, a notified call fails and never runs.

bvisor's own filter (built with ``notify_denials``) is installed with a listener in a
helper process, which hands the listener over exactly as the child window does; the test
then closes it — the supervisor is dead — and lets the helper try denied calls. Oracles
from outside the helper: the errno each call answered, the helper's UTS namespace as the
host sees it in ``/proc`` (an ``unshare`` that ran would have changed it), its open
sockets, and whether it could take the notification route over with a listener of its own
(the hole the filter's no-own-filter rule closes). Then a supervisor that answers: the
same calls answer EPERM, and the answer is never CONTINUE.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
from pathlib import Path

import pytest

from bvisor.launcher.basement import seccomp, window
from tests.features import require_feature

PYTHON = "/usr/bin/python3"

HELPER = r"""
import ctypes, errno, json, os, socket, struct, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
bpf = sys.stdin.buffer.read()
sock = socket.socket(fileno=int(sys.argv[1]))
class Prog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]
prog = Prog(len(bpf) // 8, bpf)
assert libc.prctl(38, 1, 0, 0, 0) == 0  # PR_SET_NO_NEW_PRIVS
listener = libc.syscall(317, 1, 8, ctypes.byref(prog))  # SET_MODE_FILTER, NEW_LISTENER
assert listener >= 0, ctypes.get_errno()
socket.send_fds(sock, [b"L"], [listener])
os.close(listener)
assert sock.recv(1) == b"G"
def answer(rc):
    return "RAN" if rc >= 0 else errno.errorcode.get(ctypes.get_errno(), "?")
results = {
    "socket": answer(libc.socket(2, 1, 0)),            # AF_INET stream
    "unshare": answer(libc.unshare(0x04000000)),        # CLONE_NEWUTS
    "mount": answer(libc.mount(b"none", b"/mnt", b"tmpfs", 0, None)),
    # Its own filter with a listener: it could then answer CONTINUE to itself.
    "own_listener": answer(libc.syscall(317, 1, 8, ctypes.byref(prog))),
}
sock.sendall(json.dumps(results).encode())
sock.recv(1)  # held open until the host has looked
"""

CALLS = ("socket", "unshare", "mount", "own_listener")


def _helper(tmp_path: Path) -> tuple[subprocess.Popen[bytes], socket.socket, int]:
    require_feature("seccomp")
    built = seccomp.build_filter(deny_new_tasks=False, deny_sockets=True, notify_denials=True)
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    script = tmp_path / "helper.py"
    script.write_text(HELPER)
    proc = subprocess.Popen(
        [PYTHON, str(script), str(theirs.fileno())],
        stdin=subprocess.PIPE,
        pass_fds=(theirs.fileno(),),
    )
    theirs.close()
    assert proc.stdin is not None
    proc.stdin.write(built.bpf)
    proc.stdin.close()
    _, fds, _, _ = socket.recv_fds(ours, 1, 1)
    assert len(fds) == 1, "the helper handed its listener over"
    return proc, ours, fds[0]


def _sockets_of(pid: int) -> int:
    fd_dir = Path(f"/proc/{pid}/fd")
    return sum(1 for fd in fd_dir.iterdir() if os.readlink(fd).startswith("socket:"))


def _finish(proc: subprocess.Popen[bytes], ours: socket.socket) -> None:
    ours.send(b"E")
    ours.close()
    assert proc.wait(timeout=30) == 0


def test_with_the_supervisor_gone_every_notified_call_fails_and_none_runs(
    tmp_path: Path,
) -> None:
    proc, ours, listener = _helper(tmp_path)
    os.close(listener)  # the supervisor dies before the workload tries anything
    ours.send(b"G")
    results = json.loads(ours.recv(4096))
    try:
        assert results == dict.fromkeys(CALLS, "ENOSYS"), results
        own_uts = os.readlink("/proc/self/ns/uts")
        assert os.readlink(f"/proc/{proc.pid}/ns/uts") == own_uts, "an unshare ran"
        assert _sockets_of(proc.pid) == 1, "only the socket pair: no AF_INET socket was made"
    finally:
        _finish(proc, ours)


def test_a_live_supervisor_answers_eperm_and_never_continue(tmp_path: Path) -> None:
    cw = window.load()
    proc, ours, listener = _helper(tmp_path)
    ours.send(b"G")
    notice = cw.ffi.new("struct bv_notice *")
    answered = []
    try:
        # Refused before any ioctl: an answer of 0 would be "success", and the supervisor
        # has no way to say CONTINUE at all.
        assert cw.lib.bv_notify_send(listener, 1, 0) == errno.EINVAL
        for _ in CALLS:
            assert cw.lib.bv_notify_recv(listener, notice) == 0
            assert notice.pid == proc.pid
            answered.append(int(notice.nr))
            assert cw.lib.bv_notify_send(listener, notice.id, errno.EPERM) == 0
        results = json.loads(ours.recv(4096))
        assert results == dict.fromkeys(CALLS, "EPERM"), results
        names = dict(
            (number, name)
            for number, name, _ in seccomp.build_filter(
                deny_new_tasks=False, deny_sockets=True, notify_denials=True
            ).notified
        )
        assert [names[n] for n in answered] == ["socket", "unshare", "mount", "seccomp"]
        assert os.readlink(f"/proc/{proc.pid}/ns/uts") == os.readlink("/proc/self/ns/uts")
    finally:
        os.close(listener)
        _finish(proc, ours)


@pytest.mark.parametrize("notify", [False, True])
def test_only_a_notifying_filter_notifies(notify: bool) -> None:
    require_feature("seccomp")
    built = seccomp.build_filter(
        deny_new_tasks=False, deny_sockets=True, threads_only=True, notify_denials=notify
    )
    names = {name for _, name, _ in built.notified}
    if not notify:
        assert names == set()
        return
    assert {"socket", "mount", "clone", "fork", "keyctl", "seccomp", "prctl"} <= names
    # The ENOSYS answers send libc to an older call and deny nothing: not notified.
    assert "clone3" not in names and "openat2" not in names
    # Under deny_new_tasks clone3 is refused like fork, and so notified.
    strict = seccomp.build_filter(deny_new_tasks=True, deny_sockets=False, notify_denials=True)
    assert "clone3" in {name for _, name, _ in strict.notified}
