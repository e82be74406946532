"""Stop signals during a run: what they raise, and holding them for indivisible steps.

Ctrl-C raises ``KeyboardInterrupt``; the backend catches it, kills the run tree, and the
runner seals and records before re-raising. A command-line host should treat SIGTERM and
SIGHUP (a supervisor stopping it, a closed terminal) the same way instead of dying with
the run half-recorded: :func:`stop_signals_interrupt` makes them raise
:class:`HostStopped`, a ``KeyboardInterrupt`` that remembers its signal. Only the command
line installs it; a library must not take over its caller's signal handlers.

A launcher line is kept for the report *and* appended to the ledger; a sealed report is
appended with its terminal and streams. If a stop signal lands between the two halves,
the report and the ledger disagree and replay (rightly) fails the run. Python raises
between any two bytecodes of the main thread, so the only way to make such a pair
indivisible is to hold the signal for its duration and deliver it after
(:func:`interrupts_held`). Only the main thread ever runs Python signal handlers, so
elsewhere holding is a no-op.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType
from typing import Any

__all__ = [
    "STOP_SIGNALS",
    "HeldInterrupts",
    "HostStopped",
    "interrupt_for",
    "interrupts_held",
    "signal_of",
    "stop_signals_interrupt",
]

# Ctrl-C, a polite kill, the terminal going away: each ends the run the same way.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class HostStopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised like Ctrl-C so the run is torn down, sealed and recorded."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


def signal_of(interrupt: BaseException) -> int:
    """The signal behind an interrupt: SIGINT for a plain ``KeyboardInterrupt``."""
    return interrupt.signum if isinstance(interrupt, HostStopped) else int(signal.SIGINT)


def interrupt_for(signum: int, report: object = None) -> KeyboardInterrupt:
    """The exception to re-raise once a run interrupted by ``signum`` is sealed; it carries
    the sealed ``report`` (as ``.report``), so a caller stopped mid-run can still say which
    run was recorded and how it ended."""
    stop = KeyboardInterrupt() if signum == signal.SIGINT else HostStopped(signum)
    stop.report = report  # type: ignore[attr-defined]
    return stop


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _restore(previous: Mapping[signal.Signals, Any]) -> None:
    """Put back the handlers ``signal.signal`` returned (None: one not set from Python)."""
    for signum, handler in previous.items():
        signal.signal(signum, signal.SIG_DFL if handler is None else handler)


@contextmanager
def stop_signals_interrupt() -> Iterator[None]:
    """SIGTERM and SIGHUP raise :class:`HostStopped` while the body runs (main thread only)."""
    if not _in_main_thread():
        yield
        return

    def stop(signum: int, _frame: FrameType | None) -> None:
        raise HostStopped(signum)

    previous = {signum: signal.signal(signum, stop) for signum in STOP_SIGNALS[1:]}
    try:
        yield
    finally:
        _restore(previous)


@dataclass
class HeldInterrupts:
    """Which stop signal arrived while held, if any (readable after the ``with`` block)."""

    signum: int | None = None

    @property
    def arrived(self) -> bool:
        return self.signum is not None


@contextmanager
def interrupts_held(*, redeliver: bool = True) -> Iterator[HeldInterrupts]:
    """Run the body whole. A stop signal meanwhile is re-raised after it, or only noted.

    Only signals with a Python handler are held (SIGINT always has one unless the caller
    changed it); an ignored or default-action signal keeps its meaning. With
    ``redeliver=False`` the caller takes over: ``held.signum`` says what arrived.
    """
    held = HeldInterrupts()
    if not _in_main_thread():
        yield held
        return

    def hold(signum: int, _frame: FrameType | None) -> None:
        if held.signum is None:
            held.signum = signum

    previous = {
        signum: signal.signal(signum, hold)
        for signum in STOP_SIGNALS
        if callable(signal.getsignal(signum))
    }
    try:
        yield held
    finally:
        _restore(previous)
        if held.signum is not None and redeliver:
            # Delivered to whatever handler the caller had: KeyboardInterrupt, HostStopped.
            signal.raise_signal(held.signum)
