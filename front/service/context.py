"""Is another process in the same context as this one? The kernel's account, from /proc.

A run made on a caller's behalf must be the run the caller would have made itself, and
must never give a confined caller more than it has. So both the client and the service
compare, from ``/proc``, everything that shapes what a process can do: its namespaces,
its root directory, its cgroups, its credentials and capabilities, ``no_new_privs``, its
seccomp mode and its resource limits. Landlock leaves no trace in ``/proc``, but a
Landlock domain needs ``no_new_privs`` (or CAP_SYS_ADMIN, which a bvisor workload never
keeps), and the token file the client must read is outside any sandbox's view unless the
sandbox was given it.

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
            if _read(f"{mine}/{name}", pick) != _read(f"{theirs}/{name}", pick):
                return "credentials or confinement" if name == "status" else name
        except OSError as exc:
            return f"{name} unreadable ({exc.strerror})"
    return None


def _read(path: str, fields: tuple[str, ...] | None) -> list[str]:
    with open(path, encoding="utf-8", errors="replace") as handle:
        lines = handle.read().splitlines()
    if fields is None:
        return lines
    return [line for line in lines if line.startswith(fields)]
