"""Which bvisor, and which Python around it, a process is: the service serves only its own.

The service forks copies of itself that become a command, so a served command runs the
*service's* code, its interpreter and its import path, never the command's. Two installs
of bvisor (two virtual environments, two checkouts, an upgrade into a new one) share one
per-user service, and a command from one served by the other would run code the caller
never chose, and record that code's plan as the caller's. Nor may the environment the
service was started with stand in for a later command's: ``PYTHONPATH`` from the command
that started it (a directory that command's workload could write) stays on the service's
import path for every command after, and ``LD_PRELOAD`` stays loaded in it.

So the client presents this identity and the service compares it with its own: the
interpreter (resolved), bvisor's package directory (resolved), the prefix, the import path
(the client's without its first entry, the directory of the script or of ``-m``/``-c``
that a service started with ``-P`` never has), and every ``PYTHON*`` and ``LD_*`` variable
of the environment. Anything else is a different bvisor: the command runs in its own
process, under its own code. The service's own files changing on disk is its staleness
(``server._stale``), checked separately.

Standard library only, for the thin client.
"""

from __future__ import annotations

import os
import sys

__all__ = ["install_identity"]

_SHAPING_ENV = ("PYTHON", "LD_")


def install_identity(*, start_directory_first: bool) -> list[object]:
    """This process's identity as a JSON value. ``start_directory_first``: ``sys.path[0]``
    is the directory Python put there for a script, ``-m`` or ``-c`` (a command's; never a
    service's, which is started with ``-P`` or forgets it), left out of the comparison."""
    import bvisor

    path = sys.path[1:] if start_directory_first else sys.path
    return [
        os.path.realpath(sys.executable),
        os.path.dirname(os.path.realpath(bvisor.__file__)),
        sys.prefix,
        list(path),
        sorted([k, v] for k, v in os.environ.items() if k.startswith(_SHAPING_ENV)),
    ]
