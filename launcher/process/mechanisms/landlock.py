"""linux.landlock.apply.v2, .scope.v1 and .net.v1: the Landlock domains.

The ruleset is made here before clone3, handling every filesystem right this ABI knows,
with one rule per host path the plan grants, added from the fd the host opened for it (a
path this host lacks, or a system root that is a link, has none; its target is covered by
the real root it points into). In the child, after pivot_root, the rules for the new
root's own paths (``inside``: /, /dev, /proc, /tmp) are added from paths opened there, and
the domain is entered (``landlock.c``). A scope-only domain handles no filesystem right,
only the IPC scopes. The network domain (a network allow list, ABI >= 4) handles TCP connect
only and allows the proxy's port: stacked on the others, entered the same way. Hook
``skip_landlock`` makes each ruleset but never enters it.
"""

from __future__ import annotations

import errno

from bvisor.contract import notes
from bvisor.contract.lowering import Phase
from bvisor.contract.mechanisms import (
    LANDLOCK_ABI_FLOOR,
    LANDLOCK_NET,
    LandlockApply,
    LandlockNet,
    LandlockScope,
)
from bvisor.launcher.basement import landlock
from bvisor.launcher.process.program import Fault, Program
from bvisor.launcher.wire.protocol import DescriptorKind

__all__ = ["prepare", "prepare_net", "prepare_scope"]


def _abi(floor: int) -> int:
    try:
        abi = landlock.abi_version()
    except landlock.LandlockError as exc:
        raise Fault("landlock", exc.errno or errno.ENOSYS, str(exc)) from None
    if abi < floor:
        raise Fault(
            "landlock", errno.EOPNOTSUPP, f"kernel Landlock ABI {abi} is below the floor {floor}"
        )
    return abi


def _op(
    program: Program,
    phase: Phase,
    ruleset: landlock.LandlockRuleset,
    inside: list[tuple[str, int]],
    entry: str,
) -> None:
    program.internal_fds.append(ruleset.fd)
    program.close_after_spawn.append(ruleset.fd)
    if program.skipped("skip_landlock"):
        return
    args = program.new("struct bv_landlock_args *")
    args.ruleset_fd = ruleset.fd
    args.inside_paths = program.cstrings([path for path, _ in inside])
    args.inside_access = program.new("uint64_t[]", [mask for _, mask in inside] or [0])
    args.n_inside = len(inside)
    program.add_op("landlock", args, phase, entry)


def prepare(program: Program, phase: Phase, params: LandlockApply) -> None:
    abi = _abi(max(params.abi_floor, LANDLOCK_ABI_FLOOR))
    roots = program.verified.roots
    rules: list[tuple[int, str]] = []
    for rule in params.rules:
        slot = roots.get(rule.path)
        if slot is None or slot.expected.kind is DescriptorKind.SYMLINK:
            continue  # absent here, or a link whose target a real root covers
        rules.append((slot.slot_index, rule.access))
    try:
        ruleset = landlock.create_ruleset(abi, rules, params.scope)
        handled = ruleset.handled
        inside = [
            (rule.path, landlock.access_for(rule.access, handled, is_directory=True))
            for rule in params.inside
        ]
    except landlock.LandlockError as exc:
        raise Fault("landlock", exc.errno or errno.EINVAL, str(exc)) from None
    _op(program, phase, ruleset, inside, "linux.landlock.apply.v2")
    program.note(
        phase,
        notes.landlock_note(
            ruleset.abi, ruleset.rules + len(inside), ruleset.handled, ruleset.scoped
        ),
    )


def prepare_scope(program: Program, phase: Phase, params: LandlockScope) -> None:
    abi = _abi(landlock.SCOPE_ABI)
    try:
        ruleset = landlock.create_ruleset(abi, [], params.scope, handle_filesystem=False)
    except landlock.LandlockError as exc:
        raise Fault("landlock", exc.errno or errno.EINVAL, str(exc)) from None
    _op(program, phase, ruleset, [], "linux.landlock.scope.v1")
    program.note(phase, notes.landlock_note(ruleset.abi, 0, 0, ruleset.scoped))


def prepare_net(program: Program, phase: Phase, params: LandlockNet) -> None:
    abi = _abi(landlock.NET_ABI)
    try:
        ruleset = landlock.create_net_ruleset(abi, params.connect_ports)
    except landlock.LandlockError as exc:
        raise Fault("landlock", exc.errno or errno.EINVAL, str(exc)) from None
    _op(program, phase, ruleset, [], LANDLOCK_NET.id)
    program.note(phase, notes.landlock_net_note(ruleset.abi, params.connect_ports))
