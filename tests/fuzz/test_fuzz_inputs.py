"""Hostile bytes at the three doors that take them: never a crash or a hang, a named error.

* spec files (``bvisor.front.specfile.parse_spec_text``): random text, random documents
  in the spec's own vocabulary, and mutations of every example spec;
* the launch envelope and body (``bvisor.launcher.wire.envelope.open_envelope`` then
  ``LaunchBody.decode``): random bytes, bit flips, and re-sealed mutations of a real body
  (so the body decoder, not the digest, is what is exercised);
* ledger records (``bvisor.ledger.record.decode_record``): random bytes and mutations of
  real records.

"Named" means the door's own error type (a ``ValueError`` subclass naming what is wrong),
nothing else: no ``KeyError``, ``TypeError``, ``IndexError`` or ``RecursionError`` may come
out. The examples are bounded (and each has a deadline) so the suite stays fast.
"""

from __future__ import annotations

import contextlib
import json
import os
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bvisor import canonical
from bvisor.contract import ContractError
from bvisor.front.specfile import SpecFileError, parse_spec_text
from bvisor.launcher.wire import envelope
from bvisor.launcher.wire.protocol import LaunchBody, ProtocolError
from bvisor.ledger.errors import LedgerError
from bvisor.ledger.record import build_record, decode_record, encode_payload

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.toml"))
FUZZ = settings(
    max_examples=int(os.environ.get("BVISOR_FUZZ_EXAMPLES", "100")),
    deadline=2000,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=os.environ.get("BVISOR_FUZZ_RANDOM") is None,
    database=None,
)

# -- values --------------------------------------------------------------------------------

_VOCABULARY = [
    "workload",
    "exe",
    "args",
    "capability",
    "control",
    "budgets",
    "evidence",
    "type",
    "policy",
    "access",
    "roots",
    "recursive",
    "exact",
    "only",
    "limit",
    "guarantee",
    "stdin",
    "stdout",
    "stderr",
    "target",
    "filesystem",
    "network",
    "environment",
    "child_spawn",
    "inherited_fds",
    "launch_workload",
    "capture_streams",
    "kill",
    "enforced",
    "mediated",
    "read",
    "write",
    "read_write",
    "deny_all",
    "/bin/sh",
    "",
]
_keys = st.one_of(st.sampled_from(_VOCABULARY), st.text(max_size=12))
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.text(max_size=40),
    st.sampled_from(_VOCABULARY),
)
_json_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(_keys, inner, max_size=6)),
    max_leaves=40,
)
_cbor_values = st.recursive(
    st.one_of(_scalars, st.binary(max_size=40)),
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(_keys, inner, max_size=6)),
    max_leaves=40,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*prefix, index))
    return found


