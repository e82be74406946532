"""Routes out of the boundary found by attacking it from inside, each shut and kept shut.

Every test runs a real attack as the workload and judges it from outside: the host's
listener, the host's keyring, a host process's limits in /proc, file modes on disk, the
run leaf's pids.max. Each of these attacks worked before the seccomp baseline and the
read-only mount view existed, so each oracle is known to be able to go red.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import re
import shutil
import socket
import stat
import struct
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from bvisor.contract import (
    BoundarySpec,
    Budget,
    BudgetRequirements,
    CaptureStreams,
    ChildSpawn,
    Environment,
    EnvPolicy,
    EvidenceRequirements,
    Filesystem,
    FsAccess,
    LaunchWorkload,
    MinGuarantee,
    Network,
    NetworkDenyAll,
    Outcome,
    ProcessWorkload,
    SpawnPolicy,
    StdStreams,
)
from bvisor.contract.evidence import EvidenceClaim
from bvisor.contract.report import SealedReport
from bvisor.front.api import run_confined
from bvisor.front.defaults import default_spec
from tests.e2e.helpers import (
    descendants_spec,
    find_pids_with,
    unique_marker,
    wait_for,
    with_budgets,
)
from tests.features import require_feature

PYTHON = "/usr/bin/python3"
T = TypeVar("T")


def _attack(work: Path, code: str, spec: BoundarySpec | None = None) -> SealedReport:
    """Run ``code`` under the default spec (cwd ``work``) unless another spec is given."""
    chosen = spec or default_spec([PYTHON, "-c", code], cwd=str(work))
    return run_confined(chosen, ledger=work.parent / "ledger")


def _run_hooked(
    spec: BoundarySpec, hooks: frozenset[str], on_stdout: Callable[[bytes], None]
) -> SealedReport:
    """Run ``spec`` on a backend whose launcher skips the mechanisms ``hooks`` name (the
    planted lie; an empty set is the real boundary), not recorded."""
    from bvisor.launcher.host.backend import LinuxBackend
    from bvisor.launcher.host.locate import default_launcher_path
    from bvisor.launcher.host.runner import BoundaryRunner
    from bvisor.planner.planning import BoundaryPlanner
    from bvisor.planner.registry import BackendRegistry

    backend = LinuxBackend.dangerous_with_test_hooks(default_launcher_path(), hooks)
    registry = BackendRegistry()
    registry.register(backend)
    plan = BoundaryPlanner(registry).plan(spec, "linux")
    return BoundaryRunner(registry).run(plan, on_stdout=on_stdout)


def _look_when_ready(
    spec: BoundarySpec, hooks: frozenset[str], marker: str, look: Callable[[int], T]
) -> tuple[list[T], str]:
    """Run ``spec`` (hooked as :func:`_run_hooked`); once the workload prints ``READY``,
    ``look`` at each of its python3 processes (found by ``marker`` in their cmdline) from
    outside. What each look saw, and the workload's output."""
    out = bytearray()
    seen: list[T] = []
    looked = False

    def on_stdout(chunk: bytes) -> None:
        nonlocal looked
        out.extend(chunk)
        if looked or b"READY" not in out:
            return
        looked = True
        seen.extend(look(pid) for pid in find_pids_with(marker, program="python3"))

    report = _run_hooked(spec, hooks, on_stdout)
    assert report.body.outcome is Outcome.COMPLETED, report.body.observed
    assert looked, out.decode()
    return seen, out.decode()


