"""A run read from its proven records by their payloads' exact bytes: the audit's fast path.

The chain pass hands the audit every record it proved (``bvisor.ledger.ProvenRecord``:
strictly canonical, payload hashing to its ``payload_hash``) with the payload undecoded.
:func:`parse_records` makes of them exactly the :class:`~bvisor.replay.events.ParsedRun`
that :func:`~bvisor.replay.events.parse_run` makes of the decoded events, or returns None
— and then the audit decodes the events and parses them as before, which names what is
wrong. It is never the one to refuse a run, only the one to accept it sooner:

* every payload is decoded by the very decoder ``parse_run`` uses, and what a decoder
  makes of a payload is a pure function of its canonical bytes, so it is remembered by
  them (:mod:`bvisor.replay.memo`): a launcher line, a lowering entry (with the index
  the grammar expects there, the only other input), the spec, profile and admission of
  ``plan.admitted``, each field of the report body and each item of its lists;
* ``plan.admitted`` and ``report.sealed`` are taken apart by their map entries' byte spans
  (:func:`bvisor.canonical.map_spans`), so the parts a run shares with others (spec,
  profile, admission; most report facts) are neither decoded nor re-encoded again; a
  ``plan.admitted`` that is a recent one's but for its attempt id is found by comparing
  bytes (:func:`_admitted`);
* the report body is read field by field with :data:`bvisor.contract.report.BODY_FIELDS`
  (the table ``BoundaryReportBody.from_value`` reads it with), and its canonical form
  proven the same way: the body's bytes are its map head and its entries in canonical
  order, a list's are its head and its items, so the re-encoding of the rebuilt body is
  the recorded one exactly when every rebuilt field (every item of a list field) encodes
  to that field's (item's) recorded bytes;
* the run grammar of ``parse_run`` is checked on the kinds (:func:`check_order`), and
  remembered by them. A run with a ``note.*`` or ``network.decision`` event, a refused
  plan, or anything a decoder refuses goes the way it went before.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from operator import attrgetter
from typing import Any

import cbor2

from bvisor import canonical
from bvisor.contract.denials import DeniedAttempt
from bvisor.contract.events import (
    AFTER_ADMITTED,
    LAUNCHER_PHASE,
    LOWERING_ENTRY,
    PLAN_ADMITTED,
    REPORT_SEALED,
    RUN_DENIED,
    RUN_STREAMS,
    RUN_TERMINAL,
    SHAPES,
)
from bvisor.contract.report import BODY_FIELDS, BoundaryReportBody
from bvisor.digest import DIGEST_SIZE
from bvisor.ledger import ProvenRecord
from bvisor.replay import events as ev
from bvisor.replay.memo import Memo

__all__ = ["parse_records"]

_KIND_OF, _RUN_OF = attrgetter("kind"), attrgetter("run_id")
# Kinds a run read this way may hold (notes and network decisions go the slow way).
_KINDS = frozenset({PLAN_ADMITTED, *AFTER_ADMITTED})
# Kind sequences that passed the order check, by the sequence (all it reads but seqs,
# which only its refusals name).
_ORDERS: Memo[tuple[str, ...], bool] = Memo(256, 1 << 16)
# Launcher lines and lowering entries by payload bytes, each with the index the grammar
# expected where it was read (its payload holds it: a hit elsewhere is read again).
_LINES: Memo[bytes, tuple[int, str]] = Memo(8192, 16 * 1024)
_ENTRIES: Memo[bytes, tuple[int, ev.LoweringRecord]] = Memo(4096, 64 * 1024)
# The report body's other fields by their bytes (plan ids, backend, profile, exit...).
_FIELDS: dict[str, Memo[bytes, Any]] = {
    name: Memo(1024, 4096) for name, field in BODY_FIELDS.items() if not field.each
}
# Items of each of the report body's list fields, by the item's bytes.
_ITEMS: dict[str, Memo[bytes, Any]] = {
    name: Memo(4096, 16 * 1024) for name, field in BODY_FIELDS.items() if field.each
}

# The parts of plan.admitted decoded through the shared memo of bvisor.replay.events.
_ADMITTED_PARTS = frozenset({"spec", "profile", "admission"})


def _keys(*names: str) -> dict[bytes, str]:
    """Each key's canonical encoding -> the key (how a map entry's key span is named)."""
    return {canonical.encode(name): name for name in names}


_ADMITTED_KEYS = _keys(*SHAPES[PLAN_ADMITTED].required, *SHAPES[PLAN_ADMITTED].optional)
assert SHAPES[REPORT_SEALED].required == ("body", "seal")  # the layout _sealed reads
_SEALED_HEAD = b"\xa2" + canonical.encode("body")
_SEAL_HEAD = canonical.encode("seal") + b"\x58\x20"  # a byte string of DIGEST_SIZE
_SEAL_TAIL_SIZE = len(_SEAL_HEAD) + DIGEST_SIZE
_TERMINAL_KEYS = _keys(*SHAPES[RUN_TERMINAL].required)
_EMPTY_LIST = canonical.encode([])
_BODY_KEYS = _keys(*BODY_FIELDS)


def parse_records(run_id: bytes, records: Sequence[ProvenRecord]) -> ev.ParsedRun | None:
    """The run ``parse_run`` would parse from these records' events, or None (see module)."""
    try:
        return _parse(run_id, records)
    except (ev.GrammarError, *ev.DECODE_ERRORS):
        return None


