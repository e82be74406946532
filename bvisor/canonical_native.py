"""Load the compiled canonical-CBOR validator (``bvisor._canonical_c``), building it if missing.

An installed bvisor has the module compiled by setuptools (``setup.py``'s ``cffi_modules``).
A plain source checkout does not, so :func:`validator` compiles it into the package
directory on first use, under an exclusive file lock so concurrent first uses do not race,
writing to a temporary directory and renaming the finished shared object into place.

The module is *imported* when this file is (so a process that hashes its loaded code,
like the launcher, sees it), but only *built* on first use. A module whose compiled-in
source digest differs from the C file beside it is stale (the C was edited after the build)
and is not used: it is rebuilt on disk for the next process, and this process goes without.

This file knows nothing about the canonical form itself: it hands bytes to the C and
returns the C's verdict as plain numbers and rule names (``bvisor.canonical`` words them).
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import io
import os
import struct
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from bvisor.sha256 import sha256

__all__ = ["RecordView", "Refused", "Shape", "Validator", "unavailable_reason", "validator"]

_MODULE = "bvisor._canonical_c"
_PACKAGE_DIR = Path(__file__).resolve().parent
_C_SOURCE = _PACKAGE_DIR / "canonical_native.c"
_LOCK_NAME = ".canonical_native.build.lock"
_RULE_PREFIX = "BV_CANON_"


class Refused(NamedTuple):
    """The C's refusal: the rule's name (``TRUNCATED``...), the offset, and its number."""

    rule: str
    offset: int
    arg: int


class Shape(NamedTuple):
    """Accepted bytes: the top item's major type and item count (0 for a scalar), and for a
    top-level array of at most ``span_cap`` items the ``(offset, length)`` of each item
    (None otherwise)."""

    major: int
    items: int
    spans: list[tuple[int, int]] | None


_RESULT_FIELDS = ("rule", "offset", "arg", "top_major", "top_count")
_PAIR = struct.Struct("=QQ")  # one span as the C writes it: offset, length (native uint64)


class _Buffers(NamedTuple):
    """A result struct and a span buffer, with views over both: reading numbers through a
    memoryview is much cheaper than through cdata fields."""

    result: Any  # struct bv_canon_result *
    spans: Any  # uint64_t[2 * capacity]
    numbers: memoryview  # the result as uint64s
    span_bytes: memoryview  # the span buffer as bytes
    capacity: int


def _new_buffers(ffi: Any, capacity: int) -> _Buffers:
    result = ffi.new("struct bv_canon_result *")
    spans = ffi.new("uint64_t[]", 2 * capacity)
    numbers = memoryview(ffi.buffer(result)).cast("B").cast("Q")
    span_bytes = memoryview(ffi.buffer(spans)).cast("B")
    return _Buffers(result, spans, numbers, span_bytes, capacity)


# Where each field sits when the result struct is read as uint64s (checked at load).
_RULE, _OFFSET, _ARG, _TOP_MAJOR, _TOP_COUNT = range(len(_RESULT_FIELDS))
_ARRAY, _MAP = 4, 5

SpansResult = list[tuple[int, int]] | Refused | None


class Validator:
    """Typed calls into one loaded module (``.ffi``/``.lib``).

    ``ok`` and ``array_spans`` are closures over their few names rather than methods: they
    run once per ledger record, where each attribute lookup is a measurable share.
    """

    def __init__(self, module: Any) -> None:
        ffi, lib = module.ffi, module.lib
        layout = tuple(ffi.offsetof("struct bv_canon_result", name) for name in _RESULT_FIELDS)
        if layout != (0, 8, 16, 24, 32) or ffi.sizeof("struct bv_canon_result") != 40:
            raise ImportError(f"struct bv_canon_result is not five uint64_t: {layout}")
        self._ffi = ffi
        self._validate = lib.bv_canon_validate
        self._lib_context_key = lib.bv_blake3_context_key
        self._lib_keyed = lib.bv_blake3_keyed
        self._lib_record = lib.bv_ledger_record
        if ffi.sizeof("struct bv_record_view") != _VIEW_NUMBERS * 8 + 64:
            raise ImportError("struct bv_record_view is not ten uint64_t and two digests")
        self.depth_cap: int = int(lib.BV_CANON_DEPTH_CAP)
        self.rules: dict[int, str] = {
            int(getattr(lib, name)): name[len(_RULE_PREFIX) :]
            for name in dir(lib)
            if name.startswith(_RULE_PREFIX) and name != _RULE_PREFIX + "DEPTH_CAP"
        }
        self.ok: Callable[[bytes, int], bool] = _ok_function(self._validate, ffi.NULL)
        self.array_spans: Callable[[bytes, int, int], SpansResult] = _spans_function(
            self._validate, self._buffers, self._refused, _ARRAY
        )
        self.map_spans: Callable[[bytes, int, int], SpansResult] = _spans_function(
            self._validate, self._buffers, self._refused, _MAP
        )
        self.ledger_record: Callable[[bytes, int, bytes], RecordView | None] = _record_function(
            ffi, lib.bv_ledger_record
        )

    def record_checker(
        self, max_depth: int, event_key: bytes
    ) -> Callable[..., tuple[Any, ...] | None]:
        """:attr:`ledger_record` bound to a depth and key, as a plain tuple, for one thread
        (a verify walk holds one)."""
        return _record_checker(self._ffi, self._lib_record, max_depth, event_key)

    def blake3_context_key(self, context: str) -> bytes:
        """BLAKE3's derive-key context key for ``context`` (computed once per context)."""
        encoded = context.encode("utf-8")
        out = self._ffi.new("unsigned char[32]")
        self._lib_context_key(encoded, len(encoded), out)
        return bytes(self._ffi.buffer(out))

    def blake3_keyed(self, key: bytes, flags: int, data: bytes) -> bytes:
        """BLAKE3 of ``data`` keyed by ``key`` with mode ``flags`` (tests: the C against
        the blake3 package; the ledger itself only calls :meth:`record_checker`)."""
        out = self._ffi.new("unsigned char[32]")
        self._lib_keyed(key, flags, data, len(data), out)
        return bytes(self._ffi.buffer(out))

    def _buffers(self, span_cap: int) -> _Buffers:
        return _new_buffers(self._ffi, span_cap)

    def _refused(self, code: int, numbers: memoryview) -> Refused:
        return Refused(self.rules.get(code, f"code {code}"), numbers[_OFFSET], numbers[_ARG])

    def check(self, data: bytes, max_depth: int, span_cap: int = 0) -> Refused | Shape:
        """The verdict on ``data`` with its detail (where and why, or the top item's shape).

        Fresh buffers per call: this is the path for refusals and tests, not the hot one.
        An array never has more items than bytes, so no more spans than that are kept.
        """
        span_cap = min(span_cap, len(data))
        result, spans, numbers, span_bytes, _ = self._buffers(span_cap)
        code = self._validate(data, len(data), max_depth, result, spans, span_cap)
        if code:
            return self._refused(code, numbers)
        major, count = numbers[_TOP_MAJOR], numbers[_TOP_COUNT]
        if major != _ARRAY or count > span_cap:
            return Shape(major, count, None)
        return Shape(major, count, list(_PAIR.iter_unpack(span_bytes[: _PAIR.size * count])))


