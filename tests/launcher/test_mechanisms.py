"""Each confinement mechanism, with an oracle reading kernel state from outside the workload."""

from __future__ import annotations

import os
import select
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import blake3
import pytest

from bvisor.contract import mechanisms as mech
from bvisor.launcher.host.launch import LaunchOptions, run_launcher
from tests.features import require_feature
from tests.launcher.conftest import (
    GatedRun,
    Leaf,
    build_plan,
    open_sentinel,
    proc_fds,
    proc_status_field,
)

SYSTEM_ROOTS = [p for p in ("/usr", "/bin", "/lib", "/lib64", "/etc") if os.path.isdir(p)]


def test_launcher_identity_is_the_hash_of_the_executed_file(launcher_path: str) -> None:
    plan, auth = build_plan("/bin/true", ["true"])
    obs = run_launcher(launcher_path, plan, auth.fds)
    auth.close()
    assert obs.exec_succeeded(), obs.notes
    expected = blake3.blake3(Path(launcher_path).read_bytes()).hexdigest()
    assert obs.launcher_identity == expected
    assert obs.launcher_entry_identity == expected
    assert obs.identity_matches()
    assert obs.launcher_code_identity is not None and len(obs.launcher_code_identity) == 64
    hashed = next(n for n in obs.notes if n.startswith("identity hashed:"))
    assert "bvisor.launcher.process.main" in hashed and "_child_window" in hashed


def test_exit_code_is_the_workloads(launcher_path: str) -> None:
    plan, auth = build_plan("/bin/sh", ["sh", "-c", "exit 7"])
    obs = run_launcher(launcher_path, plan, auth.fds)
    auth.close()
    assert obs.exec_succeeded()
    assert (obs.workload_exit_code, obs.workload_exit_signal) == (7, None)
    assert obs.launcher_exit == 0
    assert set(obs.workload_rusage) == {"utime_us", "stime_us", "maxrss_kb"}


def test_exit_signal_is_the_workloads(launcher_path: str) -> None:
    plan, auth = build_plan("/bin/sh", ["sh", "-c", "kill -TERM $$"])
    obs = run_launcher(launcher_path, plan, auth.fds)
    auth.close()
    assert obs.exec_succeeded()
    assert (obs.workload_exit_code, obs.workload_exit_signal) == (None, signal.SIGTERM)


def test_environment_is_exactly_the_table_and_only_stdio_is_inherited(launcher_path: str) -> None:
    table = (("PATH", "/usr/bin:/bin"), ("BVISOR_TEST", "a b=c"), ("EMPTY", ""))
    sentinel = open_sentinel()  # a leak the host did not mean to pass
    plan, auth = build_plan("/bin/sh", ["sh", "-c", 'echo ready; read x; echo "$x"'], envp=table)
    try:
        run = GatedRun(launcher_path, plan, auth, ready=b"ready\n")
        pid = run.wait_exec()
        environ = Path(f"/proc/{pid}/environ").read_bytes()
        fds = proc_fds(pid)
        obs = run.finish()
    finally:
        os.close(sentinel)
        auth.close()
    assert environ == b"".join(f"{k}={v}".encode() + b"\0" for k, v in table)
    assert fds == [0, 1, 2], f"sentinel fd {sentinel} or others leaked: {fds}"
    assert obs.captured_stdout == b"ready\ngo\n"
    assert "fds kept 0,1,2" in obs.notes


def test_user_namespace_maps_root_to_the_caller(launcher_path: str) -> None:
    require_feature("userns")
    plan, auth = build_plan("/bin/cat", ["cat"], userns=True)
    run = GatedRun(launcher_path, plan, auth)
    pid = run.wait_exec()
    uid_map = Path(f"/proc/{pid}/uid_map").read_text().split()
    gid_map = Path(f"/proc/{pid}/gid_map").read_text().split()
    setgroups = Path(f"/proc/{pid}/setgroups").read_text().strip()
    user_ns = os.readlink(f"/proc/{pid}/ns/user")
    obs = run.finish()
    auth.close()
    assert uid_map == ["0", str(os.getuid()), "1"]
    assert gid_map == ["0", str(os.getgid()), "1"]
    assert setgroups == "deny"
    assert user_ns != os.readlink("/proc/self/ns/user")
    assert obs.exec_succeeded()


