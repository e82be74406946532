"""One module per launcher-side mechanism, each beside its C phase function (``<name>.c``).

``PREPARE`` maps a catalogue primitive id to the function that adds that mechanism to the
child's :class:`~bvisor.launcher.process.program.Program`, given the entry's phase and
typed parameters. The launcher calls them in schedule order; host-side primitives
(budgets, capture, teardown) have none here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from bvisor.contract import mechanisms as mech
from bvisor.contract.lowering import Phase
from bvisor.launcher.process.mechanisms import (
    ambient,
    caps,
    cgroup,
    exec,
    ipcns,
    landlock,
    netdns,
    netns,
    netproxy,
    nonewprivs,
    oom,
    outputs,
    pidns,
    rootfs,
    seccomp,
    userlimits,
    userns,
    utsns,
)
from bvisor.launcher.process.program import Program

__all__ = ["PREPARE"]

Prepare = Callable[[Program, Phase, Any], None]

PREPARE: Mapping[str, Prepare] = {
    mech.USERNS.id: userns.prepare,
    mech.USER_LIMITS.id: userlimits.prepare,
    mech.NETNS.id: netns.prepare,
    mech.NETPROXY.id: netproxy.prepare,
    mech.NETDNS.id: netdns.prepare,
    mech.IPCNS.id: ipcns.prepare,
    mech.UTSNS.id: utsns.prepare,
    mech.PIDNS.id: pidns.prepare,
    mech.CGROUP_LEAF.id: cgroup.prepare,
    mech.ROOTFS.id: rootfs.prepare,
    mech.OOM_SCORE.id: oom.prepare,
    mech.CAPS_DROP.id: caps.prepare,
    mech.NO_NEW_PRIVS.id: nonewprivs.prepare,
    mech.AMBIENT_SCRUB.id: ambient.prepare,
    mech.LANDLOCK.id: landlock.prepare,
    mech.LANDLOCK_SCOPE.id: landlock.prepare_scope,
    mech.LANDLOCK_NET.id: landlock.prepare_net,
    mech.SECCOMP.id: seccomp.prepare,
    mech.EXEC.id: exec.prepare,
    mech.OUTPUTS.id: outputs.prepare,
}
