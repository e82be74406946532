"""The probed profile, kept between runs of one process while what shaped it is unchanged.

Probing forks a C child to try the namespaces and creates (and removes) a probe cgroup
per hierarchy: milliseconds a run should not pay each time in a process that runs many.
The snapshot is reused only while its *key* is unchanged, and the key is read fresh on
every run (a few small ``/proc`` files and one ``stat``):

* the boot (``/proc/sys/kernel/random/boot_id``) and the kernel release;
* this process's credentials, capabilities, user and mount namespaces, its cgroups and
  the mount table (where the cgroup hierarchies are);
* the sysctls the ceiling reads (``user.max_user_namespaces``, the seccomp actions);
* the launcher file (device, inode, size, modification and change times), whose digest
  is a fact of the profile.

A cached snapshot is also dropped after :data:`MAX_AGE` seconds, for what no key can see
(a cgroup directory's permissions). Staleness can only fail closed: a run whose profile
names a primitive the host has since lost is refused by the launcher (or by the host
creating its cgroup) and sealed as such; a primitive the host has since gained is simply
not used until the next probe. The cached snapshot is the very object recorded, so h_p is
the digest of what the run was admitted against, as without the cache.
"""

from __future__ import annotations

import os
import threading
import time

import blake3

from bvisor.contract.profile import ProfileSnapshot

__all__ = ["MAX_AGE", "cached_linux_profile", "forget_profiles"]

MAX_AGE = 300.0
_KEY_FILES = (
    "/proc/sys/kernel/random/boot_id",
    "/proc/self/status",  # credentials and capabilities (Uid, Gid, Groups, Cap*, NoNewPrivs)
    "/proc/self/cgroup",
    "/proc/self/mountinfo",
    "/proc/sys/user/max_user_namespaces",
    "/proc/sys/kernel/seccomp/actions_avail",
)
_STATUS_FIELDS = (b"Uid:", b"Gid:", b"Groups:", b"CapInh:", b"CapPrm:", b"CapEff:", b"CapBnd:")

_lock = threading.Lock()
_cache: dict[bytes, tuple[float, ProfileSnapshot]] = {}


def cached_linux_profile(launcher_path: str) -> ProfileSnapshot:
    """The profile for ``launcher_path``: the cached one if its key still holds, else probed."""
    from bvisor.launcher.host.probe import linux_profile

    key = _key(launcher_path)
    now = time.monotonic()
    with _lock:
        held = _cache.get(key)
        if held is not None and now - held[0] < MAX_AGE:
            return held[1]
    snapshot = linux_profile(launcher_path)
    with _lock:
        _cache.clear()  # one host, one current key: older keys can never match again
        _cache[key] = (now, snapshot)
    return snapshot


def forget_profiles() -> None:
    """Drop every cached profile (the next run probes)."""
    with _lock:
        _cache.clear()


def _key(launcher_path: str) -> bytes:
    hasher = blake3.blake3()
    hasher.update(os.uname().release.encode() + b"\0" + launcher_path.encode() + b"\0")
    for path in _KEY_FILES:
        hasher.update(path.encode() + b"\0" + _read(path) + b"\0")
    for link in ("/proc/self/ns/user", "/proc/self/ns/mnt", "/proc/self/ns/cgroup"):
        try:
            hasher.update(os.readlink(link).encode() + b"\0")
        except OSError:
            hasher.update(b"?\0")
    try:
        st = os.stat(launcher_path)
        stamp = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    except OSError:
        stamp = (-1, -1, -1, -1, -1)
    hasher.update(repr(stamp).encode())
    return hasher.digest()


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError:
        return b"?"
    if path == "/proc/self/status":  # only the lines that say who we are
        return b"\n".join(line for line in data.splitlines() if line.startswith(_STATUS_FIELDS))
    return data
