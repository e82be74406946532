"""The outputs grammar: one spelling per path, one line of printable ASCII per note, and a
parser that accepts exactly what the formatter writes.

The oracle for escaping is the bytes themselves: any byte string round-trips, and the
escaped text never holds a byte that could end a line, split a field or pass for another
note. The parser is attacked with near-misses of valid notes.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bvisor.contract import mechanisms as mech
from bvisor.contract import outputs as g
from bvisor.contract.errors import ContractError

H = "ab" * 32
PROPERTY = settings(max_examples=300, deadline=None, database=None)


@PROPERTY
@given(st.binary(max_size=200))
def test_any_bytes_round_trip_through_one_printable_spelling(raw: bytes) -> None:
    text = g.escape_path(raw)
    assert text.isascii() and (text.isprintable() or not text)
    assert not set(text) & set(" :,\n\r\t\\\"'")
    assert g.unescape_path(text) == raw


@pytest.mark.parametrize(
    "text",
    ["%41", "%2F", "%2f", "%4", "a b", "é", "a\nb", "%zz", "a:b", "a,b"],
)
def test_a_second_spelling_or_a_raw_unsafe_character_is_refused(text: str) -> None:
    with pytest.raises(g.OutputsGrammarError):
        g.unescape_path(text)


def _listed(path: str = "a.txt", size: str = "3", sha: str = H, b3: str = H) -> str:
    return f"output_listed root:/tmp path:{path} size:{size} sha256:{sha} blake3:{b3}"


def test_a_formatted_note_parses_back_to_its_fields() -> None:
    note = g.format_item(g.LISTED, root="/tmp", path="d/%01x", size=3, sha256=H, blake3=H)
    item = g.parse_item(note)
    assert item is not None and item.note == note
    assert item.get("path") == "d/%01x" and item.number("size") == 3


@pytest.mark.parametrize(
    "note",
    [
        _listed(path="/abs"),
        _listed(path="a//b"),
        _listed(path="a/../b"),
        _listed(path="./a"),
        _listed(path=""),
        _listed(size="03"),
        _listed(size="-1"),
        _listed(sha=H.upper()),
        _listed(sha=H[:-1]),
        _listed() + " extra:1",
        _listed().replace(" size:3", ""),
        _listed().replace("root:/tmp path:a.txt", "path:a.txt root:/tmp"),
        _listed().replace("root:/tmp", "root:tmp"),
        _listed().replace("root:/tmp", "root:/tmp/../etc"),
        "output_listed",
        "output_skipped root:/tmp path:x kind:door",
        "outputs_truncated root:/tmp path:x limit:time",
        "outputs_unavailable reason:Init Gone",
        "artifact_failed path:x errno:eacces",
    ],
)
def test_near_misses_of_a_valid_note_are_refused(note: str) -> None:
    with pytest.raises(g.OutputsGrammarError):
        g.parse_item(note)


@pytest.mark.parametrize("note", ["workload exit code=0", "outputs: listed once", "artifacts x"])
def test_other_notes_are_not_outputs_notes(note: str) -> None:
    assert g.parse_item(note) is None


def test_commit_facts_are_host_facts_not_notes() -> None:
    detail = g.format_detail(g.COMMITTED, count=2, dir="/var/a%20b/x")
    assert g.parse_host_fact(g.COMMITTED, detail).number("count") == 2
    assert g.parse_item(f"{g.COMMITTED} {detail}") is None, "a launcher cannot claim a commit"


def test_the_report_items_of_notes() -> None:
    artifact = g.format_item(g.ARTIFACT, sha256=H, blake3=H, size=3, path="a.txt")
    summary = g.format_item(
        g.SUMMARY,
        roots="/tmp",
        since=1,
        listed=1,
        skipped=0,
        bytes=3,
        artifacts=1,
        truncated="no",
        commit="complete",
    )
    report = g.report_items(["identity code=x", _listed(), artifact, summary])
    assert report.facts == (
        (g.LISTED, _listed().split(" ", 1)[1]),
        (g.SUMMARY, summary.split(" ", 1)[1]),
    )
    assert report.artifacts == (artifact.split(" ", 1)[1],) and report.commit_complete


def test_outputs_parameters_refuse_what_cannot_be_walked() -> None:
    temp, write = mech.OutputRoot("/tmp", "temp"), mech.OutputRoot("/w", "write")
    with pytest.raises(ContractError, match="commit"):
        mech.Outputs((write,), 1, 1, 1, 1, 1, "synced")
    with pytest.raises(ContractError, match="one temp root"):
        mech.Outputs((temp, mech.OutputRoot("/t2", "temp")), 1, 1, 1, 1, 1, None)
    with pytest.raises(ContractError, match="twice"):
        mech.Outputs((write, write), 1, 1, 1, 1, 1, None)
    with pytest.raises(ContractError):
        mech.Outputs.from_value(
            {
                "roots": [],
                "max_files": 1,
                "max_bytes": 1,
                "max_depth": 1,
                "max_entries": 1,
                "max_path_bytes": 1,
                "commit": "maybe",
            }
        )
    params = mech.Outputs((temp, write), 1, 2, 3, 4, 5, "best_effort")
    assert mech.Outputs.from_value(params.to_value()) == params and params.temp_root == "/tmp"
