"""What a plan may name as the workload's hostname and NIS domain name (``linux.utsns.v1``).

The kernel takes up to 64 bytes for each (``__NEW_UTS_LEN``) and refuses nothing else in
them, but a name is read back by programs that put it in prompts, log lines, file names
and shell commands, so a plan names only what those can carry unquoted: a hostname is
dot-separated labels of ASCII letters, digits and inner hyphens (RFC 1123), a domain name
the same or the kernel's own unset spelling, :data:`UNSET_DOMAIN`. Planner, launcher and
replay read a plan's names through :func:`check_hostname` and :func:`check_domainname`, so
a bad value is refused by name of its field wherever it is met, before any child exists.
"""

from __future__ import annotations

import re
from typing import Final

from bvisor.contract.errors import ContractError

__all__ = ["MAX_BYTES", "UNSET_DOMAIN", "check_domainname", "check_hostname"]

MAX_BYTES: Final = 64  # the kernel's __NEW_UTS_LEN, without its NUL
# What a kernel shows as the domain name before anyone set one (uname -y, domainname).
UNSET_DOMAIN: Final = "(none)"
_LABEL: Final = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_NAME: Final = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\Z")


def check_hostname(value: str, path: str = "hostname") -> str:
    """``value`` when it is a hostname a plan may name; else ContractError naming ``path``."""
    if not isinstance(value, str):
        raise ContractError(path, "expected text", "wrong-type")
    if not value:
        raise ContractError(path, "a hostname is not empty", "invalid-value")
    if len(value.encode("utf-8")) > MAX_BYTES:
        raise ContractError(
            path, f"at most {MAX_BYTES} bytes (the kernel's limit)", "invalid-value"
        )
    if not _NAME.match(value):
        raise ContractError(
            path,
            f"{value!r} is not dot-separated labels of ASCII letters, digits and inner hyphens",
            "invalid-value",
        )
    return value


def check_domainname(value: str, path: str = "domainname") -> str:
    """``value`` when it is a domain name a plan may name (a hostname's grammar, or
    :data:`UNSET_DOMAIN`); else ContractError naming ``path``."""
    if value == UNSET_DOMAIN:
        return value
    try:
        return check_hostname(value, path)
    except ContractError as exc:
        raise ContractError(
            exc.path, f"{exc.message}; or {UNSET_DOMAIN!r}, the kernel's unset name", exc.code
        ) from None