def _ok_function(validate: Any, null: Any) -> Callable[[bytes, int], bool]:
    def ok(data: bytes, max_depth: int) -> bool:
        """True when ``data`` is canonical (no detail: the fast path)."""
        return not validate(data, len(data), max_depth, null, null, 0)

    return ok


_POOLED_CAPACITY = 64  # spans per pooled buffer; a larger request gets buffers of its own


def _spans_function(
    validate: Any,
    buffers_for: Callable[[int], _Buffers],
    refused: Callable[[int, memoryview], Refused],
    major: int,
) -> Callable[[bytes, int, int], SpansResult]:
    """The spans call for a top-level container of ``major``: an array's items, or a map's
    keys and values alternating (two spans per entry, so ``span_cap`` counts both)."""
    per_item = 2 if major == _MAP else 1
    # Buffers are taken from a pool for the length of one call and put back after their
    # results are read: the C runs without the GIL, so two threads never share one, and
    # list.pop/append are atomic. The pool holds at most one buffer per concurrent caller.
    pool: list[_Buffers] = []
    unpack_pairs = _PAIR.iter_unpack
    pair_size = _PAIR.size

    def spans_of(data: bytes, max_depth: int, span_cap: int) -> SpansResult:
        """``Validator.check``'s spans alone: None unless the bytes are a container of
        ``major`` with at most ``span_cap`` spans (the ledger's per-record call, so it
        builds nothing else)."""
        if span_cap > len(data):
            span_cap = len(data)  # a container never has more items than bytes
        if span_cap > _POOLED_CAPACITY:
            buffers = buffers_for(span_cap)
        else:
            buffers = pool.pop() if pool else buffers_for(_POOLED_CAPACITY)
        result, spans, numbers, span_bytes, _ = buffers
        code = validate(data, len(data), max_depth, result, spans, span_cap)
        if code:
            found: SpansResult = refused(code, numbers)
        else:
            count = numbers[_TOP_COUNT] * per_item
            if numbers[_TOP_MAJOR] != major or count > span_cap:
                found = None
            else:
                found = list(unpack_pairs(span_bytes[: pair_size * count]))
        if buffers.capacity == _POOLED_CAPACITY:
            pool.append(buffers)
        return found

    return spans_of


_VIEW_NUMBERS = 10  # struct bv_record_view: ten uint64_t, then two 32-byte digests


class RecordView(NamedTuple):
    """A strictly canonical ledger record's header, as ``bv_ledger_record`` read it: the
    numbers, the offsets of the byte items within the record, and the two digests it
    computed (``payload_ok``: the payload hashes to the hash the record claims)."""

    seq: int
    time_ns: int
    header_end: int
    prev_offset: int
    kind_offset: int
    kind_len: int
    run_offset: int
    run_len: int
    hash_offset: int
    payload_ok: int
    event_hash: bytes
    payload_hash: bytes


