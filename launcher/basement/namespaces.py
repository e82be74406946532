"""What namespaces a child of this process can create, asked of the kernel in C.

:func:`probe_namespaces` calls the child window module's ``bv_probe_namespaces``, which
forks a throwaway child (unsharing is irreversible for the caller, and the answer must
reflect what *these* credentials may do) that tries a user namespace, a UTS namespace in
it whose hostname it sets, a network namespace
in it (bringing its loopback up and listening on 127.0.0.1
there), then a mount and a PID namespace where a grandchild mounts a tmpfs and a fresh
procfs the way a private root does. No interpreter is started for it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from bvisor.launcher.basement import window

__all__ = ["NamespaceFacts", "probe_namespaces"]

_USERNS, _NETNS, _PRIVATE_ROOT, _NET_LOOPBACK, _UTSNS = 1, 2, 4, 8, 16
_STEPS = {
    1: "unshare(CLONE_NEWUSER)",
    2: "unshare(CLONE_NEWNS|CLONE_NEWPID)",
    3: "fork into the PID namespace",
    4: "make mounts private",
    5: "mount a tmpfs",
    6: "mount a procfs",
}


@dataclass(frozen=True, slots=True)
class NamespaceFacts:
    userns: bool
    netns: bool
    private_root: bool
    why_not: str  # the step that failed, with its errno ("" when everything worked)
    # In the new network namespace: loopback brought up, a TCP listener on 127.0.0.1.
    net_loopback: bool = False
    # A UTS namespace made (in the user namespace unless as root) and its hostname set.
    utsns: bool = False


def probe_namespaces(as_root: bool) -> NamespaceFacts:
    """Try it in a child (as root without a user namespace; else inside one)."""
    ffi, lib = window.load().ffi, window.load().lib
    step, err = ffi.new("int *"), ffi.new("int *")
    bits = int(lib.bv_probe_namespaces(int(as_root), step, err))
    if bits < 0:
        return NamespaceFacts(False, False, False, f"probe child: {os.strerror(-bits)}")
    why = ""
    if step[0]:
        what = _STEPS.get(int(step[0]), f"step {int(step[0])}")
        why = f"{what} failed" + (f": {os.strerror(int(err[0]))}" if err[0] else "")
    return NamespaceFacts(
        userns=as_root or bool(bits & _USERNS),
        netns=bool(bits & _NETNS),
        private_root=bool(bits & _PRIVATE_ROOT),
        why_not=why,
        net_loopback=bool(bits & _NET_LOOPBACK),
        utsns=bool(bits & _UTSNS),
    )
