"""Mechanism selection of rules v3: v2's requests, plus the allow list's resolver.

Where v2 schedules the allow list's proxy (``linux.netproxy.v1``), v3 also schedules its
resolver, ``linux.netdns.v1`` at :data:`DNS_PORT` (a stub resolver's port: resolv.conf
cannot name another). Where v2 builds a private root, v3 adds a ``file`` mount at
:data:`RESOLV_CONF` naming that resolver (:data:`RESOLV_TEXT`), last, over whatever the
system roots put there — not required: a host whose ``/etc`` has no ``resolv.conf`` gets
none (the C library then asks ``127.0.0.1:53``, the resolver, by default) — and a
Landlock rule reading its directory inside the root (a host ``/etc`` is bound read-only,
so that rule grants nothing the bind's own does not; without one, the directory holds
only this file). Every other request is v2's,
unchanged.
"""

from __future__ import annotations

import dataclasses
import posixpath

from bvisor.contract import mechanisms as mech
from bvisor.contract.admission import AdmissionRecord
from bvisor.contract.profile import HostFacts
from bvisor.contract.spec import BoundarySpec
from bvisor.planner.rules.base import Request
from bvisor.planner.rules.v2.selection import select_primitives as v2_select

__all__ = ["DNS_PORT", "RESOLV_CONF", "RESOLV_TEXT", "select_primitives"]

DNS_PORT = 53
RESOLV_CONF = "/etc/resolv.conf"
RESOLV_TEXT = (
    "# made by bvisor: the network allow list's resolver, served by the host's proxy\n"
    "nameserver 127.0.0.1\n"
    "options attempts:2 timeout:2\n"
)


def _with_resolv_conf(value: object) -> Request:
    rootfs: mech.Rootfs = mech.Rootfs.from_value(value)
    mounts = (*rootfs.mounts, mech.FileMount(RESOLV_CONF, RESOLV_TEXT, False))
    return (mech.ROOTFS.id, dataclasses.replace(rootfs, mounts=mounts).to_value())


def _with_resolv_rule(value: object) -> Request:
    landlock: mech.LandlockApply = mech.LandlockApply.from_value(value)
    inside = (*landlock.inside, mech.PathRule(posixpath.dirname(RESOLV_CONF), "read"))
    return (mech.LANDLOCK.id, dataclasses.replace(landlock, inside=inside).to_value())


def select_primitives(
    spec: BoundarySpec, facts: HostFacts, record: AdmissionRecord
) -> list[Request]:
    """The (primitive id, params) requests for an admitted spec (unordered)."""
    requests = list(v2_select(spec, facts, record))
    if not any(primitive == mech.NETPROXY.id for primitive, _ in requests):
        return requests
    amended: list[Request] = []
    for primitive, value in requests:
        if primitive == mech.ROOTFS.id:
            amended.append(_with_resolv_conf(value))
        elif primitive == mech.LANDLOCK.id:
            amended.append(_with_resolv_rule(value))
        else:
            amended.append((primitive, value))
    amended.append((mech.NETDNS.id, mech.NetDns(DNS_PORT).to_value()))
    return amended