def _record_function(ffi: Any, check: Any) -> Callable[[bytes, int, bytes], RecordView | None]:
    # One view per concurrent caller, pooled as in _spans_function (the C drops the GIL).
    pool: list[Callable[..., tuple[Any, ...] | None]] = []

    def ledger_record(data: bytes, max_depth: int, event_key: bytes) -> RecordView | None:
        """The record's view when it is a strictly canonical ledger record of the right
        shape, else None (the caller's strict path then says what is wrong)."""
        one = pool.pop() if pool else _record_checker(ffi, check, max_depth, event_key)
        try:
            found = one(data, max_depth, event_key)
        finally:
            pool.append(one)
        return None if found is None else RecordView._make(found)

    return ledger_record


def _record_checker(
    ffi: Any, check: Any, max_depth: int, event_key: bytes
) -> Callable[..., tuple[Any, ...] | None]:
    """A record check owning one view: the caller keeps it to one thread at a time. Its
    result is a plain tuple in :class:`RecordView`'s field order (building the named tuple
    is a measurable share of a ledger walk). Given ``prev`` (32 bytes), a record that is
    not the event ``seq`` or does not link to ``prev`` is refused too."""
    view = ffi.new("struct bv_record_view *")
    null = ffi.NULL
    unpack = struct.Struct(f"={_VIEW_NUMBERS}Q32s32s").unpack_from
    numbers = memoryview(ffi.buffer(view)).cast("B")

    def checked(
        data: bytes, depth: int = max_depth, key: bytes = event_key, seq: int = 0, prev: Any = null
    ) -> tuple[Any, ...] | None:
        if check(data, len(data), depth, key, seq, prev, view):
            return None
        return unpack(numbers)

    return checked


_lock = threading.Lock()
_state: dict[str, Any] = {"resolved": False, "validator": None, "reason": None}


def _source_id_on_disk() -> str | None:
    try:
        return sha256(_C_SOURCE.read_bytes()).hexdigest()
    except OSError:
        return None  # no source beside the module (a stripped install): trust the module


def _import() -> tuple[Validator | None, str, str | None]:
    """Load the compiled module: (validator, "ok", None) or (None, status, why) with status
    ``missing`` (never built) or ``stale`` (built from another C source than the one here)."""
    try:
        module = importlib.import_module(_MODULE)
    except ImportError as exc:
        return None, "missing", f"{_MODULE} is not compiled ({exc})"
    try:
        built_from = module.ffi.string(module.lib.bv_canon_source_id()).decode("ascii")
    except Exception as exc:  # built by an older bvisor, before the source id existed
        return None, "stale", f"{_MODULE} is stale: it has no source id ({exc})"
    on_disk = _source_id_on_disk()
    if on_disk is not None and built_from != on_disk:
        return None, "stale", f"{_MODULE} is stale: built from another {_C_SOURCE.name}"
    try:
        return Validator(module), "ok", None
    except Exception as exc:
        return None, "broken", f"{_MODULE} is unusable: {exc}"


def _build() -> None:
    import shutil  # only a checkout's first use builds: not imported by every process
    import tempfile

    from bvisor._build_canonical import ffibuilder

    with tempfile.TemporaryDirectory(prefix="bvisor-canon-") as tmp:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            built = Path(ffibuilder.compile(tmpdir=tmp, verbose=False))
        staged = _PACKAGE_DIR / (built.name + ".tmp")
        shutil.copyfile(built, staged)
        os.chmod(staged, 0o755)
        os.replace(staged, _PACKAGE_DIR / built.name)


def _build_locked() -> str | None:
    """Build the module into the package directory; None, or why it could not be built."""
    lock_path = _PACKAGE_DIR / _LOCK_NAME
    try:
        lock_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        return f"cannot lock {lock_path} to build {_MODULE}: {exc}"
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        _build()
    except Exception as exc:  # cffi raises VerificationError / CompileError / OSError
        return f"cannot compile {_MODULE}: {exc}"
    finally:
        os.close(lock_fd)
    return None


def _resolve() -> None:
    """Decide, once per process, whether the native validator is used (building it if
    missing). A stale module already loaded here cannot be replaced in this process, so it
    is rebuilt on disk for the next one."""
    loaded, status, reason = _import()
    if status == "missing":
        failure = _build_locked()
        importlib.invalidate_caches()
        loaded, status, reason = (None, "missing", failure) if failure else _import()
    elif status == "stale":
        failure = _build_locked()
        reason = f"{reason}; " + ("rebuilt for the next process" if failure is None else failure)
    _state.update(resolved=True, validator=loaded, reason=reason)


def validator() -> Validator | None:
    """The native validator, or None when it is unavailable (see :func:`unavailable_reason`)."""
    if not _state["resolved"]:
        with _lock:
            if not _state["resolved"]:
                _resolve()
    found: Validator | None = _state["validator"]
    return found


def unavailable_reason() -> str | None:
    """Why :func:`validator` returns None (after it has been called), else None."""
    reason: str | None = _state["reason"]
    return reason


# Import (never build) now, so the module is loaded before anything hashes loaded code.
with contextlib.suppress(ImportError):
    importlib.import_module(_MODULE)
