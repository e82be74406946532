"""Hold Ctrl-C back for the few statements that must happen together.

A launcher line is kept for the report *and* appended to the ledger; a sealed report is
appended with its terminal and streams. If ``KeyboardInterrupt`` lands between the two
halves, the report and the ledger disagree and replay (rightly) fails the run. Python
raises the interrupt between any two bytecodes of the main thread, so the only way to
make such a pair indivisible is to hold SIGINT for its duration and deliver it after.

Only the main thread ever receives ``KeyboardInterrupt``, so elsewhere this is a no-op.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType


@dataclass
class HeldInterrupts:
    """Whether a SIGINT arrived while held (readable after the ``with`` block)."""

    arrived: bool = False


@contextmanager
def interrupts_held(*, redeliver: bool = True) -> Iterator[HeldInterrupts]:
    """Run the body whole. A SIGINT meanwhile is re-raised after it, or only noted.

    With ``redeliver=False`` the caller takes over: ``held.arrived`` says whether to act.
    """
    held = HeldInterrupts()
    if threading.current_thread() is not threading.main_thread():
        yield held
        return

    def hold(_signum: int, _frame: FrameType | None) -> None:
        held.arrived = True

    previous = signal.signal(signal.SIGINT, hold)
    try:
        yield held
    finally:
        signal.signal(signal.SIGINT, signal.SIG_DFL if previous is None else previous)
        if held.arrived and redeliver:
            # Delivered to whatever handler the caller had: usually KeyboardInterrupt.
            signal.raise_signal(signal.SIGINT)
