"""The resident launcher's wire: the messages between the host and a launcher kept running.

A resident launcher is ``bvisor-linux-launcher`` started once and handed one run after
another over a ``SOCK_SEQPACKET`` socket pair (each message arrives whole or not at all,
and fds travel with it as ``SCM_RIGHTS``). Both sides read the layouts from here.

Start-up, launcher to host, once::

    HELLO   b"H" + canonical {"pid": int, "code": hex, "entry": hex, "modules": [text]}

``entry`` is the BLAKE3 of the launcher file the host executed (by fd), ``code`` the
digest of the code the launcher loaded (see :mod:`bvisor.launcher.wire.identity`); every
run the resident starts repeats both in its transcript, exactly as a fresh launcher would.

One run, host to launcher on the start socket, with fds ``[reply, *placed]``::

    REQUEST b"R" + canonical {"slots": [int, ...], "plan": int, "control": int, "gate": int}

``placed[i]`` goes to fd number ``slots[i]`` in the run's launcher, which the resident
forks for it (in its own process group); ``plan``, ``control`` and ``gate`` name which of
those slots are the sealed launch envelope, the control channel and the gate (the
variables of :mod:`bvisor.launcher.wire.channel`; ``gate`` may be left out, as by a host
that records the plan before it hands the run over); ``reply`` is the run's own socket
pair, on which
the rest of the run's conversation happens, so runs never share a channel:

    SPAWNED b"P" + pid (8 bytes, little-endian)   launcher -> host: the run's launcher
    EXITED  b"E"                                  launcher -> host: it exited, not reaped
    REAP    b"K"                                  host -> launcher: group killed, reap it
    STATUS  b"X" + status (4 bytes, signed)       launcher -> host: exit code, -N: signal N
    REFUSED b"N" + utf-8 reason                   launcher -> host: request not served

EXITED before STATUS keeps today's guarantee: the run's launcher stays a zombie, holding
its process group id, until the host has killed that group — so the kill can never reach
a process that reused the number. If the host closes its end of ``reply`` the resident
kills that run's group; if the host closes the start socket (the host process is gone)
the resident kills every run it holds and exits.
"""

from __future__ import annotations

from bvisor import canonical

__all__ = [
    "EXITED",
    "HELLO",
    "MAX_MESSAGE",
    "MAX_PLACED",
    "REAP",
    "REFUSED",
    "REQUEST",
    "RESIDENT_FD_ENV",
    "SPAWNED",
    "STATUS",
    "Request",
    "WireError",
    "decode_hello",
    "decode_request",
    "decode_spawned",
    "decode_status",
    "encode_hello",
    "encode_request",
    "encode_spawned",
    "encode_status",
]

RESIDENT_FD_ENV = "BVISOR_RESIDENT_FD"  # set only for a resident launcher: its start socket

HELLO, REQUEST, SPAWNED, EXITED, REAP, STATUS, REFUSED = (
    b"H",
    b"R",
    b"P",
    b"E",
    b"K",
    b"X",
    b"N",
)
MAX_MESSAGE = 64 * 1024
MAX_PLACED = 250  # below the kernel's SCM_MAX_FD (253), with the reply socket


class WireError(ValueError):
    """A resident message that is not what this layout says."""


def encode_hello(pid: int, code: str, entry: str, modules: list[str]) -> bytes:
    return HELLO + canonical.encode({"pid": pid, "code": code, "entry": entry, "modules": modules})


def decode_hello(message: bytes) -> dict[str, object]:
    value = _body(message, HELLO, "hello")
    if set(value) != {"pid", "code", "entry", "modules"}:
        raise WireError(f"hello has fields {sorted(value)}")
    pid, code, entry, modules = value["pid"], value["code"], value["entry"], value["modules"]
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        raise WireError(f"hello pid {pid!r} is not a positive int")
    for name, text in (("code", code), ("entry", entry)):
        if not isinstance(text, str) or not text:
            raise WireError(f"hello {name} is not a digest")
    if not isinstance(modules, list) or not all(isinstance(m, str) for m in modules):
        raise WireError("hello modules is not a list of names")
    return value


class Request:
    """Where a run's fds go, and which of them are its plan, control channel and gate."""

    __slots__ = ("control", "gate", "plan", "slots")

    def __init__(self, slots: list[int], plan: int, control: int, gate: int | None = None):
        self.slots = slots
        self.plan = plan
        self.control = control
        self.gate = gate


def encode_request(request: Request) -> bytes:
    value: dict[str, canonical.Value] = {
        "slots": request.slots,
        "plan": request.plan,
        "control": request.control,
    }
    if request.gate is not None:
        value["gate"] = request.gate
    return REQUEST + canonical.encode(value)


def decode_request(message: bytes, fd_count: int) -> Request:
    """The request that came with ``fd_count`` fds (the reply socket included)."""
    value = _body(message, REQUEST, "request")
    if set(value) - {"gate"} != {"slots", "plan", "control"}:
        raise WireError(f"request has fields {sorted(value)}, not slots, plan, control, gate")
    slots, plan, control = value["slots"], value["plan"], value["control"]
    gate = value.get("gate")
    if not isinstance(slots, list) or not all(_is_fd_number(s) for s in slots):
        raise WireError("request slots must be fd numbers")
    if len(set(slots)) != len(slots):
        raise WireError("request places two fds at one number")
    if len(slots) > MAX_PLACED or fd_count != len(slots) + 1:
        raise WireError(f"request names {len(slots)} slots but carried {fd_count} fds")
    named = [plan, control] + ([] if gate is None else [gate])
    numbers = [n for n in named if isinstance(n, int) and _is_fd_number(n)]
    if len(numbers) != len(named) or len(set(numbers)) != len(numbers):
        raise WireError("request plan, control and gate must be different fd numbers")
    if not all(n in slots and n >= 3 for n in numbers):
        raise WireError("request plan, control and gate must be placed slots above stdio")
    return Request([int(s) for s in slots], *numbers)


def _is_fd_number(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 65536


def encode_spawned(pid: int) -> bytes:
    return SPAWNED + pid.to_bytes(8, "little")


def decode_spawned(message: bytes) -> int:
    if len(message) != 9 or message[:1] != SPAWNED:
        raise WireError(f"expected a spawned message, got {message[:16]!r}")
    return int.from_bytes(message[1:], "little")


def encode_status(status: int) -> bytes:
    return STATUS + status.to_bytes(4, "little", signed=True)


def decode_status(message: bytes) -> int:
    if len(message) != 5 or message[:1] != STATUS:
        raise WireError(f"expected a status message, got {message[:16]!r}")
    return int.from_bytes(message[1:], "little", signed=True)


def _body(message: bytes, tag: bytes, name: str) -> dict[str, object]:
    if message[:1] != tag:
        raise WireError(f"expected a {name} message, got tag {message[:1]!r}")
    try:
        value = canonical.decode(message[1:])
    except canonical.CanonicalError as exc:
        raise WireError(f"{name} is not canonical CBOR: {exc}") from None
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise WireError(f"{name} is not a map of names")
    return value
