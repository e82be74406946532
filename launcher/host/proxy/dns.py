"""The resolver's wire format: read one DNS question, write the answer the proxy decided.

Only what a stub resolver (glibc, musl, Go's, Python's) sends is read: a standard query
(opcode 0, not a response) with exactly one question of class IN, no compression in it,
and nothing after it but an optional EDNS OPT record (ignored). Anything else is a
:class:`BadQuery`, answered ``FORMERR`` (or ``NOTIMP`` for another opcode) when the
header at least can be read, dropped when not. An answer carries at most one address
record (the one address judged), its TTL :data:`TTL`, and no authority or additional
records. The proxy decides *what* to answer (:mod:`bvisor.contract.netpolicy`); this
module only spells it.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from typing import Final

__all__ = [
    "AAAA",
    "FORMERR",
    "MAX_QUERY",
    "NOERROR",
    "NOTIMP",
    "REFUSED",
    "SERVFAIL",
    "TTL",
    "A",
    "BadQuery",
    "Question",
    "answer",
    "error_reply",
    "read_question",
]

A: Final = 1
AAAA: Final = 28
_CLASS_IN: Final = 1
_OPT: Final = 41
NOERROR: Final = 0
FORMERR: Final = 1
SERVFAIL: Final = 2
NOTIMP: Final = 4
REFUSED: Final = 5
TTL: Final = 60
MAX_QUERY: Final = 4096  # a datagram larger than this is truncated, then refused
_HEADER = struct.Struct("!HHHHHH")
_QR, _RD, _RA = 0x8000, 0x0100, 0x0080


class BadQuery(ValueError):
    """A datagram that is not one question this resolver reads. ``reply`` is the rcode to
    answer with, or None when not even a header could be read (then nothing is sent)."""

    def __init__(self, detail: str, reply: int | None, header: tuple[int, int] | None) -> None:
        super().__init__(detail)
        self.reply = reply
        self.header = header  # (id, flags) of the query when they could be read


@dataclass(frozen=True, slots=True)
class Question:
    """One question: its ``name`` as asked (dots, no trailing one; case kept), its type,
    and what an answer must echo: the query's id, its RD bit, and the question's bytes."""

    ident: int
    recursion: bool
    name: str
    qtype: int
    wire: bytes


def read_question(data: bytes) -> Question:
    """The one question of a standard query (see the module docstring)."""
    if len(data) < _HEADER.size:
        raise BadQuery("shorter than a DNS header", None, None)
    ident, flags, qdcount, ancount, nscount, arcount = _HEADER.unpack_from(data)
    header = (ident, flags)
    if flags & _QR:
        raise BadQuery("a response, not a query", None, header)
    if (flags >> 11) & 0xF:
        raise BadQuery(f"opcode {(flags >> 11) & 0xF} is not a standard query", NOTIMP, header)
    if qdcount != 1 or ancount or nscount or arcount > 1:
        raise BadQuery("not exactly one question", FORMERR, header)
    labels: list[str] = []
    at = _HEADER.size
    while True:
        if at >= len(data):
            raise BadQuery("the question's name runs past the datagram", FORMERR, header)
        length = data[at]
        at += 1
        if length == 0:
            break
        if length > 63:
            raise BadQuery("a compressed or over-long label in the question", FORMERR, header)
        label = data[at : at + length]
        if len(label) != length:
            raise BadQuery("the question's name runs past the datagram", FORMERR, header)
        try:
            labels.append(label.decode("ascii"))
        except UnicodeDecodeError:
            raise BadQuery("a label that is not ASCII", FORMERR, header) from None
        at += length
    if at + 4 > len(data):
        raise BadQuery("the question has no type and class", FORMERR, header)
    qtype, qclass = struct.unpack_from("!HH", data, at)
    end = at + 4
    if qclass != _CLASS_IN:
        raise BadQuery(f"question class {qclass} is not IN", NOTIMP, header)
    rest = data[end:]
    if arcount and (len(rest) < 11 or rest[0] != 0 or struct.unpack_from("!H", rest, 1)[0] != _OPT):
        raise BadQuery("an additional record that is not EDNS OPT", FORMERR, header)
    name = ".".join(labels)
    if len(name) > 253:
        raise BadQuery("a name longer than 253 characters", FORMERR, header)
    return Question(ident, bool(flags & _RD), name, qtype, data[_HEADER.size : end])


def answer(question: Question, rcode: int, address: str | None = None) -> bytes:
    """The response to ``question``: ``rcode``, and one A/AAAA record when ``address``."""
    flags = _QR | _RA | (_RD if question.recursion else 0) | rcode
    record = b""
    if address is not None:
        packed = ipaddress.ip_address(address).packed
        rtype = A if len(packed) == 4 else AAAA
        record = struct.pack("!HHHIH", 0xC00C, rtype, _CLASS_IN, TTL, len(packed)) + packed
    head = _HEADER.pack(question.ident, flags, 1, 1 if record else 0, 0, 0)
    return head + question.wire + record


def error_reply(bad: BadQuery) -> bytes | None:
    """The header-only reply to a bad query, or None when it gets none."""
    if bad.reply is None or bad.header is None:
        return None
    ident, flags = bad.header
    return _HEADER.pack(ident, _QR | _RA | (flags & _RD) | bad.reply, 0, 0, 0, 0)
