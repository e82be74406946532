"""Start the launcher from the host with fds at exact numbers, without fork.

The host may be multi-threaded (the API is called from threads), so it never forks and
never runs Python in a child: ``os.posix_spawn`` with DUP2 file actions places each fd at
its target number. Every source is first duplicated (close-on-exec) above every target,
so one placement can never overwrite the source of another and ``dup2`` always changes
the number (which is what clears close-on-exec on the target). The launcher normally gets
its own process group, so the host can signal the launcher and its workload together.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Mapping, Sequence

__all__ = ["spawn_with_fds"]


def spawn_with_fds(
    path: str,
    argv: Sequence[str],
    env: Mapping[str, str],
    placements: Sequence[tuple[int, int]],
    *,
    new_process_group: bool = True,
) -> int:
    """posix_spawn ``path`` with each (source fd, target number) placed; returns the pid."""
    targets = [target for _, target in placements]
    if len(set(targets)) != len(targets):
        raise ValueError(f"two fds placed at one number: {sorted(targets)}")
    floor = max(targets, default=2) + 1
    staged: list[int] = []
    try:
        for source, _ in placements:
            staged.append(fcntl.fcntl(source, fcntl.F_DUPFD_CLOEXEC, floor))
        actions = [
            (os.POSIX_SPAWN_DUP2, tmp, target)
            for tmp, (_, target) in zip(staged, placements, strict=True)
        ]
        if new_process_group:
            return os.posix_spawn(path, list(argv), dict(env), file_actions=actions, setpgroup=0)
        return os.posix_spawn(path, list(argv), dict(env), file_actions=actions)
    finally:
        for fd in staged:
            os.close(fd)