def _with_read_root(work: Path, code: str, readable: Path, *args: str) -> BoundarySpec:
    """The default spec around ``code`` (given ``args``), plus ``readable`` as a read-only
    root."""
    base = default_spec([PYTHON, "-c", code, *args], cwd=str(work))
    return BoundarySpec(
        workload=base.workload,
        capabilities=(*base.capabilities, Filesystem(access=FsAccess.READ, roots=(str(readable),))),
        controls=base.controls,
        budgets=base.budgets,
        evidence=base.evidence,
    )


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The run's writable directory, and the host's cwd (which the workload inherits)."""
    path = tmp_path / "work"
    path.mkdir()
    monkeypatch.chdir(path)
    return path


def test_a_datagram_pair_cannot_reach_a_host_pathname_socket(work: Path, tmp_path: Path) -> None:
    """network deny_all: an AF_UNIX datagram socketpair could sendto() any host socket."""
    require_feature("seccomp")
    path = tmp_path / "dg.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(path))
    listener.settimeout(0.5)
    code = (
        "import socket\n"
        "for kind in (socket.SOCK_DGRAM, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC):\n"
        "    try:\n"
        "        a, b = socket.socketpair(socket.AF_UNIX, kind)\n"
        f"        a.sendto(b'ESCAPED', {str(path)!r})\n"
        "    except OSError as e:\n"
        "        print('refused', e.errno)\n"
        "a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)\n"
        "a.send(b'ok'); print('stream pair', b.recv(2).decode())\n"
    )
    try:
        report = _attack(work, code)
        try:
            received: bytes | None = listener.recv(64)
        except TimeoutError:
            received = None
    finally:
        listener.close()
    assert report.body.outcome is Outcome.COMPLETED, report.body.observed
    assert received is None, f"the host socket received {received!r} from the workload"


_PAIR_ATTACK = (
    "import socket\n"
    "kinds = (socket.SOCK_DGRAM, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC,\n"
    "         socket.SOCK_RAW, socket.SOCK_RAW | socket.SOCK_NONBLOCK)\n"
    "for kind in kinds:\n"
    "    try:\n"
    "        a, b = socket.socketpair(socket.AF_UNIX, kind)\n"
    "    except OSError as e:\n"
    "        print('refused', kind, e.errno)\n"
    "        continue\n"
    "    sends = (lambda: a.sendto(b'ESCAPED', PATH),\n"
    "             lambda: a.sendmsg([b'ESCAPED'], [], 0, PATH))\n"
    "    for send in sends:\n"
    "        try:\n"
    "            send()\n"
    "            print('sent', kind)\n"
    "        except OSError as e:\n"
    "            print('send refused', kind, e.errno)\n"
)


def _pair_attack(work: Path, hooks: frozenset[str]) -> tuple[bytes | None, str]:
    """A host datagram socket *inside* the write root (so the private root does not hide
    it): only the socket rule stands between the workload and it."""
    path = work / "dg.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(path))
    listener.settimeout(0.5)
    code = f"PATH = {str(path)!r}\n" + _PAIR_ATTACK
    out = bytearray()
    try:
        _run_hooked(default_spec([PYTHON, "-c", code], cwd=str(work)), hooks, out.extend)
        try:
            received: bytes | None = listener.recv(64)
        except TimeoutError:
            received = None
    finally:
        listener.close()
    return received, out.decode()


def test_no_socket_type_the_kernel_makes_a_datagram_reaches_a_host_socket(work: Path) -> None:
    """AF_UNIX turns SOCK_RAW into SOCK_DGRAM: the rule must decide on that real type,
    and an address in sendmsg (which no filter can read) must find no datagram socket."""
    require_feature("seccomp")
    received, out = _pair_attack(work, frozenset())
    assert received is None, f"the host socket received {received!r}: {out}"
    assert out.count("refused") == 4 and "sent" not in out, out


def test_skipping_seccomp_lets_the_datagram_out(work: Path) -> None:
    require_feature("seccomp")
    received, out = _pair_attack(work, frozenset({"skip_seccomp"}))
    assert received == b"ESCAPED", out


# x86_64 syscall numbers and keyctl operations (linux/keyctl.h).
SYS_ADD_KEY, SYS_KEYCTL = 248, 250
KEYCTL_JOIN_SESSION_KEYRING, KEYCTL_UPDATE, KEYCTL_REVOKE, KEYCTL_READ = 1, 2, 3, 11
KEY_SPEC_SESSION_KEYRING = -3


def _syscall() -> Callable[..., int]:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return libc.syscall  # type: ignore[no-any-return]


def test_the_callers_keyring_is_out_of_reach(work: Path) -> None:
    """The session keyring is inherited across exec; the workload must not update its keys."""
    require_feature("seccomp")
    call = _syscall()
    assert call(SYS_KEYCTL, KEYCTL_JOIN_SESSION_KEYRING, b"bvisor-test-keys") > 0
    key = call(SYS_ADD_KEY, b"user", b"bvisor-probe", b"HOST-VALUE", 10, KEY_SPEC_SESSION_KEYRING)
    assert key > 0, ctypes.get_errno()
    code = (
        "import ctypes\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        f"rc = libc.syscall({SYS_KEYCTL}, {KEYCTL_UPDATE}, {key}, b'PWNED', 5)\n"
        "print('update', rc, ctypes.get_errno())\n"
    )
    try:
        report = _attack(work, code)
        buffer = ctypes.create_string_buffer(64)
        length = call(SYS_KEYCTL, KEYCTL_READ, key, buffer, 64)
    finally:
        call(SYS_KEYCTL, KEYCTL_REVOKE, key)
    assert report.body.outcome is Outcome.COMPLETED, report.body.observed
    assert buffer.raw[:length] == b"HOST-VALUE", "the workload rewrote the caller's key"


_HOST_KERNEL_BY_NAME = ("keys", "key-users", "kallsyms")


def _host_kernel_files() -> set[str]:
    """The top-level files of a procfs that show the host's kernel, not the namespace:
    every regular file "others" may not read (the global root user's alone), and the ones
    named (the caller's keys, the kernel's symbols) — as this kernel has them."""
    hidden = set()
    for name in os.listdir("/proc"):
        if name[0].isdigit():
            continue
        try:
            mode = os.stat(f"/proc/{name}", follow_symlinks=False).st_mode
        except OSError:
            continue
        if stat.S_ISREG(mode) and (not mode & stat.S_IROTH or name in _HOST_KERNEL_BY_NAME):
            hidden.add(name)
    return hidden


_READ_PROC = (
    "import os, sys, time\n"
    "for name in sys.argv[1].split(','):\n"
    "    try:\n"
    "        with open('/proc/' + name, 'rb') as f:\n"
    "            print(name, len(f.read(1 << 20)))\n"
    "    except OSError as exc:\n"
    "        print(name, 'refused', exc.errno)\n"
    "print('READY', flush=True)\n"
    "time.sleep(3)\n"
)


def _proc_covers(work: Path, hooks: frozenset[str]) -> tuple[set[str], dict[str, str], str]:
    """Let the workload read every host-kernel file of its /proc; (the /proc files the
    kernel shows covered by a read-only mount in the workload's mount table, read from the
    host; what the workload read of each; its output)."""
    marker = unique_marker("PROCFILES")
    code = [PYTHON, "-c", _READ_PROC, ",".join(sorted(_host_kernel_files())), marker]

    def read_only_proc_mounts(pid: int) -> set[str]:
        fields = (line.split() for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines())
        return {
            point.removeprefix("/proc/")
            for point, options in ((f[4], f[5].split(",")) for f in fields)
            if re.fullmatch(r"/proc/[^/]+", point) and "ro" in options
        }

    seen, out = _look_when_ready(
        default_spec(code, cwd=str(work)), hooks, marker, read_only_proc_mounts
    )
    read = dict(line.split(" ", 1) for line in out.splitlines() if " " in line)
    return set().union(*seen), read, out


def test_the_hosts_kernel_state_in_proc_is_covered(work: Path) -> None:
    """A fresh procfs still shows the host's kernel: its root-only files (slabinfo,
    timer_list with the host's timers, vmallocinfo, pagetypeinfo, kpage*) were readable to
    a root caller's workload, whose uid maps to 0; kallsyms shows addresses as the host's
    sysctls allow. Oracle: the workload's mount table read from the host (a cover on each,
    for any caller), and, for a root caller, that nothing of them could be read."""
    require_feature("userns")
    covered, read, out = _proc_covers(work, frozenset())
    assert _host_kernel_files() - {"keys", "key-users"}, "this kernel shows nothing to cover"
    assert _host_kernel_files() <= covered, (covered, out)
    assert set(read.values()) == {"0"}, out  # each read whole, and empty


def test_without_the_private_root_the_hosts_kernel_state_is_in_reach(work: Path) -> None:
    require_feature("userns")
    covered, read, out = _proc_covers(work, frozenset({"skip_rootfs"}))
    assert not _host_kernel_files() & covered, (covered, out)
    if os.geteuid() == 0 and "slabinfo" in read:  # root-only: no other caller reads it
        assert int(read["slabinfo"]) > 0, out


KEY_SPEC_USER_KEYRING, KEYCTL_UNLINK = -4, 9


def _proc_keys_seen(work: Path, hooks: frozenset[str]) -> tuple[str, str]:
    """Add a key with a unique description to the caller's user keyring, let the workload
    read ``/proc/keys`` and ``/proc/key-users``; (the description, what it printed)."""
    call = _syscall()
    description = unique_marker("prod-token-for").encode()
    key = call(SYS_ADD_KEY, b"user", description, b"V", 1, KEY_SPEC_USER_KEYRING)
    assert key > 0, ctypes.get_errno()
    code = (
        "import sys\n"
        "for name in ('/proc/keys', '/proc/key-users'):\n"
        "    sys.stdout.write(open(name).read())\n"
    )
    out = bytearray()
    try:
        report = _run_hooked(default_spec([PYTHON, "-c", code], cwd=str(work)), hooks, out.extend)
    finally:
        call(SYS_KEYCTL, KEYCTL_UNLINK, key, KEY_SPEC_USER_KEYRING)
    assert report.body.outcome is Outcome.COMPLETED, report.body.observed
    return description.decode(), out.decode()


def test_the_callers_keys_are_not_listed_in_proc(work: Path) -> None:
    """keyctl is refused, but a fresh procfs still listed every key the caller's user may
    view — serial, permissions and description (``aws-prod-token-for-alice``) — and its
    key quotas. Both files are covered by an empty one in the private root."""
    require_feature("userns")
    description, out = _proc_keys_seen(work, frozenset())
    assert description not in out, out
    assert out == "", out


def test_without_the_private_root_the_keys_are_listed(work: Path) -> None:
    require_feature("userns")
    description, out = _proc_keys_seen(work, frozenset({"skip_rootfs"}))
    assert description in out, out


def _init_cmdline(work: Path) -> tuple[bytes, str]:
    """The run's init as the host sees it (the workload's parent), read while it runs."""
    marker = unique_marker("INITARGS")
    code = [
        PYTHON,
        "-c",
        "print(open('/proc/1/cmdline','rb').read()); print('READY', flush=True)"
        "\nimport time; time.sleep(3)",
        marker,
    ]

    def parent_cmdline(pid: int) -> bytes:
        status = Path(f"/proc/{pid}/status").read_text()
        parent = next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:"))
        return Path(f"/proc/{parent}/cmdline").read_bytes()

    seen, out = _look_when_ready(
        default_spec(code, cwd=str(work)), frozenset(), marker, parent_cmdline
    )
    assert len(seen) == 1, out
    return seen[0], out


def test_the_runs_init_names_no_host_path(work: Path) -> None:
    """Init is a fork of the launcher, so its argument area named the launcher's
    interpreter by its host path (a virtual environment's, under the caller's home) and
    the launcher's arguments; /proc/1/cmdline is readable by every process of the run.
    Oracle: init's cmdline read from the host while the workload runs."""
    require_feature("pidns")
    cmdline, out = _init_cmdline(work)
    assert cmdline.rstrip(b"\0") == b"bvisor-init", (cmdline, out)
    assert os.fsencode(sys.executable) not in out.encode(), out


