"""`bvisor`: the user's front door (probe, plan, run).

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and
``run(args) -> int``; this file only dispatches, so importing it stays cheap and a
subcommand's dependencies load only when it is used: a command line that names its
subcommand gets a parser with only that one's arguments (the others are listed, for
``--help`` and for a mistyped name, without importing their modules). User mistakes end
with a message on stderr and exit 2 (usage) or 125 (refused), never a traceback.

``bvisor run`` as typed first asks the per-user service (:mod:`bvisor.front.service`):
until that question is answered this module has imported nothing but the standard
library's ``os`` and ``sys`` and the service's client, so a served command stays a thin
one. (``TYPE_CHECKING`` is spelled out rather than imported: importing ``typing`` alone
costs a command several milliseconds.)
"""

from __future__ import annotations

import os
import sys

from bvisor.front.cli.stdio import EXIT_BROKEN_PIPE, check_std_streams, silence_stdout

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "probe": ("bvisor.front.cli.probe_cmd", "what this kernel can enforce, and why"),
    "plan": ("bvisor.front.cli.plan_cmd", "admit a spec against this kernel, or say why not"),
    "run": ("bvisor.front.cli.run_cmd", "plan, run confined, seal and record a report"),
    "serve": ("bvisor.front.cli.serve_cmd", "a per-user service that runs commands warm"),
}

_PARSERS: dict[str | None, argparse.ArgumentParser] = {}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The command line's parser; with ``command`` (a name in ``SUBCOMMANDS``) only that
    subcommand's arguments are added and only its module imported.

    Built once per process and kept: the service builds ``run``'s before it forks, so a
    served command does not build it again (parsing never changes a parser)."""
    built = _PARSERS.get(command)
    if built is not None:
        return built
    import importlib

    from bvisor import __version__
    from bvisor.front.cli.usage import Parser

    parser = Parser(prog="bvisor", description="Run a process inside a boundary bvisor can prove.")
    parser.add_argument("--version", action="version", version=f"bvisor {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, summary) in SUBCOMMANDS.items():
        sub = commands.add_parser(name, help=summary, description=summary)
        if command is None or name == command:
            module = importlib.import_module(module_name)
            module.add_arguments(sub)
            sub.set_defaults(_module=module)
    _PARSERS[command] = parser
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    refused = check_std_streams("bvisor")
    if refused is not None:
        return refused
    if argv is None and sys.argv[1:2] == ["run"]:
        # The command as typed: hand it to the per-user service when there is one (it
        # runs exactly this command, warm), or go on here.
        from bvisor.front.service.client import run_served

        served = run_served(sys.argv[1:])
        if served is not None:
            os._exit(served)  # nothing of ours is buffered; the service printed it all
    words = sys.argv[1:] if argv is None else list(argv)
    chosen = words[0] if words and words[0] in SUBCOMMANDS else None
    from bvisor.front.cli.usage import UsageError, json_requested, report_error

    try:
        args = build_parser(chosen).parse_args(words)
    except UsageError as exc:  # a mistyped option: with --json, a document on stdout too
        prog = "bvisor" if chosen is None else f"bvisor {chosen}"
        return report_error(prog, str(exc), as_json=json_requested(words))
    try:
        return int(args._module.run(args))
    except KeyboardInterrupt as stop:
        import signal

        # Ctrl-C, or SIGTERM/SIGHUP during `bvisor run`: the run was sealed first.
        signum = getattr(stop, "signum", signal.SIGINT)
        print(f"bvisor: interrupted ({signal.Signals(signum).name})", file=sys.stderr)
        return 128 + signum
    except BrokenPipeError:
        # The reader went away (`bvisor probe | head`): not an error worth a traceback.
        silence_stdout()
        return EXIT_BROKEN_PIPE


if __name__ == "__main__":
    sys.exit(main())