def _replace(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        copy = dict(value)
        if new is _DELETE and not rest:
            copy.pop(head, None)
        else:
            copy[head] = _replace(value[head], rest, new)
        return copy
    copy_list = list(value)
    if new is _DELETE and not rest:
        del copy_list[head]
    else:
        copy_list[head] = _replace(value[head], rest, new)
    return copy_list


_DELETE = object()


@st.composite
def _mutated(draw: st.DrawFn, base: Any, values: st.SearchStrategy[Any]) -> Any:
    """``base`` with a few nodes replaced, deleted, or given an extra key."""
    current = base
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        path = draw(st.sampled_from(_paths(current)))
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "delete" and path:
            current = _replace(current, path, _DELETE)
        elif action == "add":
            target: Any = current
            for step in path:
                target = target[step]
            if isinstance(target, dict):
                extra = dict(target)
                extra[draw(_keys)] = draw(values)
                current = _replace(current, path, extra)
        else:
            current = _replace(current, path, draw(values))
    return current


# -- spec files ----------------------------------------------------------------------------


def _spec_named_error(text: str, fmt: str) -> None:
    with contextlib.suppress(SpecFileError, ContractError):
        parse_spec_text(text, fmt, source="<fuzz>")


@FUZZ
@given(text=st.text(max_size=400), fmt=st.sampled_from(["toml", "json"]))
def test_random_spec_text_is_a_named_error(text: str, fmt: str) -> None:
    _spec_named_error(text, fmt)


@FUZZ
@given(document=st.dictionaries(_keys, _json_values, max_size=6))
def test_random_spec_documents_are_a_named_error(document: dict[str, Any]) -> None:
    _spec_named_error(json.dumps(document), "json")


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_mutated_example_specs_are_parsed_or_a_named_error(example: Path) -> None:
    base = tomllib.loads(example.read_text())

    @FUZZ
    @given(document=_mutated(base, _json_values))
    def check(document: Any) -> None:
        _spec_named_error(json.dumps(document), "json")

    check()


# -- the launch envelope and body ----------------------------------------------------------


def _real_body() -> bytes:
    """The body a real launch of an example spec would carry (seed material only)."""
    from bvisor.front.api import plan_spec
    from bvisor.front.specfile import parse_spec_text
    from bvisor.launcher.host.launch_body import prepare_launch
    from bvisor.launcher.host.secrets import NoSecrets
    from bvisor.launcher.wire.lowered import lowered_params

    spec = parse_spec_text(
        '[workload]\nexe = "/bin/true"\nargs = ["x"]\n'
        '[[capability]]\ntype = "network"\npolicy = "deny_all"\n'
        '[[capability]]\ntype = "environment"\nexact = { PATH = "/bin" }\n'
        '[[capability]]\ntype = "filesystem"\naccess = "read"\nroots = ["/usr"]\n'
        '[[control]]\ntype = "launch_workload"\n'
        '[[control]]\ntype = "capture_streams"\nstdout = true\nstderr = true\n',
        "toml",
    )
    plan = plan_spec(spec)
    prepared = prepare_launch(plan, lowered_params(plan), os.urandom(32), NoSecrets(), None)
    try:
        return prepared.plan.body.encode()
    finally:
        prepared.close()


@pytest.fixture(scope="module")
def real_body() -> bytes:
    return _real_body()


def _open_and_decode(data: bytes) -> None:
    try:
        body = envelope.open_envelope(data)
    except envelope.EnvelopeError:
        return
    with contextlib.suppress(ProtocolError):
        LaunchBody.decode(body)


@FUZZ
@given(data=st.binary(max_size=600))
def test_random_envelopes_are_a_named_error(data: bytes) -> None:
    _open_and_decode(data)
    _open_and_decode(envelope.seal(data))


def test_flipped_bits_in_a_real_envelope_are_refused(real_body: bytes) -> None:
    sealed = envelope.seal(real_body)

    @FUZZ
    @given(position=st.integers(0, len(sealed) * 8 - 1))
    def check(position: int) -> None:
        damaged = bytearray(sealed)
        damaged[position // 8] ^= 1 << (position % 8)
        with pytest.raises(envelope.EnvelopeError):
            envelope.open_envelope(bytes(damaged))

    check()


def test_resealed_mutations_of_a_real_body_are_a_named_error(real_body: bytes) -> None:
    base = canonical.decode(real_body)

    @FUZZ
    @given(value=_mutated(base, _cbor_values))
    def check(value: Any) -> None:
        try:
            encoded = canonical.encode(value)
        except (canonical.CanonicalError, ValueError, TypeError, OverflowError):
            return  # not encodable canonically: nothing a sender could have produced
        if len(encoded) <= envelope.MAX_BODY:
            _open_and_decode(envelope.seal(encoded))

    check()


@FUZZ
@given(data=st.binary(max_size=400))
def test_random_body_bytes_are_a_named_error(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        LaunchBody.decode(data)


# -- ledger records ------------------------------------------------------------------------


def _real_record() -> bytes:
    payload = encode_payload({"stream": "stdout", "offset": 0, "data": b"hi", "final": True})
    return build_record(
        7, bytes(32), 1_700_000_000_000_000_000, "run.streams", bytes(32), payload
    ).raw


def _decode(raw: bytes) -> None:
    with contextlib.suppress(LedgerError):
        decode_record(raw)


@FUZZ
@given(data=st.binary(max_size=400))
def test_random_records_are_a_named_error(data: bytes) -> None:
    _decode(data)


@FUZZ
@given(
    position=st.integers(0, len(_real_record()) - 1),
    byte=st.integers(0, 255),
    cut=st.integers(0, len(_real_record())),
)
def test_damaged_real_records_are_a_named_error(position: int, byte: int, cut: int) -> None:
    raw = bytearray(_real_record())
    raw[position] = byte
    _decode(bytes(raw))
    _decode(bytes(raw[:cut]))


@FUZZ
@given(value=_mutated(canonical.decode(_real_record()), _cbor_values))
def test_mutated_real_records_are_a_named_error(value: Any) -> None:
    try:
        raw = canonical.encode(value)
    except (canonical.CanonicalError, ValueError, TypeError, OverflowError):
        return
    _decode(raw)
