"""This process's open fds, as the kernel lists them.

Standard library only, in the bottom layer: the service's client (which must stay cheap to
import), its server, the host's inherited-fd checks and the launcher all ask this one.
"""

from __future__ import annotations

import os

__all__ = ["open_fds"]


def open_fds() -> list[int]:
    """The fds open in this process. Listing /proc/self/fd holds a directory fd of its
    own while it reads; only the numbers still open afterwards count."""
    still_open = []
    for name in os.listdir("/proc/self/fd"):
        try:
            os.fstat(int(name))
        except OSError:
            continue
        still_open.append(int(name))
    return sorted(still_open)
