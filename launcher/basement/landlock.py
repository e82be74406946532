"""Landlock rulesets, built in the launcher before clone3 from the host's root fds.

The launcher creates the ruleset and adds one path-beneath rule per root fd *before* the
child exists; the child window only calls ``landlock_restrict_self(ruleset_fd)``. Rules
are added against the fds the host opened (never a path), so what is allowed is exactly
the directory the host named at planning time.

Access sets: the ruleset handles every filesystem right the running ABI knows (so nothing
the kernel can restrict is left unrestricted); a ``read`` root is granted read-file,
read-dir and execute; ``write`` and ``read_write`` roots are granted every handled right.
``list`` (the private root's own ``/``) grants reading the directory only. A root that is
a regular file gets only the rights that apply to files (the kernel rejects directory
rights on a file rule).

Network (ABI 4): a domain that handles only ``CONNECT_TCP`` with one rule per allowed
port — the allow list's: the workload may open TCP connections to the proxy's port and to
no other (a second layer under its empty network namespace).

Scopes (ABI 6): ``signal`` stops the workload from signalling any process outside its
Landlock domain (without a PID namespace it would otherwise reach every process of the
same uid), and ``abstract_unix_socket`` stops it from connecting to abstract UNIX sockets
created outside the domain.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass

from bvisor.contract.landlock import (
    ACCESS_FS_EXECUTE,
    ACCESS_FS_IOCTL_DEV,
    ACCESS_FS_READ_DIR,
    ACCESS_FS_READ_FILE,
    ACCESS_FS_TRUNCATE,
    ACCESS_FS_WRITE_FILE,
    fs_rights_for_abi,
)
from bvisor.contract.landlock import scope_bits as contract_scope_bits
from bvisor.launcher.basement import window

__all__ = [
    "LandlockError",
    "LandlockRuleset",
    "abi_version",
    "access_for",
    "create_net_ruleset",
    "create_ruleset",
    "handled_access_for_abi",
    "scope_bits",
]

SCOPE_ABI = 6
NET_ABI = 4
ACCESS_NET_BIND_TCP = 1 << 0
ACCESS_NET_CONNECT_TCP = 1 << 1

_FILE_RIGHTS = (
    ACCESS_FS_EXECUTE
    | ACCESS_FS_WRITE_FILE
    | ACCESS_FS_READ_FILE
    | ACCESS_FS_TRUNCATE
    | ACCESS_FS_IOCTL_DEV
)
_READ_RIGHTS = ACCESS_FS_EXECUTE | ACCESS_FS_READ_FILE | ACCESS_FS_READ_DIR


class LandlockError(OSError):
    """Landlock is unavailable or refused a ruleset operation (errno preserved)."""


@dataclass(frozen=True, slots=True)
class LandlockRuleset:
    """An open ruleset fd (O_CLOEXEC) ready for restrict_self in the child."""

    fd: int
    abi: int
    handled: int
    rules: int
    scoped: int = 0


def abi_version() -> int:
    """The kernel's Landlock ABI; raises LandlockError(ENOSYS/EOPNOTSUPP) when absent."""
    result = int(window.load().lib.bv_landlock_abi())
    if result < 0:
        raise LandlockError(-result, f"landlock unavailable: {os.strerror(-result)}")
    return result


def handled_access_for_abi(abi: int) -> int:
    """Every filesystem right the given ABI can restrict (the contract's fact)."""
    return fs_rights_for_abi(abi)


def access_for(access: str, handled: int, *, is_directory: bool) -> int:
    """The rights granted beneath one root: ``list`` (read the directory only), ``read``
    (read, execute, list), ``write`` / ``read_write`` (every handled right)."""
    if access == "list":
        granted = ACCESS_FS_READ_DIR & handled
    else:
        granted = (_READ_RIGHTS if access == "read" else handled) & handled
    if not is_directory:
        granted &= _FILE_RIGHTS
    return granted


def scope_bits(scopes: tuple[str, ...]) -> int:
    """The ``scoped`` bits for scope names; an unknown name is an error, never ignored."""
    try:
        return contract_scope_bits(scopes)
    except ValueError as exc:
        raise LandlockError(errno.EINVAL, str(exc)) from None


def create_net_ruleset(abi: int, connect_ports: tuple[int, ...]) -> LandlockRuleset:
    """A ruleset handling only TCP connect, allowing exactly ``connect_ports``."""
    if abi < NET_ABI:
        raise LandlockError(
            errno.EOPNOTSUPP, f"Landlock network rules need ABI {NET_ABI}, the kernel has {abi}"
        )
    lib = window.load().lib
    fd = int(lib.bv_landlock_create_net_ruleset(ACCESS_NET_CONNECT_TCP))
    if fd < 0:
        raise LandlockError(-fd, f"landlock_create_ruleset(net): {os.strerror(-fd)}")
    try:
        for port in connect_ports:
            rc = int(lib.bv_landlock_add_port_rule(fd, ACCESS_NET_CONNECT_TCP, port))
            if rc < 0:
                raise LandlockError(-rc, f"landlock_add_rule(port {port}): {os.strerror(-rc)}")
    except BaseException:
        os.close(fd)
        raise
    return LandlockRuleset(fd=fd, abi=abi, handled=ACCESS_NET_CONNECT_TCP, rules=len(connect_ports))


def create_ruleset(
    abi: int,
    roots: list[tuple[int, str]],
    scopes: tuple[str, ...] = (),
    *,
    handle_filesystem: bool = True,
) -> LandlockRuleset:
    """Create a ruleset handling everything ``abi`` knows, with one rule per (fd, access).

    ``handle_filesystem=False`` makes a scope-only domain: no filesystem right is handled
    (so none is restricted), only the IPC scopes; it takes no rules.
    """
    lib = window.load().lib
    handled = handled_access_for_abi(abi) if handle_filesystem else 0
    if not handle_filesystem and (roots or not scopes):
        raise LandlockError(errno.EINVAL, "a scope-only domain takes scopes and no rules")
    scoped = scope_bits(scopes)
    if scoped and abi < SCOPE_ABI:
        raise LandlockError(
            errno.EOPNOTSUPP, f"Landlock scopes need ABI {SCOPE_ABI}, the kernel has {abi}"
        )
    fd = int(lib.bv_landlock_create_ruleset(handled, scoped))
    if fd < 0:
        raise LandlockError(-fd, f"landlock_create_ruleset: {os.strerror(-fd)}")
    try:
        for root_fd, access in roots:
            is_dir = stat.S_ISDIR(os.fstat(root_fd).st_mode)
            allowed = access_for(access, handled, is_directory=is_dir)
            rc = int(lib.bv_landlock_add_path_rule(fd, allowed, root_fd))
            if rc < 0:
                raise LandlockError(-rc, f"landlock_add_rule(fd {root_fd}): {os.strerror(-rc)}")
    except BaseException:
        os.close(fd)
        raise
    if os.get_inheritable(fd):
        os.close(fd)
        raise LandlockError(errno.EINVAL, "ruleset fd is not close-on-exec")
    return LandlockRuleset(fd=fd, abi=abi, handled=handled, rules=len(roots), scoped=scoped)
