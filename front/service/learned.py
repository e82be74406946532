"""What the service learns from its copies: the specs they planned, planned again here.

A command's copy is forked from the service and inherits its planner memo
(:func:`bvisor.planner.planning.plan_boundary`), but what a copy plans dies with it, so
every copy planned the same spec anew (about a quarter of a served run's time). Each copy
is given the write end of a pipe; as it leaves it writes the canonical bytes of the specs it
planned anew (:func:`tell`). The service reads them when the copy has exited and, while no
command is waiting to be accepted, plans each one itself (:class:`Learner`): the next copy
finds that plan in the memo it inherits.

Nothing here can weaken a run. A plan is a pure function of the spec and the profile
snapshot; the service plans the spec with the same code a copy would run, against the
snapshot object its copies inherit (the memo is keyed by that object), and refusals are
not kept. The bytes come from the service's own copy (same code, same user, past the
boundary's host side) over a pipe no workload holds, and are decoded strictly and parsed
as a spec like any spec file; anything that is not a spec the service can plan is dropped,
and the copy plans it as before. When the profile changes (a new probe: a changed key or
the cache's age) the specs learned lately are planned again against the new snapshot.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import struct
from collections import deque

__all__ = ["MAX_TOLD", "Learner", "forget_inherited", "tell"]

MAX_TOLD = 60 * 1024  # below a pipe's 64 KiB: a copy's message never waits for a reader
_LENGTH = struct.Struct(">I")
_RECENT = 8  # specs planned again after the profile changes


def forget_inherited() -> None:
    """In a copy, first thing: what the service planned is not this copy's to tell."""
    from bvisor.planner.planning import take_fresh_specs

    take_fresh_specs()


def tell(fd: int) -> None:
    """In a copy, as it leaves: write the specs it planned anew to ``fd`` and close it.

    Never blocks and never raises: what does not fit (or cannot be written) is not learned.
    """
    from bvisor.planner.planning import take_fresh_specs

    try:
        message = bytearray()
        for spec in take_fresh_specs():
            if len(message) + _LENGTH.size + len(spec) <= MAX_TOLD:
                message += _LENGTH.pack(len(spec)) + spec
        if message:
            flags = fcntl.fcntl(fd, fcntl.F_GETFL)
            fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_NONBLOCK)
            os.write(fd, message)
    except Exception:  # a copy on its way out: learning is an optimisation, never a fault
        pass
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)


def _frames(data: bytes) -> list[bytes]:
    """The complete frames of ``data`` (a cut last frame is dropped)."""
    specs: list[bytes] = []
    at = 0
    while at + _LENGTH.size <= len(data):
        (size,) = _LENGTH.unpack_from(data, at)
        at += _LENGTH.size
        if at + size > len(data):
            break
        specs.append(data[at : at + size])
        at += size
    return specs


class Learner:
    """The service's side: specs its copies told, planned one at a time while idle."""

    def __init__(self) -> None:
        self._pending: deque[bytes] = deque()
        self._recent: deque[bytes] = deque(maxlen=_RECENT)
        self._snapshot: object | None = None
        self.told = 0  # specs the copies said they planned themselves
        self.planned = 0  # plans made here for the copies (each spec, each snapshot)

    @property
    def pending(self) -> bool:
        return bool(self._pending)

    def read(self, fd: int) -> None:
        """Take what a copy that has exited wrote to ``fd`` (the read end), and close it."""
        data = b""
        try:
            flags = fcntl.fcntl(fd, fcntl.F_GETFL)
            fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_NONBLOCK)
            while len(data) <= MAX_TOLD:
                chunk = os.read(fd, MAX_TOLD + 1 - len(data))
                if not chunk:
                    break
                data += chunk
        except OSError:
            pass  # nothing more now (a helper of the copy may still hold the write end)
        finally:
            with contextlib.suppress(OSError):
                os.close(fd)
        if len(data) > MAX_TOLD:
            return
        for spec in _frames(data):
            self.told += 1
            if spec not in self._pending and spec not in self._recent:
                self._pending.append(spec)

    def step(self) -> None:
        """Plan one pending spec; with none pending, re-plan the recent ones if the profile
        the copies inherit is no longer the one they were planned against."""
        snapshot = self._profile()
        if snapshot is None:
            return
        if snapshot is not self._snapshot:
            self._snapshot = snapshot
            self._pending.extend(s for s in self._recent if s not in self._pending)
            self._recent.clear()
        if not self._pending:
            return
        spec = self._pending.popleft()
        self._recent.append(spec)
        if _plan(spec, snapshot):
            self.planned += 1

    @staticmethod
    def _profile() -> object | None:
        from bvisor.launcher.host.backend import LinuxBackend

        try:
            return LinuxBackend().probe()
        except Exception:  # a probe that fails here fails in the copy too, as before
            return None


def _plan(data: bytes, snapshot: object) -> bool:
    """Plan the spec ``data`` encodes against ``snapshot``; False when it cannot be."""
    from bvisor import canonical
    from bvisor.contract.profile import ProfileSnapshot
    from bvisor.contract.spec import BoundarySpec
    from bvisor.planner.planning import plan_boundary

    if not isinstance(snapshot, ProfileSnapshot):
        return False
    try:
        spec = BoundarySpec.from_value(canonical.decode(data))
        plan_boundary(spec, snapshot)
    except Exception:  # not a spec this service can plan: its copy plans (or refuses) it
        return False
    return True
