"""What reaches a terminal: properties of the output filters, whatever bytes come in.

The oracle is the filtered bytes themselves: after ``Neutraliser`` nothing a terminal
would act on is left (no C0 but tab and newline, no DEL, no C1, no bidi override); after
``InteractiveFilter`` no string control (OSC, DCS, APC, PM, SOS) and no C1 survives. Both
give the same bytes however the input is cut into chunks (sequences split across reads
are still caught).
"""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from bvisor.launcher.host.terminal import InteractiveFilter, Neutraliser

_NASTY = st.sampled_from(
    [
        b"\x1b",
        b"\x1b[",
        b"\x1b]",
        b"\x1bP",
        b"\x07",
        b"\r",
        b"\n",
        b"\x08",
        b"\x9b",
        b"\xc2",
        b"\xc2\x9b",
        b"\xe2\x80\xae",
        "\u200f".encode(),
        "\u061c".encode(),
        b"\x1b\\",
        b"bvisor: ",
        b"0;title",
        b"52;c;",
        b"\x7f",
    ]
)
_STREAMS = st.lists(st.one_of(_NASTY, st.binary(max_size=8)), max_size=40).map(b"".join)
_SETTINGS = settings(max_examples=300, deadline=None, derandomize=True, database=None)
_UNSAFE_TEXT = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]"
)


def _feed(filter_: Neutraliser | InteractiveFilter, data: bytes, cuts: list[int]) -> bytes:
    out = bytearray()
    start = 0
    for cut in sorted(set(cuts)):
        out += filter_.feed(data[start:cut])
        start = cut
    out += filter_.feed(data[start:])
    out += filter_.flush()
    return bytes(out)


@_SETTINGS
@given(data=_STREAMS, cuts=st.lists(st.integers(0, 400), max_size=6))
def test_neutralised_output_holds_no_control_and_ignores_chunking(
    data: bytes, cuts: list[int]
) -> None:
    out = _feed(Neutraliser(), data, [c for c in cuts if c <= len(data)])
    text = out.decode("utf-8")  # always valid UTF-8: undecodable bytes are shown as \xNN
    assert not _UNSAFE_TEXT.search(text), out
    assert out == _feed(Neutraliser(), data, [])


@_SETTINGS
@given(data=_STREAMS, cuts=st.lists(st.integers(0, 400), max_size=6))
def test_interactive_output_holds_no_string_control_and_ignores_chunking(
    data: bytes, cuts: list[int]
) -> None:
    out = _feed(InteractiveFilter(), data, [c for c in cuts if c <= len(data)])
    for introducer in (b"\x1b]", b"\x1bP", b"\x1b_", b"\x1b^", b"\x1bX"):
        assert introducer not in out, out
    decoded = out.decode("utf-8", "surrogateescape")
    assert not re.search("[\x80-\x9f\udc80-\udc9f]", decoded), out
    assert out == _feed(InteractiveFilter(), data, [])


def test_a_forged_summary_is_plain_text_and_crlf_stays_a_line_end() -> None:
    n = Neutraliser()
    out = n.feed(b"\x1b[2K\rbvisor: completed (exit=0)\r\nnext") + n.flush()
    assert out == b"^[[2K^Mbvisor: completed (exit=0)\nnext"


def test_interactive_filter_keeps_what_full_screen_programs_need() -> None:
    f = InteractiveFilter()
    keep = b"\x1b[?1049h\x1b[2J\x1b[1;1H\x1b[1;31mred\x1b[0m\x1b(B\x1b7\x1b8\r\n"
    assert f.feed(keep) == keep
    assert f.feed(b"a\x1b]0;title\x07b\x1b]52;c;aGk=\x1b\\c") == b"abc"


def test_interactive_filter_drops_media_copy() -> None:
    """``CSI 5 i`` (and ``CSI ? 5 i``) turn on printer controller mode: a terminal that
    honours it sends everything after it — bvisor's own last line too, which no soft reset
    ends — to its printer instead of the screen. No full-screen program needs it; the
    sequences are dropped whole, other CSI around them kept."""
    f = InteractiveFilter()
    out = f.feed(b"a\x1b[5ib\x1b[?5ic\x1b[4id\x1b[0ie\x1b[1;31mf") + f.flush()
    assert out == b"abcde\x1b[1;31mf"