NET_PROBE = """
import errno, socket, sys
port = int(sys.argv[1])
try:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
except OSError as exc:
    print("socket", errno.errorcode[exc.errno], flush=True)
else:
    s.settimeout(5)
    try:
        s.connect(("127.0.0.1", port))
        print("connect ok", flush=True)
    except OSError as exc:
        print("connect", errno.errorcode.get(exc.errno, exc.errno), flush=True)
try:
    socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    print("unix socket created", flush=True)
except OSError as exc:
    # No AF_UNIX socket either: it could connect() to a host daemon's pathname socket.
    print("unix", errno.errorcode[exc.errno], flush=True)
left, right = socket.socketpair()
left.sendall(b"x")
print("socketpair ok" if right.recv(1) == b"x" else "socketpair broken", flush=True)
sys.stdin.read()
"""


def _listener() -> socket.socket:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    listener.setblocking(False)
    return listener


def _accepted(listener: socket.socket) -> bool:
    try:
        conn, _ = listener.accept()
    except BlockingIOError:
        return False
    conn.close()
    return True


def network_deny_run(
    launcher_path: str, hooks: frozenset[str] = frozenset()
) -> tuple[list[str], int, bool, str]:
    """(interfaces in /proc/<pid>/net/dev, host-read Seccomp mode, host saw accept, stdout)."""
    listener = _listener()
    port = listener.getsockname()[1]
    seccomp = mech.Seccomp(deny_new_tasks=False, deny_sockets=True, threads_only=False)
    plan, auth = build_plan(
        sys.executable,
        [sys.executable, "-I", "-c", NET_PROBE, str(port)],
        userns=True,
        netns=True,
        seccomp=seccomp,
        hooks=hooks,
    )
    try:
        run = GatedRun(launcher_path, plan, auth)
        pid = run.wait_exec()
        mode = int(proc_status_field(pid, "Seccomp"))
        lines = Path(f"/proc/{pid}/net/dev").read_text().splitlines()[2:]
        interfaces = sorted(line.split(":", 1)[0].strip() for line in lines)
        obs = run.finish()
        accepted = _accepted(listener)
    finally:
        listener.close()
        auth.close()
    assert obs.exec_succeeded(), obs.notes
    return interfaces, mode, accepted, obs.captured_stdout.decode()


def test_network_deny_all_empty_netns_and_socket_rule(launcher_path: str) -> None:
    for feature in ("userns", "netns", "seccomp"):
        require_feature(feature)
    interfaces, mode, accepted, stdout = network_deny_run(launcher_path)
    assert interfaces == ["lo"]
    assert mode == 2
    assert not accepted, "the host saw a connection from the workload"
    assert "socket EPERM" in stdout
    assert "unix EPERM" in stdout
    assert "socketpair ok" in stdout


def test_landlock_two_roots_secret_and_writes(launcher_path: str, tmp_path: Path) -> None:
    require_feature("landlock")
    data, out, outside = tmp_path / "data", tmp_path / "out", tmp_path / "outside"
    for d in (data, out, outside):
        d.mkdir()
    (data / "in.txt").write_text("payload\n")
    secret = outside / "secret.txt"
    secret.write_text("TOPSECRET\n")
    script = (
        f'read line < {data}/in.txt; echo "$line" > {out}/copy.txt; '
        f'read s < {secret}; echo "$s" > {out}/secret_copy.txt; '
        f"echo leak > {outside}/leak.txt; "
        f"echo nope > {data}/written.txt; "
        "true"
    )
    roots = [(str(data), "read"), (str(out), "read_write")] + [(p, "read") for p in SYSTEM_ROOTS]
    plan, auth = build_plan("/bin/sh", ["sh", "-c", script], landlock=roots)
    obs = run_launcher(launcher_path, plan, auth.fds)
    auth.close()
    assert obs.exec_succeeded(), obs.notes
    assert any(n.startswith("landlock abi=") for n in obs.notes)
    assert (out / "copy.txt").read_text() == "payload\n", (
        "a write inside the writable root must land"
    )
    secret_copy = out / "secret_copy.txt"
    assert not secret_copy.exists() or "TOPSECRET" not in secret_copy.read_text()
    assert not (outside / "leak.txt").exists(), "a write outside the roots landed"
    assert not (data / "written.txt").exists(), "a write into a read-only root landed"


def test_cgroup_v2_leaf_child_is_born_inside(launcher_path: str, v2_leaf: Leaf) -> None:
    plan, auth = build_plan("/bin/cat", ["cat"], cgroup_v2=v2_leaf.fd)
    run = GatedRun(launcher_path, plan, auth)
    pid = run.wait_exec()
    procs = v2_leaf.procs()
    proc_cgroup = Path(f"/proc/{pid}/cgroup").read_text()
    obs = run.finish()
    auth.close()
    assert pid in procs
    assert f"0::/{v2_leaf.path.name}" in proc_cgroup
    assert any(n.startswith("cgroup placed v2") for n in obs.notes)


