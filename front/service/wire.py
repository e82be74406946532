"""The service's messages: one JSON document per ``SOCK_SEQPACKET`` message.

Client to service, first, with no fds (or ``"stop"``/``"status"`` instead of
``"hello"``, answered at once)::

    {"v": 3, "token": hex, "proof": text, "hello": int}

``proof`` is the nonce in the name of the service's proof memfd, ``hello`` the number of
the client's own; the service answers ``{"seen": text}``, the nonce in the name of that
memfd, read through ``/proc`` (each side proves it may inspect the other), or
``{"refused": text}``. Then, once, with fds ``[cwd, *fds]`` as ``SCM_RIGHTS``::

    {"v": 3, "argv": [text], "env": [[name, value]], "umask": int,
     "fds": [int], "encoding": [text, text], "install": [...]}

``install`` is the client's :func:`~bvisor.front.service.install.install_identity`; the
service serves only a client whose identity is its own (version 1 had none; version 2 no
hello).

``fds[i]`` is the number the i-th passed fd had in the client, where the command's copy
gets it again. Strings that are not UTF-8 travel as Python's surrogate escapes.

Service to client::

    {"started": pid}      the command's copy runs (the client forwards signals to pid)
    {"refused": text}     nothing was started: the client runs the command itself
    {"exit": status}      the copy's exit status (the client exits with it)

Standard library only, and of ``json`` only its C half, ``_json``: the encoder and scanner
``json.dumps`` and ``json.loads`` run, so the text is exactly theirs, without the ``re``,
``enum`` and more that ``import json`` brings, several milliseconds of every served command.
"""

from __future__ import annotations

from _json import encode_basestring_ascii, make_encoder, make_scanner

__all__ = ["MAX_FDS", "MAX_MESSAGE", "VERSION", "WireError", "decode", "encode"]

VERSION = 3
MAX_MESSAGE = 1 << 20
MAX_FDS = 250  # below SCM_MAX_FD (253), the cwd included


class WireError(ValueError):
    """A service message that is not a JSON object."""


def _no_value(value: object) -> object:
    raise TypeError(f"a service message holds no {type(value).__name__}")


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


class _Strict:
    """What the scanner reads from its context: ``json.loads``'s defaults, NaN refused."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    array_hook = None
    parse_float = float
    parse_int = int
    parse_constant = staticmethod(_no_constant)
    memo: dict[str, str]

    def __init__(self) -> None:
        self.memo = {}


def encode(message: dict[str, object]) -> bytes:
    """``json.dumps(message, separators=(",", ":"))``, as ASCII bytes."""
    # A new encoder each time: its cycle markers must start empty.
    chunks = make_encoder(
        {}, _no_value, encode_basestring_ascii, None, ":", ",", False, False, False
    )
    return "".join(chunks(message, 0)).encode("ascii")


def decode(data: bytes) -> dict[str, object]:
    """The JSON object in ``data`` (``json.loads``, NaN and nesting past the interpreter's
    recursion limit refused as not a message)."""
    try:
        text = data.decode("utf-8", "surrogatepass")
        value, end = make_scanner(_Strict())(text, 0)  # type: ignore[arg-type]
    except StopIteration:
        raise WireError("not a JSON message: no value") from None
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise WireError(f"not a JSON message: {exc}") from None
    if end != len(text):
        raise WireError("not a JSON message: extra data after it")
    if not isinstance(value, dict):
        raise WireError("a message must be a JSON object")
    return value
