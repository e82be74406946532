"""Pure checks of a decoded launch body: h_l, the catalogue, and target/lowering agreement.

The launcher refuses rather than guesses. A body passes only if:

* h_l recomputed from the lowering entries equals the body's h_l;
* every entry is in the mechanism catalogue with the catalogue's version, phase and
  declaration digest, no
  entry repeats, phases never go backwards, each entry's prerequisites are present
  (except ``linux.nonewprivs.v1``, which the launcher applies unconditionally), and
  ``linux.exec.v1`` is present;
* the target asks for exactly the mechanisms the lowering schedules: seccomp <->
  ``linux.seccomp.apply.v1``, Landlock <-> ``linux.landlock.apply.v1``, user namespace
  <-> ``linux.userns.create.v1``, network namespace <-> ``linux.netns.create.v1``, cgroup
  placement <-> ``linux.cgroup.leaf.v1`` (host-side entries are accepted and ignored);
* each entry's parameters hash to its ``param_digest``, and the target says what those
  parameters say: argv, environment names and literal values, kept fds, uid/gid maps,
  seccomp rules, Landlock accesses, scopes and ABI floor, cgroup leaves. What the
  launcher cannot see for itself — which file an fd is, a lease's value — the host bound
  when it opened the path or resolved the lease; this check closes the rest, so a host
  bug that builds a target other than the plan's is refused instead of obeyed;
* the descriptor table is coherent with the target: unique slots above stdio, one
  TARGET_EXE slot which is the exe slot, every Landlock rule names an FS_ROOT slot and
  every FS_ROOT slot is used, cgroup slots have cgroup roles, and INHERITED slots are
  exactly ``keep_fds``.

Each failure is a :class:`Refusal` with a stable kebab-case code. No OS calls here.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from bvisor.contract import mechanisms as mech
from bvisor.contract.lowering import lowering_digest, param_digest
from bvisor.launcher.wire.lowered import LoweredParams, LoweringParamsError, parse_lowering_params
from bvisor.launcher.wire.protocol import DescriptorKind, DescriptorRole, LaunchBody, TargetSpec

__all__ = ["Refusal", "launcher_entries", "verify_body"]


@dataclass(frozen=True, slots=True)
class Refusal(Exception):
    """The launcher will not act on this plan; ``code`` is stable, ``detail`` explains."""

    code: str
    detail: str

    def __str__(self) -> str:
        return f"{self.code}: {self.detail}"


def launcher_entries(body: LaunchBody) -> frozenset[str]:
    """Ids of the launcher-side entries in the lowering."""
    return frozenset(e.id for e in body.lowering if mech.BY_ID[e.id].launcher_side)


def verify_body(body: LaunchBody) -> None:
    """Raise :class:`Refusal` unless the body is internally consistent (see module doc)."""
    _verify_lowering(body)
    _verify_target(body)
    _verify_table(body)
    _verify_target_follows_params(body.target, _verified_params(body))


def _verify_lowering(body: LaunchBody) -> None:
    if not hmac.compare_digest(lowering_digest(body.lowering), body.h_l):
        raise Refusal("lowering-digest-mismatch", "h_l does not match the lowering entries")
    seen: set[str] = set()
    last_phase = -1
    for index, entry in enumerate(body.lowering):
        known = mech.BY_ID.get(entry.id)
        if known is None:
            raise Refusal(
                "lowering-unknown-entry", f"entry {index} {entry.id!r} is not in the catalogue"
            )
        if entry.version != known.version or entry.phase_code != int(known.phase):
            raise Refusal(
                "lowering-unknown-entry",
                f"entry {index} {entry.id} v{entry.version} phase {entry.phase_code}: the "
                f"catalogue has v{known.version} phase {int(known.phase)}",
            )
        if not hmac.compare_digest(entry.decl_digest, mech.decl_digest(known)):
            raise Refusal(
                "lowering-unknown-entry",
                f"entry {index} {entry.id}: decl_digest is not the catalogue's declaration",
            )
        if entry.id in seen:
            raise Refusal("lowering-inconsistent", f"entry {entry.id} appears twice")
        if entry.phase_code < last_phase:
            raise Refusal(
                "lowering-inconsistent", f"entry {entry.id} goes back to phase {entry.phase_code}"
            )
        seen.add(entry.id)
        last_phase = entry.phase_code
    for entry_id in seen:
        for needed in mech.BY_ID[entry_id].requires:
            if needed != mech.NO_NEW_PRIVS.id and needed not in seen:
                raise Refusal(
                    "lowering-inconsistent", f"{entry_id} requires {needed}, which is absent"
                )
    if mech.EXEC.id not in seen:
        raise Refusal(
            "lowering-inconsistent", f"{mech.EXEC.id} is absent: nothing would be executed"
        )


def _verify_target(body: LaunchBody) -> None:
    target = body.target
    landlock = target.landlock
    present = launcher_entries(body)
    pairs = (
        ("seccomp", target.seccomp is not None, mech.SECCOMP.id),
        ("landlock", landlock is not None and landlock.handle_filesystem, mech.LANDLOCK.id),
        (
            "landlock (scope only)",
            landlock is not None and not landlock.handle_filesystem,
            mech.LANDLOCK_SCOPE.id,
        ),
        ("user_namespace", target.user_namespace is not None, mech.USERNS.id),
        ("network_namespace", target.network_namespace is not None, mech.NETNS.id),
        ("cgroup", target.cgroup is not None, mech.CGROUP_LEAF.id),
        ("drop_capabilities", target.drop_capabilities, mech.CAPS_DROP.id),
    )
    for field_name, requested, entry_id in pairs:
        if requested and entry_id not in present:
            raise Refusal(
                "target-lowering-mismatch",
                f"target.{field_name} is set but {entry_id} is not scheduled",
            )
        if entry_id in present and not requested:
            raise Refusal(
                "target-lowering-mismatch",
                f"{entry_id} is scheduled but target.{field_name} is absent",
            )
    if not target.no_new_privs:
        raise Refusal("target-invalid", "target.no_new_privs is false; the launcher always sets it")
    if target.landlock is not None and target.landlock.abi_floor < mech.LANDLOCK_ABI_FLOOR:
        raise Refusal(
            "target-invalid",
            f"target.landlock.abi_floor {target.landlock.abi_floor} is below the floor "
            f"{mech.LANDLOCK_ABI_FLOOR}",
        )
    if (
        landlock is not None
        and not landlock.handle_filesystem
        and (landlock.rules or not landlock.scope)
    ):
        raise Refusal(
            "target-invalid",
            "a scope-only Landlock domain must name scopes and no filesystem rules",
        )
    if target.cgroup is not None and target.cgroup.v2_slot is None and not target.cgroup.v1_slots:
        raise Refusal("target-invalid", "target.cgroup names no leaf")


def _verified_params(body: LaunchBody) -> LoweredParams:
    """Each entry's parameters, re-hashed against its param_digest, then parsed strictly."""
    if len(body.params) != len(body.lowering):
        raise Refusal(
            "lowering-params-invalid",
            f"{len(body.params)} parameter sets for {len(body.lowering)} lowering entries",
        )
    for entry, params in zip(body.lowering, body.params, strict=True):
        if not hmac.compare_digest(param_digest(params), entry.param_digest):
            raise Refusal(
                "lowering-params-digest-mismatch",
                f"{entry.id}: the parameters do not hash to the entry's param_digest",
            )
    try:
        return parse_lowering_params(
            (entry.id, params) for entry, params in zip(body.lowering, body.params, strict=True)
        )
    except LoweringParamsError as exc:
        raise Refusal("lowering-params-invalid", str(exc)) from None


