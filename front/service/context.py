"""Is another process in the same context as this one? The kernel's account, from /proc.

A run made on a caller's behalf must be the run the caller would have made itself, and
must never give a confined caller more than it has. So both the client and the service
compare, from ``/proc``, everything that shapes what a process can do: its namespaces,
its root directory, its cgroups, its credentials and capabilities, ``no_new_privs``, its
seccomp mode, its LSM label and its resource limits. A process in seccomp filter mode, on
either side, is a difference: which filters it is under cannot be read from ``/proc``, so
a caller under a filter the service lacks would be served without it. Landlock leaves no
trace in ``/proc`` at all, and ``no_new_privs`` differing is no evidence of it (a service
may have it too), so the service also requires a proof only a caller that may inspect it
can give (``server._Proof``), which the kernel refuses a process in a Landlock domain the
service is not in.

Standard library only.
"""

from __future__ import annotations

import os

__all__ = ["context_difference"]

_NAMESPACES = ("user", "mnt", "net", "pid", "ipc", "uts", "cgroup", "time")
_STATUS_FIELDS = (
    "Uid:",
    "Gid:",
    "Groups:",
    "CapInh:",
    "CapPrm:",
    "CapEff:",
    "CapBnd:",
    "CapAmb:",
    "NoNewPrivs:",
    "Seccomp:",
)


def context_difference(pid: int) -> str | None:
    """What differs between process ``pid`` and this one (None: nothing we can see)."""
    mine, theirs = f"/proc/{os.getpid()}", f"/proc/{pid}"
    for name in _NAMESPACES:
        try:
            if os.readlink(f"{mine}/ns/{name}") != os.readlink(f"{theirs}/ns/{name}"):
                return f"{name} namespace"
        except OSError as exc:
            return f"{name} namespace unreadable ({exc.strerror})"
    try:
        here, there = os.stat(f"{mine}/root/"), os.stat(f"{theirs}/root/")
    except OSError as exc:
        return f"root directory unreadable ({exc.strerror})"
    if (here.st_dev, here.st_ino) != (there.st_dev, there.st_ino):
        return "root directory"
    for name, pick in (("cgroup", None), ("status", _STATUS_FIELDS), ("limits", None)):
        try:
            ours = _read(f"{mine}/{name}", pick)
            if ours != _read(f"{theirs}/{name}", pick):
                return "credentials or confinement" if name == "status" else name
        except OSError as exc:
            return f"{name} unreadable ({exc.strerror})"
        if name == "status" and "Seccomp:\t0" not in ours:  # the same on both sides
            return "seccomp filter mode (filters cannot be compared from /proc)"
    if _label(mine) != _label(theirs):
        return "security label (LSM)"
    return None


def _label(pid_dir: str) -> str:
    """The process's LSM label (``attr/current``), or the error reading it gave: no label
    module here answers EINVAL for both."""
    try:
        with open(f"{pid_dir}/attr/current", "rb") as handle:
            return handle.read(4096).decode("utf-8", "replace")
    except OSError as exc:
        return f"errno {exc.errno}"


def _read(path: str, fields: tuple[str, ...] | None) -> list[str]:
    with open(path, encoding="utf-8", errors="replace") as handle:
        lines = handle.read().splitlines()
    if fields is None:
        return lines
    return [line for line in lines if line.startswith(fields)]
