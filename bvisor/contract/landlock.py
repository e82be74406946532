"""Landlock's kernel facts that a run's evidence names: the filesystem rights each ABI
can restrict, and the scope bits.

They have one home here, in the bottom layer, because two sides read them: the launcher
(``bvisor.launcher.basement.landlock``) builds its rulesets from them, and replay
(``bvisor.replay.applied``) checks that the domain a launcher noted handled every right
its ABI can restrict and scoped exactly what the plan scoped. Values are the kernel's
(``include/uapi/linux/landlock.h``).
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "ACCESS_FS_EXECUTE",
    "ACCESS_FS_IOCTL_DEV",
    "ACCESS_FS_READ_DIR",
    "ACCESS_FS_READ_FILE",
    "ACCESS_FS_REFER",
    "ACCESS_FS_TRUNCATE",
    "ACCESS_FS_WRITE_FILE",
    "SCOPES",
    "SCOPE_ABSTRACT_UNIX_SOCKET",
    "SCOPE_SIGNAL",
    "fs_rights_for_abi",
    "scope_bits",
]

ACCESS_FS_EXECUTE: Final = 1 << 0
ACCESS_FS_WRITE_FILE: Final = 1 << 1
ACCESS_FS_READ_FILE: Final = 1 << 2
ACCESS_FS_READ_DIR: Final = 1 << 3
# 1 << 4 .. 1 << 12: remove_dir, remove_file, make_char, make_dir, make_reg, make_sock,
# make_fifo, make_block, make_sym (ABI 1 handles them all; nothing names one alone).
ACCESS_FS_REFER: Final = 1 << 13  # ABI 2
ACCESS_FS_TRUNCATE: Final = 1 << 14  # ABI 3
ACCESS_FS_IOCTL_DEV: Final = 1 << 15  # ABI 5

_ABI1: Final = (1 << 13) - 1  # execute .. make_sym
_BY_ABI: Final = {
    1: _ABI1,
    2: _ABI1 | ACCESS_FS_REFER,
    3: _ABI1 | ACCESS_FS_REFER | ACCESS_FS_TRUNCATE,
    4: _ABI1 | ACCESS_FS_REFER | ACCESS_FS_TRUNCATE,
    5: _ABI1 | ACCESS_FS_REFER | ACCESS_FS_TRUNCATE | ACCESS_FS_IOCTL_DEV,
}

SCOPE_ABSTRACT_UNIX_SOCKET: Final = 1 << 0
SCOPE_SIGNAL: Final = 1 << 1
SCOPES: Final = {"abstract_unix_socket": SCOPE_ABSTRACT_UNIX_SOCKET, "signal": SCOPE_SIGNAL}


def fs_rights_for_abi(abi: int) -> int:
    """Every filesystem right the given ABI can restrict (ABIs above 5 add no fs rights)."""
    return _BY_ABI[min(max(abi, 1), 5)]


def scope_bits(scopes: tuple[str, ...] | list[str]) -> int:
    """The ``scoped`` bits for scope names; an unknown name is a ValueError, never
    ignored."""
    bits = 0
    for name in scopes:
        if name not in SCOPES:
            raise ValueError(f"unknown Landlock scope {name!r}")
        bits |= SCOPES[name]
    return bits
