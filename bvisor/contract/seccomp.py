"""What a seccomp filter denies, by the flags it was built with: one wording, here.

The launcher's basement builds the filter from the flags of its lowering entry and says
in its note (:func:`bvisor.contract.notes.seccomp_note`) what the filter denies, as these
labels; replay reads the note back and requires exactly the labels those flags call for
(:func:`denial_problem`), so a note whose flags say "no sockets" while its list denies
none cannot pass for a filter that did.

The list is a function of the flags alone, in a fixed order: the baseline every filter
carries, then the rules of ``threads_only``, ``deny_new_tasks``, ``deny_sockets``,
``inet_sockets_only`` and ``notify_denials``. The baseline's first label grew when the
filter grew (watches, perf events, bpf, ...), and the baseline gained a label when the
core dump limit was kept, then one for page cache eviction and one for tty line
disciplines; a released launcher's shorter group label and shorter baseline are still
accepted, since its ledgers must keep replaying, and no launcher writes them now.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

__all__ = [
    "BASELINE",
    "BASELINE_GROUP",
    "INET_ONLY",
    "NEW_TASKS",
    "NO_OWN_FILTER",
    "SOCKETS",
    "THREADS_ONLY",
    "denial_problem",
    "expected_denials",
    "split_denied",
]

# The group of syscalls every filter refuses outright (basement.seccomp.BASELINE_DENIED).
BASELINE_GROUP: Final = (
    "namespaces, keyrings, io_uring, mounts, inotify/fanotify watches, "
    "perf events, bpf, userfaultfd, the kernel log, native AIO"
)
# What released launchers called that group as it grew (rules v1 and v2; then with the
# watches, 587f3ce; perf events to the kernel log, 74192cc; native AIO came with 53fcd7b):
# ledgers hold each of them.
_RELEASED_GROUPS: Final = (
    "namespaces, keyrings, io_uring, mounts",
    "namespaces, keyrings, io_uring, mounts, inotify/fanotify watches",
    "namespaces, keyrings, io_uring, mounts, inotify/fanotify watches, "
    "perf events, bpf, userfaultfd, the kernel log",
)
# The rest of the baseline, after the group.
BASELINE: Final = (
    "clone/unshare(CLONE_NEW*)",
    "limits/scheduling of other processes",
    "setuid/setgid modes",
    "fcntl(F_SETLEASE, F_NOTIFY)",
    "the core dump limit",
    "page cache eviction",
    "tty line disciplines",
)
# The baseline's rest as released launchers wrote it: before the core dump limit was kept,
# and before page cache eviction was refused (the baseline of rules v4 when released).
_RELEASED_RESTS: Final = (BASELINE[:4], BASELINE[:5])
THREADS_ONLY: Final = ("fork", "vfork", "clone(unless a thread)", "clone3(ENOSYS)")
NEW_TASKS: Final = ("clone", "clone3", "fork", "vfork")
_PAIRS: Final = "socketpair(except AF_UNIX stream/seqpacket)"
SOCKETS: Final = ("socket", _PAIRS, "connect", "sendto(addr)")
INET_ONLY: Final = ("socket(except AF_INET, AF_INET6)", _PAIRS)
NO_OWN_FILTER: Final = ("seccomp(SET_MODE_FILTER)", "prctl(PR_SET_SECCOMP, FILTER)")

# Each flag's labels, in the order the filter adds its rules.
_BY_FLAG: Final = (
    ("threads_only", THREADS_ONLY),
    ("deny_new_tasks", NEW_TASKS),
    ("deny_sockets", SOCKETS),
    ("inet_sockets_only", INET_ONLY),
    ("notify_denials", NO_OWN_FILTER),
)
# Labels are joined by a bare comma; a comma inside one is always followed by a blank.
_SEPARATOR = re.compile(r",(?! )")


def expected_denials(flags: Mapping[str, bool]) -> tuple[str, ...]:
    """The labels a filter built with ``flags`` denies (a flag not named is off)."""
    labels = [BASELINE_GROUP, *BASELINE]
    for flag, added in _BY_FLAG:
        if flags.get(flag, False):
            labels += added
    return tuple(labels)


def split_denied(text: str) -> tuple[str, ...]:
    """A note's ``denied=`` list back into its labels (``none`` is no label)."""
    if text in ("", "none"):
        return ()
    return tuple(_SEPARATOR.split(text))


def denial_problem(flags: Mapping[str, bool], denied: str) -> str | None:
    """Why a note's ``denied=`` list is not what a filter of ``flags`` denies, or None."""
    stated = list(split_denied(denied))
    if stated and stated[0] in _RELEASED_GROUPS:
        stated[0] = BASELINE_GROUP
    expected = list(expected_denials(flags))
    if stated == expected:
        return None
    for released in _RELEASED_RESTS:  # a released launcher's baseline, before it grew
        grown = [*stated[: 1 + len(released)], *BASELINE[len(released) :]]
        if stated[1 : 1 + len(released)] == list(released) and (
            [*grown, *stated[1 + len(released) :]] == expected
        ):
            return None
    missing = [label for label in expected if label not in stated]
    if missing:
        return f"it does not deny {missing}, which its flags call for"
    return f"it lists {stated}, a filter of its flags denies {expected}"