def _parse(run_id: bytes, records: Sequence[ProvenRecord]) -> ev.ParsedRun | None:
    if not records or records[0].kind != PLAN_ADMITTED:
        return None
    kinds = tuple(map(_KIND_OF, records))
    if _ORDERS.table.get(kinds) is None:
        if not _KINDS.issuperset(kinds):
            return None
        ev.check_order(records)
        _ORDERS.put(kinds, True, len(kinds))
    if set(map(_RUN_OF, records)) != {run_id}:
        return None
    admitted = _admitted(records[0].payload_bytes())
    if admitted is None or admitted.attempt_id != run_id:
        return None
    lowering: list[ev.LoweringRecord] = []
    lowering_bytes: list[bytes] = []
    lines: list[str] = []
    terminal: ev.Terminal | None = None
    chunks: list[ev.StreamChunk] = []
    denied: list[DeniedAttempt] = []
    sealed: ev.Sealed | None = None
    line_memo, entry_memo = _LINES.table, _ENTRIES.table
    for seq, _, _, kind, _, _, _, raw, payload_at in records[1:]:
        data = raw[payload_at:]  # the payload's exact encoding (ProvenRecord.payload_bytes)
        if kind == LAUNCHER_PHASE:
            index = len(lines)
            line = line_memo.get(data)
            if line is None or line[0] != index:
                line = _LINES.put(
                    data, (index, ev.decode_phase(cbor2.loads(data), index)), len(data)
                )
            lines.append(line[1])
        elif kind == LOWERING_ENTRY:
            index = len(lowering)
            entry = entry_memo.get(data)
            if entry is None or entry[0] != index:
                decoded = ev.decode_lowering(cbor2.loads(data), index)
                entry = _ENTRIES.put(data, (index, decoded), len(data))
            lowering.append(entry[1])
            lowering_bytes.append(data)
        elif kind == RUN_TERMINAL:
            terminal = _terminal(data)
            if terminal is None:
                return None
        elif kind == RUN_STREAMS:
            chunks.append(ev.decode_chunk(cbor2.loads(data), seq))
        elif kind == RUN_DENIED:
            denied.append(ev.decode_denied(cbor2.loads(data), len(denied)))
        else:  # report.sealed: the order check left nothing else
            sealed = _sealed(data)
            if sealed is None:
                return None
    return ev.ParsedRun(
        run_id=run_id,
        admitted=admitted,
        refused=None,
        lowering=tuple(lowering),
        lines=tuple(lines),
        terminal=terminal,
        streams=tuple(chunks),
        sealed=sealed,
        denied=tuple(denied),
        lowering_bytes=tuple(lowering_bytes),
    )


