"""The kernel audit log, read-only: is it on, and may this process read it?

Landlock (ABI >= 7) reports its denials only as kernel audit records, so whether bvisor
could ever see them is a host fact: audit must be *enabled* (``AUDIT_GET`` over
``NETLINK_AUDIT``, which needs CAP_AUDIT_CONTROL in the initial namespaces) and its
records *readable* (binding the read-only multicast group ``AUDIT_NLGRP_READLOG``, which
needs CAP_AUDIT_READ). A normal user has neither; root on a host whose audit is disabled
(no auditd, ``audit=0``) has the capability but no records to read.

This module only asks. bvisor never sends ``AUDIT_SET`` — it never enables audit, never
changes its rate or backlog, never registers as the audit daemon: the audit state of a
host belongs to its administrator.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from dataclasses import dataclass

__all__ = ["AUDIT_GET", "AUDIT_NLGRP_READLOG", "NETLINK_AUDIT", "AuditState", "probe_audit"]

NETLINK_AUDIT = 9
AUDIT_GET = 1000
AUDIT_NLGRP_READLOG = 1
_NLMSG_ERROR = 2
_NLM_F_REQUEST, _NLM_F_ACK = 0x1, 0x4
_HEADER = struct.Struct("=IHHII")  # struct nlmsghdr
_STATUS = struct.Struct("=IIIIIIII")  # the leading fields of struct audit_status


@dataclass(frozen=True, slots=True)
class AuditState:
    """What the probe found: ``enabled`` (0, 1, 2=locked; None: could not be asked),
    whether the multicast group could be joined, and why, in words, for the notes."""

    enabled: int | None
    readable: bool
    why: str

    @property
    def usable(self) -> bool:
        """Records are produced and this process may read them."""
        return bool(self.enabled) and self.readable


def _status(sock: socket.socket) -> tuple[int, int]:
    """``(enabled, lost)`` from AUDIT_GET; OSError with the kernel's errno on refusal."""
    sock.settimeout(2.0)
    sock.send(_HEADER.pack(_HEADER.size, AUDIT_GET, _NLM_F_REQUEST | _NLM_F_ACK, 1, 0))
    while True:
        data = sock.recv(65536)
        offset = 0
        while offset + _HEADER.size <= len(data):
            length, kind, _flags, _seq, _pid = _HEADER.unpack_from(data, offset)
            payload = data[offset + _HEADER.size : offset + length]
            if kind == _NLMSG_ERROR:
                (code,) = struct.unpack_from("=i", payload)
                if code < 0:
                    raise OSError(-code, os.strerror(-code))
            elif kind == AUDIT_GET and len(payload) >= _STATUS.size:
                fields = _STATUS.unpack_from(payload)
                return fields[1], fields[6]
            if length < _HEADER.size:
                break
            offset += (length + 3) & ~3


def probe_audit() -> AuditState:
    """Ask the kernel whether audit is enabled and whether its records are readable here."""
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_AUDIT)
    except OSError as exc:
        return AuditState(None, False, f"no NETLINK_AUDIT socket ({_name(exc)})")
    with sock:
        try:
            enabled, _lost = _status(sock)
            asked = f"AUDIT_GET enabled={enabled}"
        except (OSError, TimeoutError) as exc:
            enabled, asked = None, f"AUDIT_GET refused ({_name(exc)}; needs CAP_AUDIT_CONTROL)"
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_AUDIT) as reader:
        try:
            reader.bind((0, 1 << (AUDIT_NLGRP_READLOG - 1)))
            readable, joined = True, "the read-only multicast group joined"
        except OSError as exc:
            readable = False
            joined = f"the read-only multicast group refused ({_name(exc)}; needs CAP_AUDIT_READ)"
    state = "enabled" if enabled else "disabled" if enabled == 0 else "unknown"
    return AuditState(enabled, readable, f"audit {state} ({asked}); {joined}")


def _name(exc: BaseException) -> str:
    code = getattr(exc, "errno", None)
    return errno.errorcode.get(code, str(exc)) if isinstance(code, int) else str(exc)
