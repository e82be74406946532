"""Usage mistakes on every command line: one parser class, one way to report them.

``bvisor``, ``bvisor-ledger``, ``bvisor-replay`` and ``bvisor-witness`` parse with
:class:`Parser`, whose errors (an unknown option, a missing or malformed value) raise
:class:`UsageError` instead of printing argparse's usage and exiting, and report every
usage mistake with :func:`report_error`: one line naming the bad argument on stderr and,
when ``--json`` was asked for (:func:`json_requested`: anywhere before a ``--``, since what
follows it is the workload's), one JSON document ``{"error": {"code", "message"}}`` on
stdout; exit status 2. A script reading stdout therefore gets a document for a mistyped
option too, not an empty string.

Numeric options are parsed by :func:`whole_number` and :func:`seconds`: ASCII digits (or,
for seconds, a decimal number) within the option's range, never NaN, an infinity or a
negative value where it means nothing.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import NoReturn

__all__ = [
    "EXIT_USAGE",
    "Parser",
    "UsageError",
    "json_requested",
    "report_error",
    "seconds",
    "whole_number",
]

EXIT_USAGE = 2
_MAX_DIGITS = 40  # past this a number is no option's value (and int() of it costs time)


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


def whole_number(
    low: int = 0, high: int = (1 << 64) - 1, high_name: str = ""
) -> Callable[[str], int]:
    """An argparse ``type``: a whole number in ``low..high`` (``high_name`` says what
    ``high`` is), written in ASCII digits (``int()`` would also take ``1_000``, ``+3`` and
    other scripts' digits such as '٣')."""

    def parse(text: str) -> int:
        digits = text.strip()
        if len(digits) > _MAX_DIGITS:
            raise argparse.ArgumentTypeError(f"{text[:24]!r}... is not a whole number")
        if digits.startswith("-") and digits[1:].isascii() and digits[1:].isdigit():
            raise argparse.ArgumentTypeError(f"{text!r} is negative")
        if not (digits.isascii() and digits.isdigit()):
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number")
        value = int(digits, 10)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}")
        if value > high:
            raise argparse.ArgumentTypeError(f"{text!r} is larger than {high_name or high}")
        return value

    parse.__name__ = "whole number"  # argparse names a type by it in its own messages
    return parse


def seconds(high: float) -> Callable[[str], float]:
    """An argparse ``type``: a finite number of seconds above 0 and at most ``high``
    (``float()`` takes 'nan', 'inf' and 1e400, which is inf)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number of seconds")
        if not value > 0:
            raise argparse.ArgumentTypeError(f"{text!r}: must be more than 0 seconds")
        if value > high:
            raise argparse.ArgumentTypeError(f"{text!r}: must be at most {high:g} seconds")
        return value

    parse.__name__ = "seconds"
    return parse