def _mismatch(what: str, target_says: object, params_say: object) -> Refusal:
    detail = f"{what}: the target says {target_says!r}, the plan {params_say!r}"
    return Refusal("target-params-mismatch", detail)


def _verify_target_follows_params(target: TargetSpec, lowered: LoweredParams) -> None:
    """The target must be exactly what the (digest-checked) parameters call for."""
    if target.argv != lowered.argv:
        raise _mismatch("argv", target.argv, lowered.argv)
    names = tuple(name for name, _ in target.envp)
    planned = tuple(source.name for source in lowered.env)
    if names != planned:
        raise _mismatch("environment names", names, planned)
    for (name, value), source in zip(target.envp, lowered.env, strict=True):
        if source.literal is not None and value != source.literal:
            raise _mismatch(f"environment {name}", "another value", "its literal")
    extra_fds = tuple(fd for fd in lowered.keep_fds if fd > 2)
    if target.keep_fds != extra_fds:
        raise _mismatch("kept fds", target.keep_fds, extra_fds)
    _verify_namespaces(target, lowered)
    _verify_seccomp(target, lowered)
    _verify_landlock(target, lowered)
    _verify_cgroup(target, lowered)


def _verify_namespaces(target: TargetSpec, lowered: LoweredParams) -> None:
    userns = target.user_namespace
    if lowered.userns is not None and userns is not None:
        uid, gid = lowered.userns
        maps = (userns.uid_map, userns.gid_map)
        if maps != (f"0 {uid} 1", f"0 {gid} 1"):
            raise _mismatch("uid/gid maps", maps, (f"0 {uid} 1", f"0 {gid} 1"))


def _verify_seccomp(target: TargetSpec, lowered: LoweredParams) -> None:
    if lowered.seccomp is not None and target.seccomp is not None:
        asked = (target.seccomp.deny_new_tasks, target.seccomp.deny_sockets)
        if asked != lowered.seccomp:
            raise _mismatch("seccomp (deny_new_tasks, deny_sockets)", asked, lowered.seccomp)


