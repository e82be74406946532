"""Bounded capture of one output stream, and line splitting for the control channel.

The host must drain stdout and stderr concurrently and without bound on *reading* (a
workload blocked on a full pipe would never finish), but with a bound on *keeping*: the
first ``cap`` bytes are kept, every byte is counted, and the sink says whether it
truncated. Callbacks see every chunk (for live pass-through), not only the kept ones.

Kept bytes do not stay in the host's memory: past a small head (``MEMORY_HEAD_BYTES``)
they spill to an unlinked temporary file, and the stream digest is computed as the bytes
arrive. So the host's resident memory does not grow with the workload's output, nor with
the capture cap — a workload that writes a gigabyte costs the supervisor a file, not its
heap (and the OOM killer's attention). :class:`Captured` is the finished, read-only view
the runner seals and records from, one ledger chunk at a time.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import IO

import blake3

from bvisor.digest import DIGEST_SIZE, Purpose

__all__ = [
    "MEMORY_HEAD_BYTES",
    "BoundedBuffer",
    "Captured",
    "LineSplitter",
    "StreamSink",
    "as_captured",
]

MEMORY_HEAD_BYTES = 64 * 1024
_READ_PIECE = 1024 * 1024


class Captured:
    """The kept bytes of one stream, read back from memory or from the spill file.

    ``digest`` is the ``bvisor.stream.v1`` digest of the kept bytes (what the report
    names); ``length`` how many were kept. ``pieces`` yields them in order, at most
    ``size`` bytes at a time, so a caller never needs them all at once.
    """

    def __init__(self, head: bytes, spill: IO[bytes] | None, length: int, digest: bytes) -> None:
        self._head = head
        self._spill = spill
        self.length = length
        self.digest = digest

    @classmethod
    def from_bytes(cls, data: bytes) -> Captured:
        hasher = blake3.blake3(derive_key_context=Purpose.STREAM.value)
        hasher.update(data)
        return cls(bytes(data), None, len(data), hasher.digest(length=DIGEST_SIZE))

    def pieces(self, size: int = _READ_PIECE) -> Iterator[bytes]:
        if size <= 0:
            raise ValueError("piece size must be positive")
        if self._spill is None:
            for offset in range(0, len(self._head), size):
                yield self._head[offset : offset + size]
            return
        offset = 0
        while offset < self.length:
            piece = os.pread(self._spill.fileno(), min(size, self.length - offset), offset)
            if not piece:
                raise OSError(f"capture spill file ended at {offset} of {self.length} bytes")
            yield piece
            offset += len(piece)

    def prefix(self, limit: int) -> bytes:
        """The first ``limit`` kept bytes (for a bounded display)."""
        out = bytearray()
        for piece in self.pieces(min(max(limit, 1), _READ_PIECE)):
            out += piece[: limit - len(out)]
            if len(out) >= limit:
                break
        return bytes(out)

    def data(self) -> bytes:
        """Every kept byte at once: for tests and small captures, never the hot path."""
        return b"".join(self.pieces())

    def close(self) -> None:
        if self._spill is not None:
            self._spill.close()
            self._spill = None
            self._head = b""


def as_captured(value: bytes | Captured) -> Captured:
    """Accept raw bytes where a capture is expected (tests build executions by hand)."""
    return value if isinstance(value, Captured) else Captured.from_bytes(value)


class StreamSink:
    """Keeps the first ``cap`` bytes of a stream and counts all of them."""

    def __init__(
        self,
        cap: int,
        callback: Callable[[bytes], None] | None = None,
        *,
        spill_dir: str | None = None,
    ) -> None:
        if cap < 0:
            raise ValueError("stream cap must not be negative")
        self.cap = cap
        self.total = 0
        self.truncated = False
        self._head = bytearray()
        self._spill: IO[bytes] | None = None
        self._spill_dir = spill_dir
        self._kept = 0
        self._hasher = blake3.blake3(derive_key_context=Purpose.STREAM.value)
        self._callback = callback

    @property
    def kept(self) -> int:
        return self._kept

    def feed(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = self.cap - self._kept
        if room > 0:
            part = chunk[:room]
            self._keep(part)
        if len(chunk) > max(room, 0):
            self.truncated = True
        if self._callback is not None:
            self._callback(chunk)

    def _keep(self, part: bytes) -> None:
        self._hasher.update(part)
        self._kept += len(part)
        if self._spill is None and len(self._head) + len(part) <= MEMORY_HEAD_BYTES:
            self._head += part
            return
        if self._spill is None:
            import tempfile  # here: most runs' output fits the memory head

            # O_TMPFILE where the filesystem has it: no name, gone when closed.
            self._spill = tempfile.TemporaryFile(  # noqa: SIM115 - lives as long as the capture
                dir=self._spill_dir, prefix="bvisor-capture-"
            )
            self._spill.write(self._head)
            self._head = bytearray()
        self._spill.write(part)

    def captured(self) -> Captured:
        """The finished capture (the sink hands its spill file over)."""
        spill, self._spill = self._spill, None
        if spill is not None:
            spill.flush()
        head = bytes(self._head)
        self._head = bytearray()
        return Captured(head, spill, self._kept, self._hasher.digest(length=DIGEST_SIZE))

    def data(self) -> bytes:
        if self._spill is None:
            return bytes(self._head)
        self._spill.flush()
        return os.pread(self._spill.fileno(), self._kept, 0)


class BoundedBuffer:
    """The first ``limit`` bytes of a stream in memory, and a count of all of them.

    For showing output where it cannot be streamed (``--json`` puts it in one document):
    the document stays bounded whatever the workload writes, and says when it was cut.
    """

    def __init__(self, limit: int) -> None:
        if limit < 0:
            raise ValueError("limit must not be negative")
        self.limit = limit
        self.total = 0
        self._data = bytearray()

    def feed(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = self.limit - len(self._data)
        if room > 0:
            self._data += chunk[:room]

    @property
    def truncated(self) -> bool:
        return self.total > len(self._data)

    def data(self) -> bytes:
        return bytes(self._data)


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
