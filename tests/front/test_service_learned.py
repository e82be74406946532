"""What ``bvisor serve`` learns from its copies (:mod:`bvisor.front.service.learned`).

Real pipes, this host's real profile and the real planner: the oracle of "learned" is the
planner's memo, seen as identity (``plan_boundary`` hands back the very plan object the
learner made, which it does only from its memo), and the bytes on the pipe.
"""

from __future__ import annotations

import fcntl
import os
import struct
from pathlib import Path

import pytest

from bvisor import canonical
from bvisor.front.defaults import default_spec
from bvisor.front.service import learned
from bvisor.launcher.host.backend import LinuxBackend
from bvisor.launcher.host.profile_cache import forget_profiles
from bvisor.planner import planning


def _frame(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def _told(data: bytes) -> int:
    """The read end of a pipe holding ``data``, its write end closed."""
    read, write = os.pipe2(os.O_CLOEXEC)
    os.write(write, data)
    os.close(write)
    return read


def _closed(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return True
    return False


@pytest.fixture
def spec_bytes(tmp_path: Path) -> bytes:
    snapshot = LinuxBackend().probe()
    spec = default_spec(["/bin/true"], cwd=str(tmp_path), snapshot=snapshot)
    return canonical.encode(spec.to_value())


def _spec(data: bytes) -> object:
    from bvisor.contract.spec import BoundarySpec

    return BoundarySpec.from_value(canonical.decode(data))


def test_a_told_spec_is_planned_into_the_memo_a_copy_inherits(spec_bytes: bytes) -> None:
    learner = learned.Learner()
    fd = _told(_frame(spec_bytes))
    learner.read(fd)
    assert _closed(fd) and learner.told == 1 and learner.pending
    learner.step()
    assert learner.planned == 1 and not learner.pending
    snapshot = LinuxBackend().probe()
    made = planning.plan_boundary(_spec(spec_bytes), snapshot)  # type: ignore[arg-type]
    assert planning.plan_boundary(_spec(spec_bytes), snapshot) is made  # type: ignore[arg-type]
    # Told again (a copy that missed it): counted, not planned twice.
    learner.read(_told(_frame(spec_bytes)))
    assert learner.told == 2 and not learner.pending


def test_a_new_profile_plans_the_recent_specs_again(spec_bytes: bytes) -> None:
    learner = learned.Learner()
    learner.read(_told(_frame(spec_bytes)))
    learner.step()
    forget_profiles()  # the next probe is a new snapshot object, as after a change
    learner.step()
    assert learner.planned == 2
    fresh = LinuxBackend().probe()
    held = planning.plan_boundary(_spec(spec_bytes), fresh)  # type: ignore[arg-type]
    assert held.profile is fresh


def test_what_is_not_a_spec_is_dropped_and_counted(spec_bytes: bytes) -> None:
    learner = learned.Learner()
    cut = _frame(spec_bytes)[:-1]
    learner.read(_told(_frame(b"\xa1\x61x\x01") + _frame(b"not cbor") + cut))
    assert learner.told == 2  # the cut last frame is not a frame
    learner.step()
    learner.step()
    assert learner.planned == 0 and not learner.pending


def test_more_than_a_copy_may_tell_is_dropped_whole(spec_bytes: bytes) -> None:
    learner = learned.Learner()
    read, write = os.pipe2(os.O_CLOEXEC)
    fcntl.fcntl(write, fcntl.F_SETPIPE_SZ, 1 << 20)
    os.write(write, _frame(spec_bytes) + _frame(b"\0" * learned.MAX_TOLD))
    os.close(write)
    learner.read(read)
    assert _closed(read) and learner.told == 0 and not learner.pending


def test_a_copy_tells_only_what_it_planned_itself(tmp_path: Path, spec_bytes: bytes) -> None:
    snapshot = LinuxBackend().probe()
    planning.plan_boundary(_spec(spec_bytes), snapshot)  # type: ignore[arg-type]
    learned.forget_inherited()  # as a copy does first: the service's plans are not its own
    other = tmp_path / "other"
    other.mkdir()
    mine = default_spec(["/bin/true"], cwd=str(other), snapshot=snapshot)
    planning.plan_boundary(mine, snapshot)
    read, write = os.pipe2(os.O_CLOEXEC)
    learned.tell(write)
    assert _closed(write)
    assert os.read(read, 1 << 20) == _frame(canonical.encode(mine.to_value()))
    os.close(read)


def test_telling_never_waits_for_a_reader(tmp_path: Path) -> None:
    snapshot = LinuxBackend().probe()
    learned.forget_inherited()
    planning.plan_boundary(
        default_spec(["/bin/true"], cwd=str(tmp_path), snapshot=snapshot), snapshot
    )
    read, write = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
    size = fcntl.fcntl(write, fcntl.F_GETPIPE_SZ)
    os.write(write, b"\0" * size)  # full: nobody reads until the copy has exited
    fcntl.fcntl(write, fcntl.F_SETFL, 0)  # blocking, as the copy's end is
    learned.tell(write)  # returns (what does not fit is not learned)
    assert _closed(write)
    os.close(read)
