"""Declared field codecs: one strict wire form per typed value, written once per field.

Mechanism parameters travel as canonical values (hashed into ``param_digest``, recorded in
the ledger, handed to the launcher) and are used as typed values. A class lists its fields
once, each with a codec (:data:`INT`, :data:`TEXT`, ``array_of(...)``...); :func:`encode`
and :func:`decode` walk that list, so the planner that writes parameters, the launcher that
reads them and replay that compares them share one definition, and a decoder can never
accept a key, a type or a value the encoder would not have written.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, TypeVar

from bvisor import canonical
from bvisor.contract._wire import (
    check_abs_path,
    expect_array,
    expect_bool,
    expect_int,
    expect_map,
    expect_text,
)
from bvisor.contract.errors import ContractError

__all__ = [
    "ABS_PATH",
    "BOOL",
    "INT",
    "TEXT",
    "Codec",
    "Declared",
    "array_of",
    "choice",
    "decode",
    "encode",
    "keys_of",
    "nested",
    "optional",
    "text_map",
]

T = TypeVar("T")
D = TypeVar("D", bound="Declared")


@dataclass(frozen=True, slots=True)
class Codec:
    """How one field is written (``dump``) and strictly read back (``load``)."""

    dump: Callable[[Any], canonical.Value]
    load: Callable[[object, str], Any]


def _same(value: Any) -> canonical.Value:
    return value  # type: ignore[no-any-return]


INT = Codec(_same, lambda v, p: expect_int(v, p, minimum=0))
BOOL = Codec(_same, expect_bool)
TEXT = Codec(_same, lambda v, p: expect_text(v, p))
ABS_PATH = Codec(_same, lambda v, p: check_abs_path(expect_text(v, p), p))


def choice(*allowed: str) -> Codec:
    """Text that must be one of ``allowed``."""

    def load(value: object, path: str) -> str:
        text = expect_text(value, path)
        if text not in allowed:
            raise ContractError(path, f"expected one of {', '.join(allowed)}", "unknown-variant")
        return text

    return Codec(_same, load)


def optional(inner: Codec) -> Codec:
    """``inner`` or null."""
    return Codec(
        lambda v: None if v is None else inner.dump(v),
        lambda v, p: None if v is None else inner.load(v, p),
    )


def array_of(inner: Codec) -> Codec:
    """A tuple of ``inner`` values, written as an array."""
    return Codec(
        lambda v: [inner.dump(item) for item in v],
        lambda v, p: tuple(
            inner.load(item, f"{p}[{i}]") for i, item in enumerate(expect_array(v, p))
        ),
    )


def text_map(inner: Codec) -> Codec:
    """A tuple of (key, value) pairs sorted by key, written as a map."""

    def load(value: object, path: str) -> tuple[tuple[str, Any], ...]:
        if not isinstance(value, Mapping):
            raise ContractError(path, "expected a table", "wrong-type")
        pairs = []
        for key, item in value.items():
            name = expect_text(key, path, nonempty=True)
            pairs.append((name, inner.load(item, f"{path}.{name}")))
        return tuple(sorted(pairs))

    return Codec(lambda v: {key: inner.dump(item) for key, item in v}, load)


class Declared(Protocol):
    """A frozen value class whose wire form is its ``FIELDS`` (name -> codec), in order."""

    FIELDS: ClassVar[Mapping[str, Codec]]


def nested(cls: type[D]) -> Codec:
    """A :class:`Declared` value inside another, written as its own map."""
    return Codec(lambda v: encode(v), lambda v, p: decode(cls, v, p))


def encode(value: Declared) -> dict[str, canonical.Value]:
    """The canonical map of ``value``'s declared fields."""
    return {name: codec.dump(getattr(value, name)) for name, codec in value.FIELDS.items()}


def decode(cls: type[D], value: object, path: str) -> D:
    """A ``cls`` from its canonical map: exactly the declared keys, each read strictly."""
    body = expect_map(value, path, required=tuple(cls.FIELDS))
    loaded = {
        name: codec.load(body[name], f"{path}.{name}" if path else name)
        for name, codec in cls.FIELDS.items()
    }
    try:
        return cls(**loaded)
    except ContractError as exc:
        raise (exc.under(path) if path else exc) from None
    except (TypeError, ValueError) as exc:
        raise ContractError(path or cls.__name__, str(exc), "invalid-value") from None


def keys_of(cls: type[Declared]) -> Sequence[str]:
    """The declared keys of ``cls`` (the keys its canonical map has)."""
    return tuple(cls.FIELDS)
