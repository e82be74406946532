"""The service's messages: one JSON document per ``SOCK_SEQPACKET`` message.

Client to service, once, with fds ``[cwd, *fds]`` as ``SCM_RIGHTS``::

    {"v": 1, "token": hex, "argv": [text], "env": [[name, value]], "umask": int,
     "fds": [int]}

``fds[i]`` is the number the i-th passed fd had in the client, where the command's copy
gets it again. Strings that are not UTF-8 travel as Python's surrogate escapes.

Service to client::

    {"started": pid}      the command's copy runs (the client forwards signals to pid)
    {"refused": text}     nothing was started: the client runs the command itself
    {"exit": status}      the copy's exit status (the client exits with it)

Standard library only.
"""

from __future__ import annotations

import json

__all__ = ["MAX_FDS", "MAX_MESSAGE", "VERSION", "WireError", "decode", "encode"]

VERSION = 1
MAX_MESSAGE = 1 << 20
MAX_FDS = 250  # below SCM_MAX_FD (253), the cwd included


class WireError(ValueError):
    """A service message that is not a JSON object."""


def encode(message: dict[str, object]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode("utf-8", "surrogatepass")


def decode(data: bytes) -> dict[str, object]:
    try:
        value = json.loads(data.decode("utf-8", "surrogatepass"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise WireError(f"not a JSON message: {exc}") from None
    if not isinstance(value, dict):
        raise WireError("a message must be a JSON object")
    return value
