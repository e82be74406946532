"""`bvisor serve`: the per-user service that runs `bvisor run` commands already warm.

Runs in the foreground until idle (so a user service manager can keep it); `bvisor run`
also starts it on demand, in the background, unless ``BVISOR_SERVE=0``. ``--status`` and
``--stop`` ask a running service. What the service checks before it runs anything, and
when a command runs in its own process instead: :mod:`bvisor.front.service`.
"""

from __future__ import annotations

import argparse
import os
import sys

from bvisor.front import jsonview
from bvisor.front.cli.usage import seconds

__all__ = ["add_arguments", "run"]

DEFAULT_IDLE = 120.0
MAX_IDLE = 7 * 24 * 3600.0  # a week: a service meant to stay is kept by a service manager


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--idle",
        type=seconds(MAX_IDLE),
        default=DEFAULT_IDLE,
        metavar="SECONDS",
        help=f"leave after this long with no command (default {DEFAULT_IDLE:g}, at most "
        f"{MAX_IDLE:g})",
    )
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--status", action="store_true", help="is a service running? (exit 1: no)")
    what.add_argument(
        "--stop", action="store_true", help="ask the running service to leave once idle"
    )
    parser.add_argument("--quiet", action="store_true", help="print nothing when starting")
    parser.add_argument("--json", action="store_true", help="print the answer as JSON")


def run(args: argparse.Namespace) -> int:
    from bvisor.front.service import paths
    from bvisor.front.service.client import ask_service

    where = os.path.join(paths.service_dir(), paths.SOCKET_NAME)
    if args.status or args.stop:
        answer = ask_service({"stop": True} if args.stop else {"status": True})
        view: dict[str, object] = {"socket": where, "running": answer is not None}
        if answer is not None:
            view["pid"] = answer.get("pid", answer.get("stopping"))
            if args.status:
                view["commands"] = answer.get("running")
                view["planned_by_copies"] = answer.get("planned_by_copies")
                view["planned_for_copies"] = answer.get("planned_for_copies")
            else:
                view["stopping"] = True
        if args.json:
            print(jsonview.dumps(view))
        elif answer is None:
            print(f"bvisor serve: no service at {where}")
        elif args.stop:
            print(f"bvisor serve: pid {view['pid']} stops once its commands end")
        else:
            print(
                f"bvisor serve: pid {view['pid']} at {where}, {view['commands']} running; "
                f"plans made by its commands {view['planned_by_copies']}, "
                f"by the service for them {view['planned_for_copies']}"
            )
        return 0 if answer is not None else 1
    from bvisor.front.service.server import ServiceError, serve

    def announce(line: str) -> None:
        if args.json:
            print(jsonview.dumps({"socket": where, "pid": os.getpid(), "idle": args.idle}))
        elif not args.quiet:
            print(line)
        sys.stdout.flush()

    try:
        return serve(args.idle, announce)
    except ServiceError as exc:
        print(f"bvisor serve: {exc}", file=sys.stderr)
        return 1