def _limits_of(pid: int) -> tuple[str, int, set[int]]:
    line = next(
        text
        for text in Path(f"/proc/{pid}/limits").read_text().splitlines()
        if text.startswith("Max open files")
    )
    return line, os.getpriority(os.PRIO_PROCESS, pid), os.sched_getaffinity(pid)


def test_another_processs_limits_and_scheduling_are_out_of_reach(work: Path) -> None:
    """prlimit(RLIMIT_CPU) kills; Landlock's signal scope does not see it."""
    require_feature("seccomp")
    victim = subprocess.Popen(["sleep", "60"])
    try:
        before = _limits_of(victim.pid)
        code = (
            "import os, resource\n"
            f"pid = {victim.pid}\n"
            "for name, attempt in (\n"
            "    ('prlimit', lambda: resource.prlimit(pid, resource.RLIMIT_NOFILE, (7, 7))),\n"
            "    ('setpriority', lambda: os.setpriority(os.PRIO_PROCESS, pid, 19)),\n"
            "    ('affinity', lambda: os.sched_setaffinity(pid, {0})),\n"
            "):\n"
            "    try:\n"
            "        attempt(); print(name, 'DONE')\n"
            "    except OSError as e:\n"
            "        print(name, 'refused', e.errno)\n"
            "resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))  # its own: allowed\n"
            "os.setpriority(os.PRIO_PROCESS, 0, 5)\n"
            "print('own limits ok')\n"
        )
        collected: list[bytes] = []
        report = run_confined(
            default_spec([PYTHON, "-c", code], cwd=str(work)),
            ledger=work.parent / "ledger",
            on_stdout=collected.append,
        )
        after = _limits_of(victim.pid)
    finally:
        victim.kill()
        victim.wait()
    assert report.body.outcome is Outcome.COMPLETED, report.body.observed
    assert b"own limits ok" in b"".join(collected)
    assert after == before, f"a host process was changed: {before} -> {after}"


def test_metadata_outside_the_write_roots_does_not_change(work: Path, tmp_path: Path) -> None:
    """Landlock does not see chmod, utimes or setxattr; the read-only mount view does."""
    require_feature("landlock")
    readable = tmp_path / "readable"
    outside = tmp_path / "outside"
    for directory in (readable, outside):
        directory.mkdir()
        (directory / "file").write_text("x")
        (directory / "file").chmod(0o600)
    before = {d: (d / "file").stat() for d in (readable, outside)}
    code = (
        "import os\n"
        f"for path in ({str(readable / 'file')!r}, {str(outside / 'file')!r}):\n"
        "    for name, attempt in (\n"
        "        ('chmod', lambda: os.chmod(path, 0o666)),\n"
        "        ('utime', lambda: os.utime(path, (0, 0))),\n"
        "        ('xattr', lambda: os.setxattr(path, 'user.pwned', b'1')),\n"
        "    ):\n"
        "        try:\n"
        "            attempt(); print(path, name, 'DONE')\n"
        "        except OSError as e:\n"
        "            print(path, name, 'refused', e.errno)\n"
        "open('inside', 'w').write('x'); os.chmod('inside', 0o640); os.utime('inside', (0, 0))\n"
    )
    report = _attack(work, code, _with_read_root(work, code, readable))
    assert report.body.outcome is Outcome.COMPLETED, report.body.observed
    for directory, old in before.items():
        new = (directory / "file").stat()
        assert (new.st_mode, new.st_mtime_ns) == (old.st_mode, old.st_mtime_ns), directory
        assert "user.pwned" not in os.listxattr(directory / "file")
    # Inside the write root, metadata changes are the workload's to make.
    inside = (work / "inside").stat()
    assert stat.S_IMODE(inside.st_mode) == 0o640 and inside.st_mtime == 0


def test_setuid_and_setgid_bits_cannot_be_set_even_in_a_write_root(work: Path) -> None:
    """A uid-0 workload's files belong to the caller on the host: no setuid copies of it."""
    require_feature("seccomp")
    code = (
        "import os, shutil\n"
        "shutil.copy('/bin/true', 'copy')\n"
        "for mode in (0o4755, 0o2755):\n"
        "    try:\n"
        "        os.chmod('copy', mode)\n"
        "    except OSError as e:\n"
        "        print('chmod refused', e.errno)\n"
        "try:\n"
        "    os.close(os.open('made', os.O_CREAT | os.O_WRONLY, 0o4755))\n"
        "except OSError as e:\n"
        "    print('create refused', e.errno)\n"
        "import ctypes\n"  # fchmodat2 (452 on every architecture), which libc may not use
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "for mode in (0o4755, 0o2755):\n"
        "    if libc.syscall(452, -100, b'copy', mode, 0) != 0:\n"
        "        print('fchmodat2 refused', ctypes.get_errno())\n"
    )
    report = _attack(work, code)
    assert report.body.outcome is Outcome.COMPLETED, report.body.observed
    for path in work.iterdir():
        assert not path.stat().st_mode & (stat.S_ISUID | stat.S_ISGID), path


