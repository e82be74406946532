"""The resolver's wire format (launcher/host/proxy/dns.py): what is read, what is refused,
and that an answer is what a stub resolver parses (checked against the standard library's
own socket and struct decoding, not against this module)."""

from __future__ import annotations

import socket
import struct

import pytest

from bvisor.launcher.host.proxy import dns


def _query(
    name: str, qtype: int = 1, *, flags: int = 0x0100, qd: int = 1, extra: bytes = b""
) -> bytes:
    wire = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    arcount = 1 if extra else 0
    head = struct.pack("!HHHHHH", 0x1234, flags, qd, 0, 0, arcount)
    return head + wire + struct.pack("!HH", qtype, 1) + extra


def test_a_standard_question_is_read() -> None:
    q = dns.read_question(_query("WWW.Example.test", dns.AAAA))
    assert (q.ident, q.recursion, q.name, q.qtype) == (0x1234, True, "WWW.Example.test", 28)


def test_an_edns_opt_record_is_ignored() -> None:
    opt = b"\0" + struct.pack("!HHIH", 41, 1232, 0, 0)
    assert dns.read_question(_query("a.test", extra=opt)).name == "a.test"


@pytest.mark.parametrize(
    ("data", "reply"),
    [
        (b"\x00\x01", None),  # no header
        (_query("a.test", flags=0x8100), None),  # a response
        (_query("a.test", flags=0x2800), dns.NOTIMP),  # opcode 5 (update)
        (_query("a.test", qd=2), dns.FORMERR),
        (_query("a.test")[:-3], dns.FORMERR),  # cut in its type
        (_query("a.test", extra=b"\x05junk"), dns.FORMERR),
        (struct.pack("!HHHHHH", 1, 0, 1, 0, 0, 0) + b"\xc0\x0c\x00\x01\x00\x01", dns.FORMERR),
    ],
)
def test_anything_else_is_a_bad_query(data: bytes, reply: int | None) -> None:
    with pytest.raises(dns.BadQuery) as caught:
        dns.read_question(data)
    assert caught.value.reply == reply
    rendered = dns.error_reply(caught.value)
    assert (rendered is None) == (reply is None)
    if rendered is not None:
        ident, flags = struct.unpack_from("!HH", rendered)
        assert ident == 0x1234 or ident == 1
        assert flags & 0x8000 and flags & 0xF == reply


@pytest.mark.parametrize("address", ["93.184.216.34", "2001:4860::8888"])
def test_an_answer_carries_exactly_the_one_address(address: str) -> None:
    question = dns.read_question(_query("www.example.test", 1 if "." in address else 28))
    data = dns.answer(question, dns.NOERROR, address)
    ident, flags, qd, an, ns, ar = struct.unpack_from("!HHHHHH", data)
    assert (ident, qd, an, ns, ar) == (0x1234, 1, 1, 0, 0)
    assert flags & 0x8000 and flags & 0x0100 and flags & 0xF == 0
    record = data[12 + len(question.wire) :]
    pointer, rtype, rclass, ttl, length = struct.unpack_from("!HHHIH", record)
    assert (pointer, rclass, ttl) == (0xC00C, 1, dns.TTL)
    family = socket.AF_INET if rtype == 1 else socket.AF_INET6
    assert socket.inet_ntop(family, record[12 : 12 + length]) == address


def test_a_refusal_has_no_answer() -> None:
    question = dns.read_question(_query("evil.test"))
    data = dns.answer(question, dns.REFUSED)
    assert struct.unpack_from("!HHHHHH", data)[1] & 0xF == dns.REFUSED
    assert struct.unpack_from("!HHHHHH", data)[3] == 0
