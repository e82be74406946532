"""The launcher's reading of the child's cgroup-join report (``Launcher._await_join``), over
a real pipe: 'J' lets the child go; anything else faults the launch, naming what it saw,
and never as an internal error (a cut record included)."""

from __future__ import annotations

import errno
import os
import sys

import pytest

from bvisor.launcher.process.main import Launcher
from bvisor.launcher.process.program import Fault


def _await(written: bytes) -> None:
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, written)
        os.close(write_end)
        write_end = -1
        Launcher.__new__(Launcher)._await_join(read_end, [])
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)


def _failure(index: int, err: int, detail: bytes) -> bytes:
    return (
        b"E"
        + index.to_bytes(2, sys.byteorder)
        + err.to_bytes(4, sys.byteorder, signed=True)
        + bytes([len(detail)])
        + detail
    )


def test_the_join_report_lets_the_child_go() -> None:
    _await(b"J")


@pytest.mark.parametrize(
    ("written", "said"),
    [
        (b"", "exited before joining"),
        (b"O\x00\x00", "status byte b'O'"),
        (b"R", "status byte b'R'"),
        (b"E", "cut failure record"),
        (b"E\x01\x00", "cut failure record"),
        (b"E\xff\xff\x13\x00\x00\x00\x20short", "cut failure record"),
    ],
)
def test_anything_but_the_join_report_faults_saying_what_it_saw(written: bytes, said: str) -> None:
    with pytest.raises(Fault) as caught:
        _await(written)
    assert caught.value.errno == errno.EPROTO
    assert said in caught.value.detail


def test_the_childs_own_failure_is_reported_with_its_errno() -> None:
    with pytest.raises(Fault) as caught:
        _await(_failure(0xFFFF, errno.ENOSPC, b"join cgroup v1 leaf 1"))
    assert caught.value.errno == errno.ENOSPC
    assert "join cgroup v1 leaf 1" in caught.value.detail
