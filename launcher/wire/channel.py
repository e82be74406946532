"""How the host hands a launch to the launcher process: the variables naming its channel fds.

The launcher starts with an empty environment except these five; both sides read the
names from here.

The gate: the host records the plan (``plan.admitted``, durable) while the launcher
verifies it and assembles the child's program, and writes an opening (:func:`gate_message`)
to the gate once the record is on disk. The launcher creates no child before it has read
it; an end of file instead (the host could not record the plan, or was stopped) ends the launch
before anything was created. So the workload never starts before its plan is recorded,
and the record costs the run no time of its own.

The gate also carries the run's wall deadline, which is final only once the plan is
recorded (the record's time is not the run's, so the deadline moves by as much): the
opening is :data:`GATE_OPEN` and 8 bytes big-endian, the deadline on ``CLOCK_MONOTONIC``
in nanoseconds, 0 when the run has no wall budget. One fixed length, so the launcher reads
exactly that much and never waits for the host to close its end. The launcher is the
host's child (or its resident launcher's fork) on the same boot, in the same time
namespace, so the clock is the one the host's watchdog reads. The launcher's own work
after the workload exits (the outputs walk) stops by it, so nothing the launcher does
after the workload can outrun the budget.
"""

from __future__ import annotations

__all__ = [
    "CONTROL_FD_ENV",
    "GATE_BYTES",
    "GATE_FD_ENV",
    "GATE_OPEN",
    "HOST_PID_ENV",
    "LAUNCHER_FD_ENV",
    "PLAN_FD_ENV",
    "GateError",
    "gate_message",
    "parse_gate",
]

PLAN_FD_ENV = "BVISOR_PLAN_FD"  # the sealed memfd holding the launch envelope
CONTROL_FD_ENV = "BVISOR_CONTROL_FD"  # the pipe the launcher writes its states and notes to
LAUNCHER_FD_ENV = "BVISOR_LAUNCHER_FD"  # the launcher file the host hashed and executed
HOST_PID_ENV = "BVISOR_HOST_PID"  # the host's pid, so the launcher can die with it
GATE_FD_ENV = "BVISOR_GATE_FD"  # the pipe the host opens once the plan is recorded
GATE_OPEN = b"G"
_DEADLINE_BYTES = 8
GATE_BYTES = len(GATE_OPEN) + _DEADLINE_BYTES  # an opening's length, always
_NO_DEADLINE = 0


class GateError(ValueError):
    """The gate's bytes are not an opening (the host did not open it)."""


def gate_message(deadline_ns: int | None) -> bytes:
    """What the host writes to open the gate: the opening and the deadline (0: none)."""
    value = _NO_DEADLINE if deadline_ns is None else max(deadline_ns, 1)
    return GATE_OPEN + value.to_bytes(_DEADLINE_BYTES, "big")


def parse_gate(data: bytes) -> int | None:
    """The deadline (CLOCK_MONOTONIC ns) an opening carries, or None for no deadline.

    GateError unless ``data`` is an opening: a gate that ended without opening (fewer
    bytes, none at all) or said anything else opens nothing."""
    if len(data) != GATE_BYTES or not data.startswith(GATE_OPEN):
        raise GateError(f"the gate said {data[:GATE_BYTES]!r}, not an opening")
    value = int.from_bytes(data[len(GATE_OPEN) :], "big")
    return None if value == _NO_DEADLINE else value
