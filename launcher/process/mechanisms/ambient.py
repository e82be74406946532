"""linux.ambient.scrub.v2: exactly the planned environment and fds, no controlling terminal.

The environment is built here from the typed parameters (literals as planned, leases from
the values the host resolved into the body); the exec op uses it. In the child
(``ambient.c``): a session keyring of its own, default signal dispositions and an empty
mask, a new session (the workload's own pty as controlling terminal when ``tty``), and
every fd closed but stdio, the kept ones, and the window's internal ones (close-on-exec).
Hooks: ``skip_fd_scrub`` keeps every fd and the session, ``skip_env_scrub`` leaks the
launcher's own environment.
"""

from __future__ import annotations

import os

from bvisor.contract import notes
from bvisor.contract.lowering import Phase
from bvisor.contract.mechanisms import AmbientScrub
from bvisor.launcher.process.program import Program
from bvisor.launcher.process.verify import Refusal

__all__ = ["prepare"]


def _environment(program: Program, params: AmbientScrub) -> list[tuple[str, str]]:
    table: list[tuple[str, str]] = []
    for source in params.env:
        if source.literal is not None:
            table.append((source.name, source.literal))
        else:
            value = program.verified.body.secret(source.lease or "")
            if value is None:  # verify_body checked this; never run without the value
                raise Refusal("secrets-mismatch", f"no value for lease {source.lease!r}")
            table.append((source.name, value))
    if program.skipped("skip_env_scrub"):
        table += sorted(os.environ.items())
    return table


def prepare(program: Program, phase: Phase, params: AmbientScrub) -> None:
    program.envp = [f"{name}={value}" for name, value in _environment(program, params)]
    keep = sorted(fd for fd in params.keep_fds if fd > 2)
    args = program.new("struct bv_ambient_args *")
    scrub = not program.skipped("skip_fd_scrub")
    args.scrub_fds = int(scrub)
    args.new_session = int(scrub)  # part of the scrub, like the fds (and its hook)
    args.tty = int(params.tty)
    args.keep_fds = program.new("int[]", keep or [0])
    args.n_keep = len(keep)

    def internal(done: Program) -> None:  # only the whole program knows its internal fds
        fds = sorted(set(done.internal_fds))
        args.internal_fds = done.new("int[]", fds or [0])
        args.n_internal = len(fds)

    program.when_complete(internal)
    program.add_op("ambient", args, phase, "linux.ambient.scrub.v2")
    program.note(phase, notes.fds_kept_note([0, 1, 2, *keep]))
    program.note(phase, notes.session_note(params.tty))
    program.note(phase, notes.environment_note(len(params.env)))
