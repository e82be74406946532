"""How the host hands a launch to the launcher process: the variables naming its channel fds.

The launcher starts with an empty environment except these five; both sides read the
names from here.

The gate: the host records the plan (``plan.admitted``, durable) while the launcher
verifies it and assembles the child's program, and writes :data:`GATE_OPEN` to the gate
once the record is on disk. The launcher creates no child before it has read that byte; an
end of file instead (the host could not record the plan, or was stopped) ends the launch
before anything was created. So the workload never starts before its plan is recorded,
and the record costs the run no time of its own.
"""

from __future__ import annotations

__all__ = [
    "CONTROL_FD_ENV",
    "GATE_FD_ENV",
    "GATE_OPEN",
    "HOST_PID_ENV",
    "LAUNCHER_FD_ENV",
    "PLAN_FD_ENV",
]

PLAN_FD_ENV = "BVISOR_PLAN_FD"  # the sealed memfd holding the launch envelope
CONTROL_FD_ENV = "BVISOR_CONTROL_FD"  # the pipe the launcher writes its states and notes to
LAUNCHER_FD_ENV = "BVISOR_LAUNCHER_FD"  # the launcher file the host hashed and executed
HOST_PID_ENV = "BVISOR_HOST_PID"  # the host's pid, so the launcher can die with it
GATE_FD_ENV = "BVISOR_GATE_FD"  # the pipe the host opens (one byte) once the plan is recorded
GATE_OPEN = b"G"
