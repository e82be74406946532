"""Bounded capture of one output stream, and line splitting for the control channel.

The host must drain stdout and stderr concurrently and without bound on *reading* (a
workload blocked on a full pipe would never finish), but with a bound on *keeping*: the
first ``cap`` bytes are kept, every byte is counted, and the sink says whether it
truncated. Callbacks see every chunk (for live pass-through), not only the kept ones.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["LineSplitter", "StreamSink"]


class StreamSink:
    """Keeps the first ``cap`` bytes of a stream and counts all of them."""

    def __init__(self, cap: int, callback: Callable[[bytes], None] | None = None) -> None:
        if cap < 0:
            raise ValueError("stream cap must not be negative")
        self.cap = cap
        self.total = 0
        self.truncated = False
        self._chunks: list[bytes] = []
        self._kept = 0
        self._callback = callback

    def feed(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = self.cap - self._kept
        if room > 0:
            part = chunk[:room]
            self._chunks.append(part)
            self._kept += len(part)
        if len(chunk) > max(room, 0):
            self.truncated = True
        if self._callback is not None:
            self._callback(chunk)

    def data(self) -> bytes:
        return b"".join(self._chunks)


class LineSplitter:
    """Splits the control byte stream into text lines (a partial last line is kept)."""

    def __init__(self, callback: Callable[[str], None] | None = None) -> None:
        self.lines: list[str] = []
        self._pending = b""
        self._callback = callback

    def feed(self, chunk: bytes) -> None:
        self._pending += chunk
        *complete, self._pending = self._pending.split(b"\n")
        for raw in complete:
            self._emit(raw)

    def close(self) -> None:
        if self._pending:
            self._emit(self._pending)
            self._pending = b""

    def _emit(self, raw: bytes) -> None:
        line = raw.decode("utf-8", "replace")
        self.lines.append(line)
        if self._callback is not None:
            self._callback(line)