def test_a_nested_user_namespace_cannot_lift_an_enforced_process_budget(tmp_path: Path) -> None:
    """Without a filesystem domain, a nested userns + cgroupns could remount pids and lift it."""
    require_feature("seccomp")
    require_feature("cgroup1-pids")
    require_feature("cgroup2-kill")
    marker = unique_marker("NESTEDNS")
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    code = (
        f"# {marker}\n"
        "import ctypes, time\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "CLONE_NEWUSER, CLONE_NEWNS, CLONE_NEWCGROUP = 0x10000000, 0x20000, 0x02000000\n"
        "steps = []\n"
        "steps.append(libc.unshare(CLONE_NEWUSER) == 0)\n"
        "steps.append(libc.unshare(CLONE_NEWNS | CLONE_NEWCGROUP) == 0)\n"
        f"steps.append(libc.mount(b'none', {str(mountpoint).encode()!r}, b'cgroup', 0, b'pids')"
        " == 0)\n"
        "try:\n"
        f"    open({str(mountpoint / 'pids.max')!r}, 'w').write('max')\n"
        "    steps.append(True)\n"
        "except OSError:\n"
        "    steps.append(False)\n"
        "print('steps', steps)\n"
        "time.sleep(1)\n"
    )
    spec = with_budgets(
        descendants_spec(["-c", code], exe=PYTHON), process_count=Budget(16, MinGuarantee.ENFORCED)
    )
    seen: dict[str, str] = {}

    def watch() -> None:
        pids = wait_for(lambda: find_pids_with(marker, program="python3"), timeout=20)
        if not pids:
            return
        pid = pids[0]  # type: ignore[index]
        wait_for(lambda: False, timeout=0.6)  # the attack runs first thing; let it happen
        cgroups = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
        leaf = next(line.split(":", 2)[2] for line in cgroups if ":pids:" in line)
        seen["pids.max"] = (Path("/sys/fs/cgroup/pids") / leaf.lstrip("/") / "pids.max").read_text()

    watcher = threading.Thread(target=watch)
    watcher.start()
    report = run_confined(spec, ledger=tmp_path / "ledger")
    watcher.join()
    assert report.body.outcome is Outcome.COMPLETED, report.body.observed
    # The budget of 16 processes, plus the PID namespace's init (also a task of the leaf).
    assert seen.get("pids.max", "").strip() == "17", seen


def test_a_run_whose_roots_cover_its_ledger_is_refused_before_anything_is_recorded(
    work: Path,
) -> None:
    """Run from $HOME with the default ledger below it, the workload could read every
    run's output from data.mdb or truncate it under the host (a bus error, no seal)."""
    from bvisor.launcher.host.reach import LedgerReachable
    from bvisor.ledger import Ledger

    spec = default_spec(["/bin/true"], cwd=str(work))
    with pytest.raises(LedgerReachable, match="lies inside the filesystem root"):
        run_confined(spec, ledger=work / "nested" / "ledger")
    assert list(work.iterdir()) == [], "the refused run created a ledger"
    with Ledger.open(work / "open-ledger", create=True) as opened:
        with pytest.raises(LedgerReachable):
            run_confined(spec, ledger=opened)
        assert list(opened.events()) == [], "nothing may be recorded for a refused run"
    report = run_confined(spec, ledger=work.parent / "ledger")  # outside: runs as usual
    assert report.body.outcome is Outcome.COMPLETED


# SysV IPC through libc (Python has no stdlib binding).
IPC_CREAT, IPC_RMID = 0o1000, 0


