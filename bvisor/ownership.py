"""Whether a user other than this one (or root) could change what a path names.

Written where bvisor writes outside any run — the ledger, the artifact directory — and
read before it trusts a name there: LMDB opens its files by name and follows symlinks,
and a directory another user may change lets that user put a symlink where bvisor is about
to write (root's bvisor then writes where the link points). Standard library only.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat

__all__ = ["others_may_change", "others_may_change_below"]


def others_may_change(path: str, *, as_parent: bool = False) -> str | None:
    """Why a user other than this one or root could replace what ``path`` (absolute)
    names, or None: ``path`` and every directory above it must be owned by this user or
    root, and writable by nobody else — unless sticky (``/tmp``; ``path`` itself only
    ``as_parent``, the directory an entry is about to be made in), where only an entry's
    owner may rename or remove it. A symlink on the way must be owned likewise (its mode
    means nothing). A group-writable directory is accepted only for this user's own group
    with no other listed member (a private group under umask 002). Inside a user
    namespace that leaves root unmapped (a rootless container), the owner every unmapped
    uid shows as — the overflow uid — is trusted like root: the host's root owns ``/`` and
    ``/tmp`` there and cannot be told apart. Checked by name from ``path`` up; callers
    check the real path too when the path may hold symlinks."""
    me = os.geteuid()
    trusted = {me, 0, *_unmapped_owner()}
    current = os.path.abspath(path)
    own = not as_parent
    while True:
        try:
            info = os.lstat(current)
        except OSError as exc:
            return f"{current} cannot be checked ({exc.strerror})"
        if info.st_uid not in trusted:
            return f"{current} is owned by uid {info.st_uid}"
        if not stat.S_ISLNK(info.st_mode):
            sticky = not own and info.st_mode & stat.S_ISVTX
            if info.st_mode & 0o002 and not sticky:
                return f"{current} is writable by every user"
            if info.st_mode & 0o020 and not sticky and not _private_group(info.st_gid):
                return f"{current} is writable by group {info.st_gid}"
        parent = os.path.dirname(current)
        if parent == current:
            return None
        current, own = parent, False


def others_may_change_below(path: str) -> str | None:
    """:func:`others_may_change` for a directory about to be made with its missing parents:
    the deepest directory above it that exists judged as their parent, by name and with
    links resolved (a directory of ours made in a sticky ``/tmp`` is safe; one made below
    a directory another user could change is not)."""
    target = os.path.abspath(path)
    existing = target
    while not os.path.lexists(existing):
        existing = os.path.dirname(existing)
    for name in dict.fromkeys((existing, os.path.realpath(existing))):
        foreign = others_may_change(name, as_parent=name != target)
        if foreign is not None:
            return foreign
    return None


def _private_group(gid: int) -> bool:
    """Whether ``gid`` is this user's primary group with no other listed member."""
    if gid != os.getegid():
        return False
    try:
        members = grp.getgrgid(gid).gr_mem
        name = pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return False
    return all(member == name for member in members)


def _unmapped_owner() -> tuple[int, ...]:
    """The overflow uid, when this process's user namespace does not map host root (0):
    then root's files show as it. Empty in the initial namespace."""
    try:
        with open("/proc/self/uid_map", encoding="ascii") as handle:
            ranges = [tuple(int(n) for n in line.split()) for line in handle if line.strip()]
        with open("/proc/sys/kernel/overflowuid", encoding="ascii") as handle:
            overflow = int(handle.read())
    except (OSError, ValueError):
        return ()
    maps_root = any(len(r) == 3 and r[1] <= 0 < r[1] + r[2] for r in ranges)
    return () if maps_root else (overflow,)
