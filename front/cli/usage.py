"""Usage mistakes on every command line: one parser class, one way to report them.

``bvisor``, ``bvisor-ledger``, ``bvisor-replay`` and ``bvisor-witness`` parse with
:class:`Parser`, whose errors (an unknown option, a missing or malformed value) raise
:class:`UsageError` instead of printing argparse's usage and exiting, and report every
usage mistake with :func:`report_error`: one line naming the bad argument on stderr and,
when ``--json`` was asked for (:func:`json_requested`: anywhere before a ``--``, since what
follows it is the workload's), one JSON document ``{"error": {"code", "message"}}`` on
stdout; exit status 2. A script reading stdout therefore gets a document for a mistyped
option too, not an empty string.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from typing import NoReturn

__all__ = [
    "EXIT_USAGE",
    "Parser",
    "UsageError",
    "json_requested",
    "report_error",
]

EXIT_USAGE = 2


class UsageError(Exception):
    """Bad arguments or input: exit 2."""


class Parser(argparse.ArgumentParser):
    """An ArgumentParser that raises :class:`UsageError` instead of exiting, so the
    command's ``main`` owns the report and the exit status (its subcommands' parsers are
    of this class too)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


def json_requested(argv: Sequence[str]) -> bool:
    """Whether ``--json`` is among the arguments before a ``--`` (after it they are a
    command's own)."""
    for word in argv:
        if word == "--":
            return False
        if word == "--json":
            return True
    return False


def report_error(
    prog: str,
    message: str,
    *,
    as_json: bool,
    code: str = "usage",
    status: int = EXIT_USAGE,
    document: Mapping[str, object] | None = None,
    **details: object,
) -> int:
    """Say ``message`` on stderr (``prog: message``) and, ``as_json``, print
    ``{**document, "error": {"code", "message", **details}}`` on stdout; return
    ``status``."""
    from bvisor.front.visible import visible

    print(visible(f"{prog}: {message}"), file=sys.stderr)
    if as_json:
        error = {"code": code, "message": message, **details}
        print(json.dumps({**(document or {}), "error": error}, sort_keys=True))
    return status
