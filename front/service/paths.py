"""Where the service listens: a private directory of this user, its socket and its token.

Standard library only, and nothing beyond ``os`` and ``stat`` (the thin client imports it
on every command); the service itself, which makes the directory, also judges its place
with :mod:`bvisor.ownership`.
"""

from __future__ import annotations

import os
import stat

__all__ = [
    "PROOF_NAME",
    "SOCKET_NAME",
    "TOKEN_NAME",
    "UnsafeRuntimeDir",
    "private_dir",
    "proof_nonce",
    "read_token",
    "service_dir",
    "service_dirs",
]

SOCKET_NAME = "serve.sock"
TOKEN_NAME = "serve.token"
TOKEN_BYTES = 32
PROOF_NAME = "bvisor-serve-proof-"  # the service's proof memfd: this, then its nonce (hex)


class UnsafeRuntimeDir(OSError):
    """The service directory exists but is not a private directory of this user."""


def service_dir() -> str:
    """``$XDG_RUNTIME_DIR/bvisor`` when that runtime dir is ours and private, else
    ``~/.cache/bvisor/serve``.

    Never a name in ``/tmp``: a run from ``/tmp`` is given ``/tmp`` read-write, and then
    its workload would have the service's token and socket (such a run is refused, see
    ``service_dirs``); and another user can take a predictable ``/tmp`` name first."""
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    if runtime.startswith("/"):
        try:
            info = os.lstat(runtime)
        except OSError:
            info = None
        if info is not None and _is_private_dir(info):
            return os.path.join(runtime, "bvisor")
    return os.path.join(os.path.expanduser("~"), ".cache", "bvisor", "serve")


def service_dirs() -> tuple[str, ...]:
    """Every directory a service of this user may listen in that exists now (the runtime
    dir's and the home one: which is used depends on the caller's environment), so a run
    can refuse a root that reaches any of them."""
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    candidates = [os.path.join(os.path.expanduser("~"), ".cache", "bvisor", "serve")]
    if runtime.startswith("/"):
        candidates.insert(0, os.path.join(runtime, "bvisor"))
    return tuple(path for path in candidates if os.path.lexists(path))


def private_dir(path: str, *, create: bool) -> str | None:
    """``path`` if it is a directory of ours that nobody else may enter (made so when
    ``create`` and it is missing); None when missing; raise when it is anything else.

    ``create`` is the service's own call, which then writes its token and binds its
    socket there by name: the place is first judged as the ledger's is
    (:mod:`bvisor.ownership`), the deepest directory that exists before anything is
    made and the whole path, by name and by real path, once made. Without that, a
    ``HOME`` in another user's tree (``sudo -E``) let that user's
    ``~/.cache/bvisor -> /etc`` have root's service make ``/etc/serve`` and listen there,
    and swap the directory between the service's steps by name. A command that only
    connects (``create`` false) trusts the socket by its peer's uid instead."""
    if create:
        from bvisor.ownership import others_may_change, others_may_change_below

        foreign = others_may_change_below(path)
        if foreign is not None:
            raise UnsafeRuntimeDir(
                f"{path}: {foreign}, so another user could re-point it; not using it"
            )
        parent = os.path.dirname(path)
        if not os.path.isdir(parent):  # ~/.cache/bvisor: made private, like the leaf
            os.makedirs(parent, 0o700, exist_ok=True)
        try:  # noqa: SIM105 - contextlib is not imported by the thin client
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass  # judged below like any directory found
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    if not _is_private_dir(info):
        raise UnsafeRuntimeDir(
            f"{path} is not a directory owned by uid {os.geteuid()} with mode 0700 "
            f"(mode {stat.filemode(info.st_mode)}, owner {info.st_uid}); not using it"
        )
    if create:
        for named in dict.fromkeys((path, os.path.realpath(path))):
            foreign = others_may_change(named)
            if foreign is not None:
                raise UnsafeRuntimeDir(
                    f"{path}: {foreign}, so another user could re-point it; not using it"
                )
    return path


def read_token(directory: str) -> tuple[bytes, int] | None:
    """The service's token and the number of its proof fd (``server._proof``), if the file
    is ours, private and whole; else None. The file holds the token's bytes, then the fd's
    number in decimal."""
    try:
        fd = os.open(
            os.path.join(directory, TOKEN_NAME), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
        )
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o077:
            return None
        data = os.read(fd, TOKEN_BYTES + 12)
    finally:
        os.close(fd)
    number = data[TOKEN_BYTES:]
    if len(data) <= TOKEN_BYTES or len(number) > 10 or not number.isdigit():
        return None
    return data[:TOKEN_BYTES], int(number)


def _is_private_dir(info: os.stat_result) -> bool:
    return (
        stat.S_ISDIR(info.st_mode)
        and info.st_uid == os.geteuid()
        and stat.S_IMODE(info.st_mode) & 0o077 == 0
    )


def proof_nonce(pid: int, fd: int) -> str | None:
    """The nonce in the name of process ``pid``'s proof memfd ``fd`` (``PROOF_NAME`` and
    the nonce), read through ``/proc/PID/fd``; None when it cannot be read. The kernel
    shows that link only to a process that may inspect ``pid`` (ptrace read access),
    which Landlock refuses a process in a domain ``pid`` is not in: each side of the
    service's socket proves so that it may inspect the other."""
    try:
        target = os.readlink(f"/proc/{pid}/fd/{fd}")
    except OSError:
        return None
    prefix = "/memfd:" + PROOF_NAME
    if not target.startswith(prefix):
        return None
    return target[len(prefix) :].split(" ", 1)[0]