def _verify_landlock(target: TargetSpec, lowered: LoweredParams) -> None:
    domain = target.landlock
    if domain is None:
        return
    if lowered.landlock_scope_only is not None and domain.scope != lowered.landlock_scope_only:
        raise _mismatch("landlock scope", domain.scope, lowered.landlock_scope_only)
    params = lowered.landlock
    if params is None:
        return
    if domain.abi_floor != params.abi_floor:
        raise _mismatch("landlock abi_floor", domain.abi_floor, params.abi_floor)
    if domain.scope != params.scope:
        raise _mismatch("landlock scope", domain.scope, params.scope)
    accesses = [rule.access for rule in domain.rules]
    required = [access for _, access in params.rules]
    # The spec's roots come first and are never skipped; the system and device roots
    # after them may be (a host without /lib64), but never added to or widened.
    if accesses[: len(required)] != required:
        raise _mismatch("landlock root accesses", accesses[: len(required)], required)
    optional = iter(
        ["read"] * len(params.system_read_roots)
        + ["read_write"] * len(params.device_rw)
        + ["read"] * len(params.device_read)
    )
    if not all(access in optional for access in accesses[len(required) :]):
        raise _mismatch("landlock system roots", accesses[len(required) :], "at most the plan's")


def _verify_cgroup(target: TargetSpec, lowered: LoweredParams) -> None:
    if lowered.cgroup is None or target.cgroup is None:
        return
    has_v2 = target.cgroup.v2_slot is not None
    if has_v2 != (lowered.cgroup.v2_base is not None):
        raise _mismatch("cgroup v2 leaf", has_v2, lowered.cgroup.v2_base)
    if len(target.cgroup.v1_slots) != len(lowered.cgroup.v1_bases):
        raise _mismatch(
            "cgroup v1 leaves", len(target.cgroup.v1_slots), len(lowered.cgroup.v1_bases)
        )


def _verify_table(body: LaunchBody) -> None:
    target = body.target
    by_slot = {}
    for slot in body.descriptor_table:
        if slot.slot_index in by_slot:
            raise Refusal("descriptor-table-invalid", f"slot {slot.slot_index} is declared twice")
        if slot.slot_index < 3:
            raise Refusal("descriptor-table-invalid", f"slot {slot.slot_index} collides with stdio")
        by_slot[slot.slot_index] = slot

    def role_of(slot_index: int, where: str, role: DescriptorRole) -> None:
        slot = by_slot.get(slot_index)
        if slot is None:
            raise Refusal("descriptor-table-invalid", f"{where} names undeclared slot {slot_index}")
        if slot.role is not role:
            raise Refusal(
                "descriptor-table-invalid",
                f"{where} names slot {slot_index}, whose role is {slot.role.value}, "
                f"not {role.value}",
            )

    used: set[int] = set()
    role_of(target.exe_slot, "target.exe_slot", DescriptorRole.TARGET_EXE)
    exe = by_slot[target.exe_slot].expected
    if exe.kind is not DescriptorKind.REGULAR or exe.writable:
        raise Refusal("descriptor-table-invalid", "the exe slot must be a read-only regular file")
    used.add(target.exe_slot)
    if target.landlock is not None:
        for index, rule in enumerate(target.landlock.rules):
            if rule.slot in used:
                raise Refusal(
                    "descriptor-table-invalid", f"landlock rule {index} reuses slot {rule.slot}"
                )
            role_of(rule.slot, f"target.landlock.rules[{index}]", DescriptorRole.FS_ROOT)
            used.add(rule.slot)
    if target.cgroup is not None:
        if target.cgroup.v2_slot is not None:
            role_of(target.cgroup.v2_slot, "target.cgroup.v2_slot", DescriptorRole.CGROUP_V2_LEAF)
            used.add(target.cgroup.v2_slot)
        for index, slot_index in enumerate(target.cgroup.v1_slots):
            if slot_index in used:
                raise Refusal("descriptor-table-invalid", f"cgroup v1 slot {slot_index} repeats")
            role_of(slot_index, f"target.cgroup.v1_slots[{index}]", DescriptorRole.CGROUP_V1_LEAF)
            used.add(slot_index)
    for index, fd in enumerate(target.keep_fds):
        if fd in used:
            raise Refusal("descriptor-table-invalid", f"target.keep_fds[{index}] repeats slot {fd}")
        role_of(fd, f"target.keep_fds[{index}]", DescriptorRole.INHERITED)
        used.add(fd)
    unused = sorted(set(by_slot) - used)
    if unused:
        raise Refusal(
            "descriptor-table-invalid", f"declared slots {unused} are not used by the target"
        )
    for slot in body.descriptor_table:
        if (
            slot.role
            in (
                DescriptorRole.CGROUP_V2_LEAF,
                DescriptorRole.CGROUP_V1_LEAF,
                DescriptorRole.FS_ROOT,
            )
            and slot.expected.writable
        ):
            raise Refusal(
                "descriptor-table-invalid",
                f"slot {slot.slot_index} ({slot.role.value}) must not be a writable fd",
            )
        cgroup_roles = (DescriptorRole.CGROUP_V2_LEAF, DescriptorRole.CGROUP_V1_LEAF)
        if slot.role in cgroup_roles and slot.expected.kind is not DescriptorKind.DIRECTORY:
            raise Refusal(
                "descriptor-table-invalid",
                f"slot {slot.slot_index} (cgroup leaf) must be a directory",
            )