def _entries(
    data: bytes, names: dict[bytes, str], offsets: dict[str, int] | None = None
) -> dict[str, bytes] | None:
    """A canonical map's values' bytes by key, when every key is one of ``names`` (and,
    into ``offsets``, where each value starts)."""
    spans = canonical.map_spans(data, max_entries=len(names))
    if spans is None:
        return None
    found: dict[str, bytes] = {}
    for at in range(0, len(spans), 2):
        (key_at, key_len), (value_at, value_len) = spans[at], spans[at + 1]
        name = names.get(data[key_at : key_at + key_len])
        if name is None:
            return None
        found[name] = data[value_at : value_at + value_len]
        if offsets is not None:
            offsets[name] = value_at
    return found


@dataclass(frozen=True, slots=True)
class _Template:
    """A ``plan.admitted`` payload read before, but for its attempt id's 32 bytes at
    ``at``: ``prefix`` is all before them, ``suffix`` all after."""

    size: int
    at: int
    prefix: bytes
    suffix: bytes
    admitted: ev.Admitted


# The last few plans read (most recent first): the runs of one command share one.
_TEMPLATES: list[_Template] = []
_TEMPLATE_LIMIT, _TEMPLATE_MAX = 8, 128 * 1024
_ATTEMPT_HEAD = b"\x58\x20"  # a byte string of DIGEST_SIZE


def _admitted(data: bytes) -> ev.Admitted | None:
    """``decode_admitted`` of this payload.

    A payload of the size of one read before, equal to it byte for byte but for the
    content of its ``attempt_id`` (a 32-byte string: any content is canonical), is that
    payload with another attempt id — and ``decode_admitted`` copies the attempt id into
    its result and reads it nowhere else — so it is the earlier result with this attempt
    id, found by comparing bytes (the key is the whole payload but those 32 bytes, which
    are the one input that differs)."""
    global _TEMPLATES
    for template in _TEMPLATES:  # one read of the global: it is replaced, never changed
        if (
            len(data) == template.size
            and data.startswith(template.prefix)
            and data.endswith(template.suffix)
        ):
            attempt = data[template.at : template.at + DIGEST_SIZE]
            return replace(template.admitted, attempt_id=attempt)
    offsets: dict[str, int] = {}
    parts = _entries(data, _ADMITTED_KEYS, offsets)
    if parts is None:
        return None
    payload: dict[str, object] = {
        name: ev.FROM_BYTES if name in _ADMITTED_PARTS else cbor2.loads(value)
        for name, value in parts.items()
    }
    admitted = ev.decode_admitted(payload, parts)
    at = offsets["attempt_id"] + len(_ATTEMPT_HEAD)
    if parts["attempt_id"][: len(_ATTEMPT_HEAD)] == _ATTEMPT_HEAD and len(data) <= _TEMPLATE_MAX:
        template = _Template(len(data), at, data[:at], data[at + DIGEST_SIZE :], admitted)
        _TEMPLATES = [template, *_TEMPLATES[: _TEMPLATE_LIMIT - 1]]
    return admitted


def _sealed(data: bytes) -> ev.Sealed | None:
    """``decode_sealed``: the payload is ``{body, seal}``, so its bytes are the map head,
    the key ``body``, the body's encoding, the key ``seal`` and a 32-byte string — proven
    so by those fixed bytes and by :func:`_body` proving the body one canonical map."""
    if not data.startswith(_SEALED_HEAD) or data[-_SEAL_TAIL_SIZE:-DIGEST_SIZE] != _SEAL_HEAD:
        return None
    body_bytes = data[len(_SEALED_HEAD) : -_SEAL_TAIL_SIZE]
    body = _body(body_bytes)
    if body is None:
        return None
    return ev.Sealed(body=body, body_bytes=body_bytes, seal=data[-DIGEST_SIZE:])


