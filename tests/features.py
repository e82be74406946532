"""Kernel feature gating for tests, plus helpers that locate cgroup hierarchies.

A test that needs a kernel feature calls :func:`require_feature`. If the host lacks it,
the test is skipped *loudly* (the reason names the feature and what is missing) — unless
the environment variable ``BVISOR_REQUIRE_FEATURES`` (comma list, or ``all``) names it,
in which case the test fails: CI declares what its kernel has, so a missing feature there
is a broken lane, never a silent pass.

Feature names: ``landlock`` (ABI >= the catalogue floor), ``seccomp`` (filter mode with
the errno action, libseccomp loadable), ``userns``, ``netns``, ``pidns`` (a PID and a
mount namespace with a fresh /proc: what a private root needs), ``netns-loopback`` (in a
new network namespace, inside a user namespace unless root, the loopback can be brought up
and a TCP socket listen on 127.0.0.1: what the allow list's proxy listener needs),
``utsns`` (a UTS namespace, inside a user namespace unless root, whose hostname can be
set: what ``linux.utsns.v1`` needs), ``cgroup2-kill`` (a
writable cgroup v2 directory of ours whose children have ``cgroup.kill``),
``cgroup1-pids``, ``cgroup1-memory`` (a writable v1 controller directory of ours).

Detection is independent of ``bvisor.launcher.host.probe`` on purpose: tests are oracles
for what the
product claims, so they do not reuse the product's own probe.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import sys
import tempfile
from collections.abc import Callable
from functools import cache
from pathlib import Path

import pytest

__all__ = [
    "FEATURES",
    "cgroup_v1_dir",
    "cgroup_v2_dir",
    "dev_launcher_path",
    "feature_missing",
    "require_feature",
    "required_features",
]

FEATURES = (
    "landlock",
    "seccomp",
    "userns",
    "netns",
    "pidns",
    "netns-loopback",
    "utsns",
    "cgroup2-kill",
    "cgroup1-pids",
    "cgroup1-memory",
)
_LANDLOCK_FLOOR = 3
REPO_ROOT = Path(__file__).resolve().parent.parent


def required_features() -> frozenset[str]:
    """Features CI demands (``BVISOR_REQUIRE_FEATURES``); ``all`` means every one."""
    raw = os.environ.get("BVISOR_REQUIRE_FEATURES", "")
    names = {item.strip() for item in raw.split(",") if item.strip()}
    if "all" in names:
        return frozenset(FEATURES)
    return frozenset(names)


def require_feature(name: str) -> None:
    """Skip loudly (or fail, if required) unless this host has feature ``name``."""
    if name not in FEATURES:
        raise ValueError(f"unknown feature {name!r}; known: {', '.join(FEATURES)}")
    missing = feature_missing(name)
    if missing is None:
        return
    message = f"feature {name} unavailable on this host: {missing}"
    if name in required_features():
        pytest.fail(f"BVISOR_REQUIRE_FEATURES names {name}, but {message}")
    print(f"SKIP (loud): {message}", file=sys.stderr)
    pytest.skip(f"LOUD SKIP: {message}")


@cache
def feature_missing(name: str) -> str | None:
    """None if the feature is present, else what is missing."""
    checks: dict[str, Callable[[], str | None]] = {
        "landlock": _landlock_missing,
        "seccomp": _seccomp_missing,
        "userns": lambda: _namespace_missing("user"),
        "netns": lambda: _namespace_missing("net"),
        "pidns": _pidns_missing,
        "netns-loopback": _netns_loopback_missing,
        "utsns": _utsns_missing,
        "cgroup2-kill": _cgroup2_kill_missing,
        "cgroup1-pids": lambda: _cgroup1_missing("pids"),
        "cgroup1-memory": lambda: _cgroup1_missing("memory"),
    }
    return checks[name]()


def _landlock_missing() -> str | None:
    libc = ctypes.CDLL(None, use_errno=True)
    abi = libc.syscall(444, None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    if abi < 0:
        return f"landlock_create_ruleset(VERSION) failed: {os.strerror(ctypes.get_errno())}"
    if abi < _LANDLOCK_FLOOR:
        return f"Landlock ABI {abi} is below the floor {_LANDLOCK_FLOOR}"
    return None


def _seccomp_missing() -> str | None:
    try:
        actions = Path("/proc/sys/kernel/seccomp/actions_avail").read_text().split()
    except OSError:
        return "no /proc/sys/kernel/seccomp/actions_avail (no seccomp filter support)"
    if "errno" not in actions:
        return "seccomp has no errno action"
    try:
        ctypes.CDLL("libseccomp.so.2")
    except OSError:
        return "libseccomp.so.2 cannot be loaded"
    return None


def _namespace_missing(kind: str) -> str | None:
    if not Path(f"/proc/self/ns/{kind}").exists():
        return f"kernel has no {kind} namespaces"
    limit = Path(f"/proc/sys/user/max_{kind}_namespaces")
    try:
        if int(limit.read_text()) == 0:
            return f"{limit} is 0"
    except OSError:
        pass
    if kind == "user" and os.geteuid() != 0:
        flag = Path("/proc/sys/kernel/unprivileged_userns_clone")
        if flag.exists() and flag.read_text().strip() == "0":
            return "unprivileged user namespaces are disabled"
    return None


def _unshare(args: list[str], failed: str) -> str | None:
    """Why util-linux's unshare(1) could not run ``args`` (in a user namespace unless
    root), or None: a feature asked of the kernel through a tool, never of the product."""
    import shutil
    import subprocess

    tool = shutil.which("unshare")
    if tool is None:
        return "no unshare(1) to check with"
    userns = [] if os.geteuid() == 0 else ["--user", "--map-root-user"]
    done = subprocess.run(
        [tool, *userns, *args], capture_output=True, text=True, timeout=30, check=False
    )
    if done.returncode != 0:
        return f"{failed} failed: {done.stderr.strip()[-200:]}"
    return None


def _pidns_missing() -> str | None:
    """A PID and a mount namespace with a fresh /proc."""
    return _unshare(
        ["--pid", "--fork", "--mount", "--mount-proc", "true"],
        "unshare --pid --mount --mount-proc",
    )


_LOOPBACK_LISTEN = """
import fcntl, socket, struct
ctl = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
flags = struct.unpack("16sH", fcntl.ioctl(ctl, 0x8913, struct.pack("16sH", b"lo", 0)))[1]
fcntl.ioctl(ctl, 0x8914, struct.pack("16sH", b"lo", flags | 1))
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(1)
"""


def _netns_loopback_missing() -> str | None:
    """In a new network namespace (in a user namespace unless root): loopback up and a
    listener on 127.0.0.1, asked of unshare(1) and this interpreter, not the product."""
    import shutil
    import subprocess

    tool = shutil.which("unshare")
    if tool is None:
        return "no unshare(1) to check with"
    userns = [] if os.geteuid() == 0 else ["--user", "--map-root-user"]
    done = subprocess.run(
        [tool, *userns, "--net", sys.executable, "-I", "-c", _LOOPBACK_LISTEN],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if done.returncode != 0:
        return f"loopback up and listen in a new netns failed: {done.stderr.strip()[-200:]}"
    return None


def _utsns_missing() -> str | None:
    """A UTS namespace whose hostname can be set (with hostname(1))."""
    import shutil

    name = shutil.which("hostname")
    if name is None:
        return "no hostname(1) to check with"
    return _unshare(["--uts", name, "bvisor-feature-check"], "unshare --uts with a hostname set")


def _own_cgroup_paths() -> dict[str, str]:
    """controller (or "" for v2) -> our path in that hierarchy, from /proc/self/cgroup."""
    paths: dict[str, str] = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _hid, controllers, path = line.split(":", 2)
        if not controllers:
            paths[""] = path
        for controller in controllers.split(","):
            if controller:
                paths[controller] = path
    return paths


def _mounts(fstype: str) -> list[tuple[str, set[str]]]:
    found: list[tuple[str, set[str]]] = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fields = left.split()
        rfields = right.split()
        if len(rfields) >= 3 and rfields[0] == fstype:
            found.append((fields[4], set(rfields[2].split(","))))
    return found


def cgroup_v2_dir() -> Path | None:
    """Our own cgroup v2 directory, or None if there is no v2 hierarchy we are in."""
    own = _own_cgroup_paths().get("")
    mounts = _mounts("cgroup2")
    if own is None or not mounts:
        return None
    return Path(mounts[0][0]) / own.lstrip("/")


def cgroup_v1_dir(controller: str) -> Path | None:
    """Our own cgroup directory in the v1 hierarchy of ``controller``, or None."""
    own = _own_cgroup_paths().get(controller)
    if own is None:
        return None
    for mountpoint, options in _mounts("cgroup"):
        if controller in options:
            return Path(mountpoint) / own.lstrip("/")
    return None


def _probe_mkdir(parent: Path, wanted: str) -> str | None:
    probe = parent / f"bvisor-feature-probe-{os.getpid()}"
    try:
        probe.mkdir()
    except OSError as exc:
        return f"cannot create a child cgroup under {parent}: {exc.strerror}"
    try:
        if not (probe / wanted).exists():
            return f"child cgroups under {parent} have no {wanted}"
        return None
    finally:
        with contextlib.suppress(OSError):
            probe.rmdir()


def _cgroup2_kill_missing() -> str | None:
    base = cgroup_v2_dir()
    if base is None:
        return "no cgroup v2 hierarchy in /proc/self/cgroup"
    return _probe_mkdir(base, "cgroup.kill")


def _cgroup1_missing(controller: str) -> str | None:
    base = cgroup_v1_dir(controller)
    if base is None:
        return f"no cgroup v1 {controller} hierarchy in /proc/self/cgroup"
    return _probe_mkdir(base, "cgroup.procs")


def dev_launcher_path() -> str:
    """A ``bvisor-linux-launcher`` to test with.

    The installed console script next to this interpreter if there is one; otherwise a
    small stub written once per user and checkout into the temp dir, which runs this checkout's
    ``bvisor.launcher.process.main:main`` with ``python -I`` (the launcher starts with an empty
    environment, so PYTHONPATH cannot be used to find the source tree).
    """
    beside = Path(sys.executable).parent / "bvisor-linux-launcher"
    if beside.is_file():
        return str(beside)
    tag = hashlib.sha256(str(REPO_ROOT).encode()).hexdigest()[:12]
    folder = Path(tempfile.gettempdir()) / f"bvisor-dev-launcher-{os.getuid()}-{tag}"
    folder.mkdir(mode=0o700, exist_ok=True)
    target = folder / "bvisor-linux-launcher"
    text = (
        f"#!{sys.executable} -I\n"
        "import sys\n"
        f"sys.path.insert(0, {str(REPO_ROOT)!r})\n"
        "from launcher.process import main\n"
        "sys.exit(main())\n"
    )
    if not target.exists() or target.read_text() != text:
        staged = folder / f".stub-{os.getpid()}"
        staged.write_text(text)
        staged.chmod(0o755)
        os.replace(staged, target)
    return str(target)
