"""How the host hands a launch to the launcher process: the variables naming its channel fds.

The launcher starts with an empty environment except these four; both sides read the
names from here.
"""

from __future__ import annotations

__all__ = ["CONTROL_FD_ENV", "HOST_PID_ENV", "LAUNCHER_FD_ENV", "PLAN_FD_ENV"]

PLAN_FD_ENV = "BVISOR_PLAN_FD"  # the sealed memfd holding the launch envelope
CONTROL_FD_ENV = "BVISOR_CONTROL_FD"  # the pipe the launcher writes its states and notes to
LAUNCHER_FD_ENV = "BVISOR_LAUNCHER_FD"  # the launcher file the host hashed and executed
HOST_PID_ENV = "BVISOR_HOST_PID"  # the host's pid, so the launcher can die with it