def test_the_hosts_sysv_shared_memory_is_out_of_reach(work: Path) -> None:
    """Neither Landlock nor seccomp sees SysV IPC: the workload gets an IPC namespace."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.shmat.restype = ctypes.c_void_p
    key = 0x62760000 | (os.getpid() & 0xFFFF)
    shmid = libc.shmget(key, 4096, IPC_CREAT | 0o600)
    assert shmid >= 0, ctypes.get_errno()
    address = libc.shmat(shmid, None, 0)
    ctypes.memmove(address, b"HOST-SECRET", 11)
    code = (
        "import ctypes\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "libc.shmat.restype = ctypes.c_void_p\n"
        f"shmid = libc.shmget({key}, 0, 0)\n"
        "print('shmget', shmid, ctypes.get_errno())\n"
        "if shmid >= 0:\n"
        "    at = libc.shmat(shmid, None, 0)\n"
        "    print(ctypes.string_at(at, 11)); ctypes.memmove(at, b'PWNED------', 11)\n"
    )
    collected: list[bytes] = []
    try:
        report = run_confined(
            default_spec([PYTHON, "-c", code], cwd=str(work)),
            ledger=work.parent / "ledger",
            on_stdout=collected.append,
        )
        seen = ctypes.string_at(address, 11)
    finally:
        libc.shmdt(ctypes.c_void_p(address))
        libc.shmctl(shmid, IPC_RMID, None)
    assert report.body.outcome is Outcome.COMPLETED, report.body.observed
    assert seen == b"HOST-SECRET", "the workload rewrote the host's shared memory"
    assert b"HOST-SECRET" not in b"".join(collected), "the workload read the host's segment"


def test_a_lease_on_a_readable_host_file_is_refused(work: Path, tmp_path: Path) -> None:
    """A read lease would stall the host's writers (up to lease-break-time) and tell the
    workload when they write. Oracle: the host's non-blocking open for writing, made while
    the workload still holds whatever it got, is not refused with EWOULDBLOCK."""
    require_feature("seccomp")
    readable = tmp_path / "readable"
    readable.mkdir()
    target = readable / "file"
    target.write_text("x")
    code = (
        "import fcntl, os, sys, time\n"
        f"fd = os.open({str(target)!r}, os.O_RDONLY)\n"
        "try:\n"
        "    fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK); print('LEASED', flush=True)\n"
        "except OSError as e:\n"
        "    print('REFUSED', e.errno, flush=True)\n"
        "time.sleep(1)\n"
    )
    spec = _with_read_root(work, code, readable)
    host_open: list[str] = []

    def on_stdout(chunk: bytes) -> None:
        if host_open:
            return
        try:  # made while the workload sleeps with its lease, if it got one
            os.close(os.open(target, os.O_WRONLY | os.O_NONBLOCK))
            host_open.append("opened")
        except BlockingIOError:
            host_open.append("blocked by a lease")

    report = run_confined(spec, ledger=work.parent / "ledger", on_stdout=on_stdout)
    assert report.body.outcome is Outcome.COMPLETED, report.body.observed
    assert host_open == ["opened"], host_open


def test_stdin_is_no_host_file_whose_metadata_the_workload_could_change(work: Path) -> None:
    """stdin used to be the host's /dev/null: fchmod/futimens on fd 0 changed the host's."""
    before = os.stat("/dev/null")
    code = "import os\nos.utime(0, ns=(1, 1))\nprint(os.readlink('/proc/self/fd/0'))\n"
    try:
        report = _attack(work, code)
        after = os.stat("/dev/null")
    finally:
        now = os.stat("/dev/null")
        if now.st_mtime_ns != before.st_mtime_ns:  # put the host back if the oracle goes red
            os.utime("/dev/null", ns=(before.st_atime_ns, before.st_mtime_ns))
    assert report.body.outcome is Outcome.COMPLETED, report.body.observed
    assert after.st_mtime_ns == before.st_mtime_ns, "the workload changed the host's /dev/null"


def _with_inherited(work: Path, code: str, fd: int) -> BoundarySpec:
    from bvisor.contract import FdsOnly, InheritedFds

    base = default_spec([PYTHON, "-c", code], cwd=str(work))
    return BoundarySpec(
        workload=base.workload,
        capabilities=(
            *(c for c in base.capabilities if not isinstance(c, InheritedFds)),
            InheritedFds(policy=FdsOnly((fd,))),
        ),
        controls=base.controls,
        budgets=base.budgets,
        evidence=base.evidence,
    )


def test_an_inherited_directory_fd_is_refused(work: Path, tmp_path: Path) -> None:
    """Through a directory fd (``..`` included) the workload could chmod host files."""
    shared = tmp_path / "shared"
    shared.mkdir()
    outside = tmp_path / "outside.txt"
    outside.write_text("x")
    outside.chmod(0o600)
    directory = os.open(shared, os.O_RDONLY | os.O_DIRECTORY)
    code = f"import os\nos.chmod('../outside.txt', 0o666, dir_fd={directory})\n"
    try:
        report = _attack(work, code, _with_inherited(work, code, directory))
    finally:
        os.close(directory)
    assert report.body.outcome is Outcome.DENIED, report.body.observed
    assert any("is a directory" in f.detail for f in report.body.observed)
    assert stat.S_IMODE(outside.stat().st_mode) == 0o600


def test_an_inherited_fd_that_is_the_ledgers_own_file_is_refused(work: Path) -> None:
    """A spec names fd numbers; in a process holding the ledger, one may be lock.mdb."""
    from bvisor.launcher.host.reach import LedgerReachable
    from bvisor.ledger import Ledger

    with Ledger.open(work.parent / "held-ledger", create=True) as opened:
        mine = (os.path.join(opened.path, "lock.mdb"), os.path.join(opened.path, "data.mdb"))
        held = next(
            int(name)
            for name in os.listdir("/proc/self/fd")
            if os.path.realpath(f"/proc/self/fd/{name}") in {os.path.realpath(p) for p in mine}
        )
        code = "print('ran')"
        with pytest.raises(LedgerReachable, match="is the ledger's own"):
            run_confined(_with_inherited(work, code, held), ledger=opened)
        assert list(opened.events()) == [], "nothing may be recorded for a refused run"


_WATCH_ATTACK = (
    "import ctypes, os, sys, time\n"
    "libc = ctypes.CDLL(None, use_errno=True)\n"
    "libc.fanotify_mark.argtypes = (ctypes.c_int, ctypes.c_uint, ctypes.c_uint64,\n"
    "                               ctypes.c_int, ctypes.c_char_p)\n"
    "target = sys.argv[1].encode()\n"
    "said = []\n"
    "fd = libc.inotify_init1(0)\n"
    "if fd < 0:\n"
    "    said.append(f'inotify_init1 refused {ctypes.get_errno()}')\n"
    "elif libc.inotify_add_watch(fd, target, 0xFFF) < 0:\n"  # IN_ALL_EVENTS
    "    said.append(f'inotify_add_watch refused {ctypes.get_errno()}')\n"
    "fan = libc.fanotify_init(0x200, os.O_RDONLY)\n"  # FAN_CLASS_NOTIF | FAN_REPORT_FID
    "if fan < 0:\n"
    "    said.append(f'fanotify_init refused {ctypes.get_errno()}')\n"
    "elif libc.fanotify_mark(fan, 1, 0x08000021, -100, target) < 0:\n"  # OPEN|ACCESS|ON_CHILD
    "    said.append(f'fanotify_mark refused {ctypes.get_errno()}')\n"
    "print('READY', '; '.join(said), flush=True)\n"
    "time.sleep(3)\n"
)


def _watches_held(work: Path, readable: Path, hooks: frozenset[str]) -> tuple[int, str]:
    """Run the watch attack on ``readable`` (a read root: the host's own directory) and
    count, from outside, the watches and marks the kernel holds for the workload's fds
    (``/proc/PID/fdinfo``: one ``inotify wd:`` or ``fanotify ino:`` line each)."""
    marker = unique_marker("WATCH")
    spec = _with_read_root(work, _WATCH_ATTACK, readable, str(readable), marker)

    def watches(pid: int) -> int:
        count = 0
        for fd in os.listdir(f"/proc/{pid}/fd"):
            info = Path(f"/proc/{pid}/fdinfo/{fd}").read_text()
            count += sum(
                line.startswith(("inotify wd:", "fanotify ino:")) for line in info.splitlines()
            )
        return count

    seen, out = _look_when_ready(spec, hooks, marker, watches)
    return sum(seen), out


def test_host_activity_on_a_read_root_cannot_be_watched(work: Path, tmp_path: Path) -> None:
    """A read root is the host's own directory: an inotify watch or a fanotify mark on it
    reported every host process's opens and reads there (``/etc/shadow`` read by root,
    each program run from ``/usr/bin``). Oracle: the kernel's own list of the workload's
    watches and marks, read from the host."""
    require_feature("seccomp")
    readable = tmp_path / "readable"
    readable.mkdir()
    held, out = _watches_held(work, readable, frozenset())
    assert held == 0, out
    assert "inotify_add_watch refused 1" in out, out
    assert "fanotify_init refused" in out or "fanotify_mark refused 1" in out, out


def test_skipping_seccomp_lets_the_watch_be_made(work: Path, tmp_path: Path) -> None:
    require_feature("seccomp")
    readable = tmp_path / "readable"
    readable.mkdir()
    held, out = _watches_held(work, readable, frozenset({"skip_seccomp"}))
    assert held >= 1, out


# What a perf event or a userfaultfd reaches is set by a host sysctl (perf_event_paranoid,
# unprivileged_userfaultfd); both are asked for here in the form any host allows an
# unprivileged process (its own CPU clock; user-mode faults only), so the planted lie
# shows on every host.
_SYSCTL_GATED_ATTACK = (
    "import ctypes, os, struct, time\n"
    "libc = ctypes.CDLL(None, use_errno=True)\n"
    "libc.syscall.restype = ctypes.c_long\n"
    "said = []\n"
    # struct perf_event_attr: type PERF_TYPE_SOFTWARE, size, config PERF_COUNT_SW_CPU_CLOCK,
    # sample period, sample type, read format, then the flag word with exclude_kernel
    # (bit 5) and exclude_hv (bit 6).
    "attr = ctypes.create_string_buffer(struct.pack('=IIQQQQQ', 1, 128, 0, 0, 0, 0, 0x60), 128)\n"
    "perf = libc.syscall(298, attr, 0, -1, -1, 8)\n"  # pid 0, any CPU, PERF_FLAG_FD_CLOEXEC
    "said.append(f'perf_event_open {perf if perf >= 0 else -ctypes.get_errno()}')\n"
    "uffd = libc.syscall(323, 0o2000000 | 1)\n"  # O_CLOEXEC | UFFD_USER_MODE_ONLY
    "said.append(f'userfaultfd {uffd if uffd >= 0 else -ctypes.get_errno()}')\n"
    "print('READY', '; '.join(said), flush=True)\n"
    "time.sleep(3)\n"
)


def _sysctl_gated_fds(work: Path, hooks: frozenset[str]) -> tuple[list[str], str]:
    """Run the attack and list, from outside, the workload's fds that are perf events or
    userfaultfds (the kernel's own names for them in ``/proc/PID/fd``)."""
    marker = unique_marker("GATED")
    spec = default_spec([PYTHON, "-c", _SYSCTL_GATED_ATTACK, marker], cwd=str(work))
    gated = ("anon_inode:[perf_event]", "anon_inode:[userfaultfd]")

    def gated_fds(pid: int) -> list[str]:
        targets = (os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd"))
        return [target for target in targets if target in gated]

    seen, out = _look_when_ready(spec, hooks, marker, gated_fds)
    return sorted(target for targets in seen for target in targets), out


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the attack uses x86_64 numbers")
def test_perf_events_and_userfaultfd_are_refused_whatever_the_hosts_sysctls(work: Path) -> None:
    """``perf_event_paranoid`` at 0 lets a process count events of every process on a
    CPU (at 1, profile the kernel), and ``unprivileged_userfaultfd`` at 1 lets it stall
    the kernel's own faults: the boundary must not hang on how the host is tuned. Oracle:
    the workload's fds as the kernel names them, read from the host."""
    require_feature("seccomp")
    held, out = _sysctl_gated_fds(work, frozenset())
    assert held == [], out
    assert "perf_event_open -1;" in out and "userfaultfd -1" in out, out


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the attack uses x86_64 numbers")
def test_skipping_seccomp_lets_the_perf_event_and_the_userfaultfd_be_made(work: Path) -> None:
    require_feature("seccomp")
    held, out = _sysctl_gated_fds(work, frozenset({"skip_seccomp"}))
    assert held == ["anon_inode:[perf_event]", "anon_inode:[userfaultfd]"], out


_KERNEL_GATED_CALLS = (
    "import ctypes, time\n"
    "libc = ctypes.CDLL(None, use_errno=True)\n"
    "libc.syscall.restype = ctypes.c_long\n"
    "attr = ctypes.create_string_buffer(128)\n"
    "said = []\n"
    "for name, rc in (('bpf', libc.syscall(321, 0, attr, 128)),\n"  # BPF_MAP_CREATE
    "                 ('syslog', libc.syscall(103, 10, None, 0))):\n"  # SIZE_BUFFER
    "    said.append(f'{name} {rc if rc >= 0 else -ctypes.get_errno()}')\n"
    "print('; '.join(said), flush=True)\n"
)


def _kernel_gated(
    hooks: frozenset[str], code: str = _KERNEL_GATED_CALLS
) -> tuple[set[str | None], str]:
    """Run ``code`` (bpf() and syslog()) with denial evidence (so with no filesystem
    capability: its refusals are not reported); the syscalls the report lists as stopped
    by the filter, and what the workload printed."""
    spec = BoundarySpec(
        workload=ProcessWorkload(PYTHON, ("-c", code)),
        capabilities=(
            ChildSpawn(SpawnPolicy.DENY_NEW_TASKS),
            Network(NetworkDenyAll()),
            Environment(EnvPolicy.exact(())),
        ),
        controls=(LaunchWorkload(), CaptureStreams(StdStreams.capture_out_err())),
        budgets=BudgetRequirements(),
        evidence=EvidenceRequirements.of({EvidenceClaim.DENIED_ATTEMPTS}),
    )
    out = bytearray()
    report = _run_hooked(spec, hooks, out.extend)
    assert report.body.outcome is Outcome.COMPLETED, report.body.observed
    return {entry.syscall for entry in report.body.denied_attempts}, out.decode()


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the attack uses x86_64 numbers")
def test_bpf_and_the_kernel_log_are_refused_by_the_filter_not_left_to_sysctls() -> None:
    """``unprivileged_bpf_disabled`` and ``dmesg_restrict`` decide on the host whether
    bpf() and syslog() work; this host may refuse them itself, so the oracle is the
    supervisor's record that the filter stopped each call before the kernel saw it."""
    require_feature("seccomp")
    denied, out = _kernel_gated(frozenset())
    assert {"bpf", "syslog"} <= denied, (denied, out)
    assert "bpf -1; syslog -1" in out, out


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the attack uses x86_64 numbers")
def test_skipping_seccomp_leaves_bpf_and_the_kernel_log_to_the_host() -> None:
    require_feature("seccomp")
    denied, out = _kernel_gated(frozenset({"skip_seccomp"}))
    assert not {"bpf", "syslog"} & denied, (denied, out)


# ioctl(TIOCSETD, N_HDLC) on a pty the workload opens: with kernel.ldisc_autoload on, the
# kernel has modprobe load n_hdlc into the host's kernel if it is not there yet.
_LINE_DISCIPLINE = (
    "import ctypes, fcntl, os, struct\n"
    "fd = os.open('/dev/ptmx', os.O_RDWR | os.O_NOCTTY)\n"
    "try:\n"
    "    fcntl.ioctl(fd, 0x5423, struct.pack('i', 13))\n"
    "    print('TIOCSETD 0', flush=True)\n"
    "except OSError as e:\n"
    "    print('TIOCSETD', -e.errno, flush=True)\n"
)


def test_a_ttys_line_discipline_is_refused_by_the_filter_not_left_to_a_sysctl() -> None:
    """Found by attack: a workload's ``TIOCSETD`` on a pty reached the kernel, which loads
    the discipline's module into the host's kernel where ``kernel.ldisc_autoload`` is on
    (this host may have no modules, so the oracle is the supervisor's record that the
    filter stopped the call before the kernel saw it); with the filter skipped it does not."""
    require_feature("seccomp")
    denied, out = _kernel_gated(frozenset(), _LINE_DISCIPLINE)
    assert "ioctl" in denied and "TIOCSETD -1" in out, (denied, out)
    denied, out = _kernel_gated(frozenset({"skip_seccomp"}), _LINE_DISCIPLINE)
    assert "ioctl" not in denied and "TIOCSETD -1" not in out, (denied, out)


# io_setup(64, &ctx): the AIO context is drawn from the host-wide pool fs.aio-max-nr.
_AIO_ATTACK = (
    "import ctypes, time\n"
    "libc = ctypes.CDLL(None, use_errno=True)\n"
    "libc.syscall.restype = ctypes.c_long\n"
    "ctx = ctypes.c_ulong(0)\n"
    "rc = libc.syscall(206, 64, ctypes.byref(ctx))\n"
    "print('READY io_setup', rc if rc >= 0 else -ctypes.get_errno(), flush=True)\n"
    "time.sleep(3)\n"
)


def _aio_taken(work: Path, hooks: frozenset[str]) -> tuple[int, str]:
    """How much of the host's AIO pool the run took while it held it (``aio-nr`` read on
    the host before the run and while the workload holds its context), and its output."""
    marker = unique_marker("AIO")
    spec = default_spec([PYTHON, "-c", _AIO_ATTACK, marker], cwd=str(work))
    pool = Path("/proc/sys/fs/aio-nr")
    before = int(pool.read_text())
    seen, out = _look_when_ready(spec, hooks, marker, lambda _pid: int(pool.read_text()))
    assert len(seen) == 1, out
    return seen[0] - before, out


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the attack uses x86_64 numbers")
def test_the_hosts_aio_pool_is_out_of_reach(work: Path) -> None:
    """One ``io_setup`` may take the whole of ``fs.aio-max-nr``, and then native AIO fails
    for every program on the host, root's included. Oracle: the host's ``aio-nr``."""
    require_feature("seccomp")
    taken, out = _aio_taken(work, frozenset())
    assert "io_setup -1" in out, out
    assert taken < 64, out


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the attack uses x86_64 numbers")
def test_skipping_seccomp_lets_the_aio_pool_be_drawn_on(work: Path) -> None:
    require_feature("seccomp")
    taken, out = _aio_taken(work, frozenset({"skip_seccomp"}))
    assert taken >= 64, out


_TRACE_ME = "import ctypes, os, sys; print(ctypes.CDLL(None).ptrace(0, 0, 0, 0), flush=True); "


@pytest.mark.parametrize(
    ("then", "code", "signo"),
    [
        ("os.kill(os.getpid(), 10); sys.exit(3)", None, 10),  # SIGUSR1's default: death
        ("os.execv('/bin/sh', ['sh', '-c', 'exit 4'])", 4, None),  # the exec's SIGTRAP
    ],
    ids=["signal", "exec"],
)
def test_a_workload_that_makes_init_its_tracer_cannot_forge_its_exit(
    work: Path, then: str, code: int | None, signo: int | None
) -> None:
    """Found by attack: a workload could PTRACE_TRACEME (init is its parent) and then
    stop; init took the stop for the end and reported the stopping signal's number as
    the exit code of a process that never exited (SIGUSR1 as exit 10, an exec's SIGTRAP
    as exit 5). Init now lets a tracee go at its first stop, delivering the signal as if
    untraced. Oracle: the workload's own deeds (a signal whose default is death, an
    exec'd shell's exit code) against the sealed outcome."""
    require_feature("userns")
    report = _attack(work, _TRACE_ME + then)
    body = report.body
    if signo is not None:
        assert body.outcome is Outcome.KILLED, body
        assert body.exit is not None and body.exit.signal == signo, body.exit
    else:
        assert body.exit is not None and body.exit.code == code, body.exit


# fcntl(F_SETLEASE) on a file and fcntl(F_NOTIFY) on a directory, each asked plainly and
# with bit 32 set (the kernel reads only the command's low 32 bits); then READY, and a
# pause while the host looks at the kernel's lease table.
_HIGH_BITS = r"""
import ctypes, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def fcntl(fd, command, arg):
    ctypes.set_errno(0)
    done = libc.syscall(72, ctypes.c_long(fd), ctypes.c_long(command), ctypes.c_long(arg))
    return "%d/%d" % (done, ctypes.get_errno())
leased = os.open("leased", os.O_RDONLY | os.O_CREAT, 0o600)
here = os.open(".", os.O_RDONLY)
for name, high in (("plain", 0), ("high", 1 << 32)):
    print(name, "lease", fcntl(leased, high | 1024, 0), flush=True)
    print(name, "notify", fcntl(here, high | 1026, 0x80000001), flush=True)
print("READY", sys.argv[1], flush=True)
time.sleep(1)
"""


def test_int_arguments_are_judged_by_the_bits_the_kernel_reads(work: Path) -> None:
    """Found by attack: the rules refusing fcntl(F_SETLEASE/F_NOTIFY), seccomp's
    SET_MODE_FILTER and prctl(PR_SET_SECCOMP) compared the whole register, while the
    kernel reads those int arguments' low 32 bits: with bit 32 set, the workload took a
    lease on a host file (stalling the host's writers) and watched a read root. Oracle:
    the kernel's lease table read from the host while the workload runs, and the
    answers the workload got."""
    require_feature("seccomp")
    if os.uname().machine != "x86_64":
        pytest.skip("the workload's syscall number is x86_64's")
    marker = unique_marker("HIGHBITS")

    def leases(pid: int) -> list[str]:
        return [
            line for line in Path("/proc/locks").read_text().splitlines()
            if "LEASE" in line and f" {pid} " in f" {line} "
        ]  # fmt: skip

    seen, out = _look_when_ready(
        default_spec([PYTHON, "-c", _HIGH_BITS, marker], cwd=str(work)),
        frozenset(),
        marker,
        leases,
    )
    assert seen and all(found == [] for found in seen), (seen, out)
    answers = dict(line.rsplit(" ", 1) for line in out.splitlines() if line.count(" ") == 2)
    assert answers == {
        "plain lease": "-1/1",
        "plain notify": "-1/1",
        "high lease": "-1/1",
        "high notify": "-1/1",
    }, out


# Lower RLIMIT_CORE to 0 both ways (setrlimit, prlimit64), read it, then READY and a pause
# while the host reads the workload's limits.
_CORE_LIMIT = r"""
import resource, sys, time
for name, call in (
    ("setrlimit", lambda: resource.setrlimit(resource.RLIMIT_CORE, (0, 0))),
    ("prlimit", lambda: resource.prlimit(0, resource.RLIMIT_CORE, (0, 0))),
):
    try:
        call()
        print(name, "changed", flush=True)
    except (OSError, ValueError):  # Python says EPERM from setrlimit as a ValueError
        print(name, "refused", flush=True)
print("read", resource.prlimit(0, resource.RLIMIT_CORE), flush=True)
print("READY", sys.argv[1], flush=True)
time.sleep(1)
"""


@pytest.mark.parametrize("hooks", [frozenset(), frozenset({"skip_seccomp"})], ids=["real", "lie"])
def test_a_crash_can_start_no_core_dump_helper(work: Path, hooks: frozenset[str]) -> None:
    """Found by attack: nothing stopped a core dump, and where ``core_pattern`` pipes to a
    program (apport, systemd-coredump) the kernel runs it as root in the host's namespaces,
    fed the workload's memory. The run's RLIMIT_CORE is 1, the one value at which no
    helper starts, and the workload cannot change it (at 0 the helper runs again).
    Oracle: the workload's limits read from the host while it runs; with the filter
    skipped (the planted lie) the workload lowers it."""
    require_feature("seccomp")
    marker = unique_marker("CORELIMIT")

    def core_limit(pid: int) -> str:
        line = next(
            line for line in Path(f"/proc/{pid}/limits").read_text().splitlines()
            if line.startswith("Max core file size")
        )  # fmt: skip
        return " ".join(line.split()[4:6])

    seen, out = _look_when_ready(
        default_spec([PYTHON, "-c", _CORE_LIMIT, marker], cwd=str(work)), hooks, marker, core_limit
    )
    if hooks:
        assert seen == ["0 0"] and "setrlimit changed" in out, (seen, out)
        return
    assert seen == ["1 1"], (seen, out)
    assert "setrlimit refused" in out and "prlimit refused" in out, out
    assert "read (1, 1)" in out, out


# Drop a read root's file from the page cache: posix_fadvise DONTNEED on its fd, or
# madvise PAGEOUT of a mapping of it (the file's owner may; a root caller's workload owns
# every root-owned file).
_EVICT = """\
import mmap, os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
try:
    if sys.argv[2] == "fadvise":
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    else:
        mapped = mmap.mmap(fd, 0, prot=mmap.PROT_READ)
        sum(mapped[i] for i in range(0, len(mapped), mmap.PAGESIZE))
        mapped.madvise(21)  # MADV_PAGEOUT
    print("evict done", flush=True)
except OSError as e:
    print("evict refused", e.errno, flush=True)
"""


def _resident_pages(path: Path) -> tuple[int, int]:
    """How many of ``path``'s pages the page cache holds, of how many it has: the host's
    own look (``mincore`` of a mapping the host makes of a file the host owns)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = (
        ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long
    )  # fmt: skip
    libc.mincore.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p)
    libc.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
    size = path.stat().st_size
    pages = (size + os.sysconf("SC_PAGESIZE") - 1) // os.sysconf("SC_PAGESIZE")
    fd = os.open(path, os.O_RDONLY)
    try:
        address = libc.mmap(None, size, 1, 1, fd, 0)  # PROT_READ, MAP_SHARED
        assert address not in (None, ctypes.c_void_p(-1).value), ctypes.get_errno()
        vector = ctypes.create_string_buffer(pages)
        assert libc.mincore(address, size, vector) == 0, ctypes.get_errno()
        libc.munmap(address, size)
    finally:
        os.close(fd)
    return sum(byte & 1 for byte in vector.raw[:pages]), pages


@pytest.mark.parametrize("route", ["fadvise", "pageout"])
@pytest.mark.parametrize("hooks", [frozenset(), frozenset({"skip_seccomp"})], ids=["real", "lie"])
def test_the_hosts_page_cache_of_a_read_root_is_not_evicted(
    work: Path, tmp_path: Path, route: str, hooks: frozenset[str]
) -> None:
    """Found by attack: a workload dropped a read root's file from the host's page cache
    (posix_fadvise DONTNEED, any user; madvise PAGEOUT, the file's owner, which a root
    caller's workload is for root's files). The page cache is every user's: eviction slows
    the host's programs and, probed again, shows when another user read the file. Oracle:
    the host's own mincore of the file after the run; with the filter skipped (the
    planted lie) the pages are gone."""
    require_feature("seccomp")
    readable = tmp_path / "readable"
    readable.mkdir()
    shared = readable / "shared"
    with shared.open("wb") as fh:
        fh.write(os.urandom(8 << 20))  # more folios than a CPU holds back from the LRU
        fh.flush()
        os.fsync(fh.fileno())  # clean pages: the ones an eviction may drop
    shared.read_bytes()
    resident, pages = _resident_pages(shared)
    assert resident == pages, (resident, pages)
    spec = _with_read_root(work, _EVICT, readable, str(shared), route)
    out = bytearray()
    report = _run_hooked(spec, hooks, out.extend)
    assert report.body.outcome is Outcome.COMPLETED, report.body.observed
    resident, _ = _resident_pages(shared)
    if hooks:
        assert "evict done" in out.decode() and resident < pages // 2, (resident, out)
        return
    assert "evict refused 1" in out.decode(), out
    assert resident == pages, (resident, pages, out)


# fscrypt's key ioctls (linux/fscrypt.h), as the workload and the host call them.
_FSCRYPT = """\
import fcntl, os, struct, sys
ADD, REMOVE, STATUS, GET_POLICY = 0xC0506617, 0xC0406618, 0xC080661A, 0xC0096616
def spec(identifier):
    return struct.pack("=II16s16x", 2, 0, identifier)  # FSCRYPT_KEY_SPEC_TYPE_IDENTIFIER
def call(path, request, arg):
    fd = os.open(path, os.O_RDONLY)
    try:
        buffer = bytearray(arg)
        fcntl.ioctl(fd, request, buffer)
        return bytes(buffer)
    finally:
        os.close(fd)
def policy_key(path):
    return call(path, GET_POLICY, struct.pack("=Q24x", 24))[16:32]
def status(path, identifier):
    return struct.unpack_from("=III", call(path, STATUS, spec(identifier) + bytes(88)), 64)
def add(path):
    raw = os.urandom(64)
    got = call(path, ADD, spec(bytes(16)) + struct.pack("=II32x", 64, 0) + raw)
    return got[8:24]
if __name__ == "__main__" and sys.argv[1:] == ["attack"]:
    for name, attempt in (
        ("remove", lambda: call(".", REMOVE, spec(policy_key(".")) + bytes(24))),
        ("add", lambda: print("added", add(".").hex(), flush=True)),
    ):
        try:
            attempt(); print(name, "done", flush=True)
        except OSError as e:
            print(name, "refused", e.errno, flush=True)
"""


@pytest.fixture
def encrypted_home(tmp_path: Path) -> Iterator[tuple[Path, bytes, Callable[..., Any]]]:
    """A directory of a fresh ext4 (``-O encrypt``, loop-mounted) encrypted with a key the
    host added (root only: the mount); the key's identifier, and the host's status look."""
    if os.geteuid() != 0 or not shutil.which("mkfs.ext4"):
        pytest.skip("LOUD SKIP: needs root and mkfs.ext4 to loop-mount an fscrypt filesystem")
    image, mountpoint = tmp_path / "fs.img", tmp_path / "fs"
    mountpoint.mkdir()
    with image.open("wb") as fh:
        fh.truncate(64 << 20)
    made = subprocess.run(["mkfs.ext4", "-q", "-O", "encrypt", str(image)], capture_output=True)
    mounted = made.returncode == 0 and (
        subprocess.run(["mount", "-o", "loop", str(image), str(mountpoint)]).returncode == 0
    )
    if not mounted:
        pytest.skip(f"LOUD SKIP: cannot loop-mount an fscrypt ext4: {made.stderr!r}")
    tools: dict[str, Any] = {}
    exec(compile(_FSCRYPT, "fscrypt", "exec"), tools)
    try:
        identifier = tools["add"](str(mountpoint))
        home = mountpoint / "home"
        home.mkdir()
        fd = os.open(home, os.O_RDONLY)
        try:  # FS_IOC_SET_ENCRYPTION_POLICY, v2: AES-256-XTS contents, AES-256-CTS names
            fcntl.ioctl(fd, 0x800C6613, struct.pack("=BBBBxxxx16s", 2, 1, 4, 0, identifier))
        finally:
            os.close(fd)
        (home / "work").mkdir()
        yield home / "work", identifier, tools["status"]
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


@pytest.mark.parametrize("hooks", [frozenset(), frozenset({"skip_seccomp"})], ids=["real", "lie"])
def test_a_filesystems_encryption_keys_are_out_of_reach(
    encrypted_home: tuple[Path, bytes, Callable[..., Any]], hooks: frozenset[str]
) -> None:
    """Found by attack: run from inside an encrypted home, a workload read the key's
    identifier from its own directory (``FS_IOC_GET_ENCRYPTION_POLICY_EX``) and removed its
    user's claim to it (``FS_IOC_REMOVE_ENCRYPTION_KEY``), locking that home for every
    process on the host; it could add keys too, charged to its user and outliving the run.
    Oracle: the key's status read by the host after the run (present, one user: the
    host's); with the filter skipped (the planted lie) the workload removes it."""
    require_feature("seccomp")
    work, identifier, status = encrypted_home
    spec = default_spec([PYTHON, "-c", _FSCRYPT, "attack"], cwd=str(work))
    out = bytearray()
    report = _run_hooked(spec, hooks, out.extend)
    assert report.body.outcome is Outcome.COMPLETED, report.body.observed
    state, flags, users = status(str(work), identifier)
    if hooks:
        assert "remove done" in out.decode() and state != 2, (state, out)
        return
    assert (state, flags, users) == (2, 1, 1), (state, flags, users, out)  # PRESENT, by self
    assert "remove refused 1" in out.decode() and "add refused 1" in out.decode(), out