def test_cgroup_v1_pids_leaf_placement(launcher_path: str, v1_pids_leaf: Leaf) -> None:
    plan, auth = build_plan("/bin/cat", ["cat"], cgroup_v1=[v1_pids_leaf.fd])
    run = GatedRun(launcher_path, plan, auth)
    pid = run.wait_exec()
    procs = v1_pids_leaf.procs()
    obs = run.finish()
    auth.close()
    assert pid in procs
    assert obs.exec_succeeded()


def test_large_output_is_capped_without_deadlock(launcher_path: str) -> None:
    size = 40 * 1024 * 1024
    plan, auth = build_plan("/usr/bin/head", ["head", "-c", str(size), "/dev/zero"])
    seen = bytearray(0)
    counter = [0]

    def on_stdout(chunk: bytes) -> None:
        counter[0] += len(chunk)

    obs = run_launcher(
        launcher_path,
        plan,
        auth.fds,
        options=LaunchOptions(stream_cap=16 * 1024 * 1024, on_stdout=on_stdout),
    )
    auth.close()
    assert obs.exec_succeeded()
    assert obs.workload_exit_code == 0
    assert obs.stdout_total == size == counter[0]
    assert len(obs.captured_stdout) == 16 * 1024 * 1024
    assert obs.stdout_truncated and not obs.stderr_truncated
    assert not seen


def test_deadline_kills_the_run(launcher_path: str) -> None:
    import time

    plan, auth = build_plan("/bin/sleep", ["sleep", "1000"])
    obs = run_launcher(
        launcher_path, plan, auth.fds, options=LaunchOptions(deadline=time.monotonic() + 0.3)
    )
    auth.close()
    assert obs.deadline_hit
    assert obs.launcher_exit == -signal.SIGKILL


def test_leftover_descendants_do_not_hold_the_host(launcher_path: str) -> None:
    plan, auth = build_plan("/bin/sh", ["sh", "-c", "sleep 1000 & echo $!"])
    obs = run_launcher(launcher_path, plan, auth.fds)
    auth.close()
    assert obs.exec_succeeded() and obs.workload_exit_code == 0
    straggler = int(obs.captured_stdout.decode().strip())
    try:
        pidfd = os.pidfd_open(straggler)
    except ProcessLookupError:
        return  # already gone and reaped
    try:
        # A SIGKILLed process may still show as running until the signal is delivered;
        # its pidfd becomes readable when it has exited. The bound only avoids a hang.
        ready, _, _ = select.select([pidfd], [], [], 30)
    finally:
        os.close(pidfd)
    assert ready, "the background sleep survived the run"


ARCH_PROBE = r"""
#include <stdio.h>
int main(int argc, char **argv) {
    long ret;
    if (argv[1][0] == 'i') {
        /* i386 getpid (20) through the int 0x80 entry */
        __asm__ volatile ("int $0x80" : "=a"(ret) : "a"(20L) : "memory");
    } else {
        /* x32 getpid (39 | __X32_SYSCALL_BIT) through the syscall instruction */
        __asm__ volatile ("syscall" : "=a"(ret) : "a"(39L | 0x40000000L) : "rcx", "r11", "memory");
    }
    printf("survived %ld\n", ret);
    return 0;
}
"""


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="x86_64 foreign-ABI check")
@pytest.mark.parametrize("abi", ["i386", "x32"])
def test_seccomp_foreign_abi_is_killed(launcher_path: str, tmp_path: Path, abi: str) -> None:
    require_feature("seccomp")
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("LOUD SKIP: no C compiler to build the foreign-ABI probe")
    source = tmp_path / "probe.c"
    source.write_text(ARCH_PROBE)
    binary = tmp_path / "probe"
    subprocess.run([cc, "-O0", "-o", str(binary), str(source)], check=True)
    plan, auth = build_plan(str(binary), ["probe", abi], seccomp=mech.Seccomp(True, False, False))
    obs = run_launcher(launcher_path, plan, auth.fds)
    auth.close()
    assert obs.exec_succeeded()
    assert obs.workload_exit_signal == signal.SIGSYS, (obs.workload_exit_code, obs.captured_stdout)
    assert b"survived" not in obs.captured_stdout