def _terminal(data: bytes) -> ev.Terminal | None:
    """``decode_terminal``, its budget witnesses read item by item as the report body's
    are (by the same reader, remembered by the same bytes: a run's report restates them)."""
    parts = _entries(data, _TERMINAL_KEYS)
    if parts is None or len(parts) != len(_TERMINAL_KEYS):
        return None
    witnesses = _items("budget_witnesses", parts["budget_witnesses"])
    if witnesses is _REFUSED:
        return None
    payload = {
        name: ev.FROM_BYTES if name == "budget_witnesses" else cbor2.loads(value)
        for name, value in parts.items()
    }
    return ev.decode_terminal(payload, witnesses)


def _body(data: bytes) -> BoundaryReportBody | None:
    """``BoundaryReportBody.from_value`` of the body these bytes encode, proven canonical
    (see module), or None for anything it or the canonical check would refuse."""
    spans = canonical.map_spans(data, max_entries=len(BODY_FIELDS))
    if spans is None or len(spans) != 2 * len(BODY_FIELDS):
        return None
    values: dict[str, Any] = {}
    for at, (name, key) in enumerate(_BODY_ORDER):
        (key_at, key_len), (value_at, value_len) = spans[2 * at], spans[2 * at + 1]
        if data[key_at : key_at + key_len] != key:
            return None  # a key the body does not have, so one it has is missing
        encoded = data[value_at : value_at + value_len]
        value = _items(name, encoded) if BODY_FIELDS[name].each else _field(name, encoded)
        if value is _REFUSED:
            return None
        values[name] = value
    return BoundaryReportBody(**values)


# The body's keys in the order a canonical map holds them (its keys' encodings, sorted).
_BODY_ORDER = sorted(((name, key) for key, name in _BODY_KEYS.items()), key=lambda kv: kv[1])
_REFUSED: Any = object()  # what _field and _items return for what they do not accept


def _field(name: str, encoded: bytes) -> Any:
    """A body field that is no list, read from its bytes (remembered by them) and proven
    to re-encode to them."""
    memo = _FIELDS[name]
    value = memo.table.get(encoded, _REFUSED)
    if value is _REFUSED:
        field = BODY_FIELDS[name]
        decoded = cbor2.loads(encoded)
        value = field.read(decoded, f"body.{name}")
        if not canonical.same_value(field.write(value), decoded):
            return _REFUSED
        memo.put(encoded, value, len(encoded))
    return value


def _items(name: str, encoded: bytes) -> Any:
    """The items of the body's list field ``name`` from the list's bytes, each read (and
    proven to re-encode to its bytes) once per distinct encoding."""
    if encoded == _EMPTY_LIST:
        return ()
    spans = canonical.array_spans(encoded, max_items=_count(encoded))
    if spans is None:
        return _REFUSED
    field = BODY_FIELDS[name]
    memo = _ITEMS[name]
    found = memo.table
    items: list[Any] = []
    for offset, length in spans:
        item_bytes = encoded[offset : offset + length]
        item = found.get(item_bytes)
        if item is None:
            decoded = cbor2.loads(item_bytes)
            item = field.read(decoded, f"body.{name}[{len(items)}]")
            if not canonical.same_value(field.write(item), decoded):
                return _REFUSED
            memo.put(item_bytes, item, length)
        items.append(item)
    return tuple(items)


def _count(encoded: bytes) -> int:
    """The item count an array head states (bounded by the bytes: a head may lie)."""
    info = encoded[0] & 0x1F if encoded else 0
    if info < 24:
        return info
    width = 1 << (info - 24) if info < 28 else 8
    return min(int.from_bytes(encoded[1 : 1 + width], "big"), len(encoded))
