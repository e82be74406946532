"""Tie the launcher's life to its host's.

The host enforces the wall-clock deadline and tears down the run cgroup; a launcher that
outlived a killed host would keep a workload running with nobody enforcing either. So the
launcher asks the kernel for SIGKILL when its parent dies (``PR_SET_PDEATHSIG``), then
checks its parent is still the host that started it — if the host died before the prctl
took effect, the launcher has already been re-parented and must not go on. The workload
in turn dies with the launcher (the child window sets the same signal), and whatever it
left in the run cgroup is reaped by the next run on this host.
"""

from __future__ import annotations

import ctypes
import os
import signal

__all__ = ["HostGone", "die_with_host"]

_PR_SET_PDEATHSIG = 1


class HostGone(RuntimeError):
    """The host that started the launcher is no longer its parent."""


def die_with_host(host_pid: int) -> None:
    """SIGKILL this process when its parent dies; raise if the parent is not ``host_pid``."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl(PR_SET_PDEATHSIG): {os.strerror(err)}")
    if os.getppid() != host_pid:
        raise HostGone(f"parent is {os.getppid()}, not the host {host_pid}: the host is gone")