def test_without_own_process_group_the_deadline_kills_launcher_and_workload(
    launcher_path: str,
) -> None:
    import time

    plan, auth = build_plan("/bin/sleep", ["sleep", "1000"])
    pids: list[int] = []
    options = LaunchOptions(
        # Long enough for the workload to start even on a loaded machine; sleep 1000 ends
        # only by the deadline either way.
        deadline=time.monotonic() + 2.0,
        own_process_group=False,
        on_control_line=lambda line: pids.extend(
            [int(line.split("=")[1])] if line.startswith("# workload pid=") else []
        ),
    )
    obs = run_launcher(launcher_path, plan, auth.fds, options=options)
    auth.close()
    assert obs.deadline_hit and obs.launcher_exit == -signal.SIGKILL
    assert os.getpgid(0) == os.getpgrp()  # the host itself was not signalled
    assert pids, f"the workload never started before the deadline: {obs.notes}"
    try:
        pidfd = os.pidfd_open(pids[0])
    except ProcessLookupError:
        return
    try:
        ready, _, _ = select.select([pidfd], [], [], 30)  # PDEATHSIG delivery, bounded
    finally:
        os.close(pidfd)
    assert ready, "the workload outlived its launcher"


def test_concurrent_launches_from_threads_keep_their_own_streams(launcher_path: str) -> None:
    import threading

    results: dict[int, bytes] = {}

    def one(index: int) -> None:
        plan, auth = build_plan("/bin/sh", ["sh", "-c", f"echo run-{index}; exit {index}"])
        obs = run_launcher(launcher_path, plan, auth.fds)
        auth.close()
        assert obs.workload_exit_code == index
        results[index] = obs.captured_stdout

    threads = [threading.Thread(target=one, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {i: f"run-{i}\n".encode() for i in range(6)}


def test_the_workload_gets_a_session_keyring_of_its_own(launcher_path: str) -> None:
    """No seccomp here: only the child window's fresh session keyring keeps the key safe.

    The host's session keyring is inherited across clone and exec; a process in it
    possesses the host's keys and may update them. Oracle: the key's payload, read by the
    host after the run.
    """
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    sys_add_key, sys_keyctl = 248, 250
    join, update, revoke, read = 1, 2, 3, 11
    assert libc.syscall(sys_keyctl, join, b"bvisor-launcher-test") > 0
    key = libc.syscall(sys_add_key, b"user", b"bvisor-probe", b"HOST-VALUE", 10, -3)
    assert key > 0, ctypes.get_errno()
    code = (
        "import ctypes\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        f"print('update', libc.syscall({sys_keyctl}, {update}, {key}, b'PWNED', 5))\n"
    )
    try:
        plan, auth = build_plan("/usr/bin/python3", ["python3", "-c", code])
        obs = run_launcher(launcher_path, plan, auth.fds)
        auth.close()
        buffer = ctypes.create_string_buffer(64)
        length = libc.syscall(sys_keyctl, read, key, buffer, 64)
    finally:
        libc.syscall(sys_keyctl, revoke, key)
    assert obs.exec_succeeded(), obs.notes
    assert b"update -1" in obs.captured_stdout, obs.captured_stdout
    assert buffer.raw[:length] == b"HOST-VALUE", "the workload rewrote the host's key"


def test_cgroup_v1_join_moves_the_whole_child_before_it_runs(
    launcher_path: str, v1_pids_leaf: Leaf
) -> None:
    """The child joins its v1 leaf itself (the calling thread, written to ``tasks``); the
    kernel's view from outside: the workload is in the leaf, as one thread, and what it
    forks is born there."""
    plan, auth = build_plan(
        "/bin/sh", ["sh", "-c", "sleep 30 & echo ready; wait"], cgroup_v1=[v1_pids_leaf.fd]
    )
    run = GatedRun(launcher_path, plan, auth, ready=b"ready\n")
    pid = run.wait_exec()
    procs = v1_pids_leaf.procs()
    threads = os.listdir(f"/proc/{pid}/task")
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    obs = run.finish()
    auth.close()
    assert pid in procs
    assert threads == [str(pid)]
    assert children and all(int(child) in procs for child in children), (children, procs)
    assert any(n.startswith("cgroup placed v1") for n in obs.notes)


def test_a_refused_cgroup_v1_join_faults_before_anything_runs(
    launcher_path: str, v1_pids_leaf: Leaf, v1_refusing_leaf: Leaf, tmp_path: Path
) -> None:
    """The join fails in the child (the kernel says ENOSPC): the launch faults naming the
    join, the workload never ran (its marker file is absent) and no leaf holds it."""
    marker = tmp_path / "ran"
    plan, auth = build_plan(
        "/bin/sh",
        ["sh", "-c", f"touch {marker}"],
        cgroup_v1=[v1_pids_leaf.fd, v1_refusing_leaf.fd],
    )
    obs = run_launcher(launcher_path, plan, auth.fds)
    auth.close()
    assert obs.terminal == "SetupFaulted", (obs.terminal, obs.notes)
    assert any("join cgroup v1 leaf 1" in n and "ENOSPC" in n for n in obs.notes), obs.notes
    assert not obs.exec_succeeded()
    assert not marker.exists()
    assert v1_refusing_leaf.procs() == []
