"""Pure checks of a decoded launch body: the schedule, its parameters, and the fds.

The launcher refuses rather than guesses. A body passes only if:

* h_l recomputed from the lowering entries equals the body's h_l;
* every entry is in the mechanism catalogue with the catalogue's version, phase and
  declaration digest; no entry repeats; phases never go backwards; each entry's
  prerequisites are present (``linux.nonewprivs.v1`` excepted: always applied);
  ``linux.exec.v1`` is present; the seccomp filter, when scheduled, is the last policy
  entry (nothing may be installed after it);
* each entry's parameters hash to its ``param_digest`` and decode with the parameter class
  the catalogue declares (strict: exactly its keys and types);
* the descriptor table is exactly what those parameters call for: unique slots above
  stdio; one TARGET_EXE slot, a read-only regular file; an FS_ROOT slot (not writable)
  for every required bind source, and only for paths a bind or a Landlock rule names; the
  cgroup leaf slots of the cgroup entry and no other; INHERITED slots exactly the kept
  fds above stdio; one ARTIFACT_STAGING slot, a read-only directory fd, exactly when the
  outputs entry commits;
  one NetProxy slot (a socket) exactly when ``linux.netproxy.v1`` is
  scheduled;
* the secrets are exactly the leases the environment names.

What the launcher cannot see for itself — which file an fd is, a lease's value — the host
bound when it opened the path or resolved the lease. Each failure is a :class:`Refusal`
with a stable kebab-case code. No OS calls here.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass

from bvisor.contract import mechanisms as mech
from bvisor.contract.lowering import Phase, lowering_digest, param_digest
from bvisor.launcher.wire.lowered import LoweringParamsError, typed_params
from bvisor.launcher.wire.protocol import DescriptorKind, DescriptorRole, DescriptorSlot, LaunchBody

__all__ = ["Refusal", "Verified", "verify_body"]


@dataclass(frozen=True, slots=True)
class Refusal(Exception):
    """The launcher will not act on this plan; ``code`` is stable, ``detail`` explains."""

    code: str
    detail: str

    def __str__(self) -> str:
        return f"{self.code}: {self.detail}"


@dataclass(frozen=True, slots=True)
class Verified:
    """A body that passed every check, with its typed parameters and its slots by use."""

    body: LaunchBody
    params: Mapping[str, mech.Params]
    exe_slot: int
    roots: Mapping[str, DescriptorSlot]  # host path -> FS_ROOT slot
    cgroup_v2_slot: int | None
    cgroup_v1_slots: Mapping[str, int]  # controller -> slot
    inherited: tuple[int, ...]
    staging_slot: int | None = None  # the host's artifact staging directory
    netproxy_slot: int | None = None  # the host's channel for the allow list's listener

    def entries(self) -> list[tuple[str, Phase, mech.Params]]:
        """``(id, phase, typed params)`` in schedule order."""
        return [
            (entry.id, Phase(entry.phase_code), self.params[entry.id])
            for entry in self.body.lowering
        ]


def verify_body(body: LaunchBody) -> Verified:
    """Raise :class:`Refusal` unless the body is consistent (see the module docstring)."""
    _verify_lowering(body)
    params = _verified_params(body)
    return _verify_table(body, params)


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
    policy = [e.id for e in body.lowering if e.phase_code == int(Phase.POLICY_INSTALL)]
    if mech.SECCOMP.id in policy and policy[-1] != mech.SECCOMP.id:
        raise Refusal(
            "lowering-inconsistent",
            f"{policy[-1]} comes after {mech.SECCOMP.id}: the filter must be installed last",
        )


def _verified_params(body: LaunchBody) -> dict[str, mech.Params]:
    """Each entry's parameters, re-hashed against its param_digest, then decoded strictly."""
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
        return typed_params(
            (entry.id, params) for entry, params in zip(body.lowering, body.params, strict=True)
        )
    except LoweringParamsError as exc:
        raise Refusal("lowering-params-invalid", str(exc)) from None


def _invalid(detail: str) -> Refusal:
    return Refusal("descriptor-table-invalid", detail)


def _verify_table(body: LaunchBody, params: Mapping[str, mech.Params]) -> Verified:
    by_role: dict[DescriptorRole, list[DescriptorSlot]] = {role: [] for role in DescriptorRole}
    numbers: set[int] = set()
    for slot in body.descriptor_table:
        if slot.slot_index in numbers:
            raise _invalid(f"slot {slot.slot_index} is declared twice")
        if slot.slot_index < 3:
            raise _invalid(f"slot {slot.slot_index} collides with stdio")
        numbers.add(slot.slot_index)
        by_role[slot.role].append(slot)
    exe = by_role[DescriptorRole.TARGET_EXE]
    if len(exe) != 1:
        raise _invalid(f"{len(exe)} TargetExe slots; exactly one is needed")
    if exe[0].expected.kind is not DescriptorKind.REGULAR or exe[0].expected.writable:
        raise _invalid("the exe slot must be a read-only regular file")
    roots = _verify_roots(by_role[DescriptorRole.FS_ROOT], params)
    v2, v1 = _verify_cgroup(by_role, params)
    ambient = params.get(mech.AMBIENT_SCRUB.id)
    kept = () if not isinstance(ambient, mech.AmbientScrub) else ambient.keep_fds
    wanted = sorted(fd for fd in kept if fd > 2)
    inherited = sorted(slot.slot_index for slot in by_role[DescriptorRole.INHERITED])
    if inherited != wanted:
        raise _invalid(f"inherited slots {inherited} are not the kept fds {wanted}")
    _verify_secrets(body, ambient)
    staging = _verify_staging(by_role[DescriptorRole.ARTIFACT_STAGING], params)
    proxy = _verify_netproxy(by_role[DescriptorRole.NET_PROXY], params)
    return Verified(
        body, dict(params), exe[0].slot_index, roots, v2, v1, tuple(inherited), staging, proxy
    )


def _verify_staging(slots: list[DescriptorSlot], params: Mapping[str, mech.Params]) -> int | None:
    outputs = params.get(mech.OUTPUTS.id)
    commits = isinstance(outputs, mech.Outputs) and outputs.commit is not None
    if len(slots) != int(commits):
        raise _invalid(
            f"{len(slots)} ArtifactStaging slots; the plan "
            + ("commits its outputs (one is needed)" if commits else "commits nothing")
        )
    if not slots:
        return None
    if slots[0].expected.kind is not DescriptorKind.DIRECTORY or slots[0].expected.writable:
        raise _invalid("the artifact staging slot must be a read-only directory fd")
    return slots[0].slot_index


def _verify_netproxy(slots: list[DescriptorSlot], params: Mapping[str, mech.Params]) -> int | None:
    wanted = mech.NETPROXY.id in params
    if len(slots) != int(wanted):
        raise _invalid(
            f"{len(slots)} NetProxy slots, but the plan "
            + ("schedules" if wanted else "does not schedule")
            + f" {mech.NETPROXY.id}"
        )
    if not slots:
        return None
    if slots[0].expected.kind is not DescriptorKind.SOCKET or not slots[0].expected.writable:
        raise _invalid(f"slot {slots[0].slot_index} (NetProxy) must be a read-write socket")
    return slots[0].slot_index


def _verify_roots(
    slots: list[DescriptorSlot], params: Mapping[str, mech.Params]
) -> dict[str, DescriptorSlot]:
    rootfs = params.get(mech.ROOTFS.id)
    landlock = params.get(mech.LANDLOCK.id)
    binds = rootfs.binds() if isinstance(rootfs, mech.Rootfs) else ()
    rules = landlock.rules if isinstance(landlock, mech.LandlockApply) else ()
    named = {bind.source for bind in binds} | {rule.path for rule in rules}
    roots: dict[str, DescriptorSlot] = {}
    for slot in slots:
        assert slot.path is not None
        if slot.path in roots:
            raise _invalid(f"two FsRoot slots stand for {slot.path}")
        if slot.path not in named:
            raise _invalid(
                f"slot {slot.slot_index} stands for {slot.path}, which no mount or rule names"
            )
        if slot.expected.writable:
            raise _invalid(f"slot {slot.slot_index} (FsRoot) must not be a writable fd")
        roots[slot.path] = slot
    optional = {bind.source for bind in binds if not bind.required}
    for path in sorted(named - set(roots)):
        if path not in optional:
            raise _invalid(f"no FsRoot slot for {path}, which the plan requires")
    return roots


def _verify_cgroup(
    by_role: Mapping[DescriptorRole, list[DescriptorSlot]], params: Mapping[str, mech.Params]
) -> tuple[int | None, dict[str, int]]:
    leaf = params.get(mech.CGROUP_LEAF.id)
    v2_slots = by_role[DescriptorRole.CGROUP_V2_LEAF]
    v1_slots = by_role[DescriptorRole.CGROUP_V1_LEAF]
    for slot in (*v2_slots, *v1_slots):
        if slot.expected.kind is not DescriptorKind.DIRECTORY or slot.expected.writable:
            raise _invalid(f"slot {slot.slot_index} (cgroup leaf) must be a read-only directory fd")
    if not isinstance(leaf, mech.CgroupLeaf):
        if v2_slots or v1_slots:
            raise _invalid("cgroup leaf slots without a scheduled cgroup leaf")
        return None, {}
    if len(v2_slots) != (leaf.v2_base is not None):
        raise _invalid(f"{len(v2_slots)} v2 leaf slots for v2 base {leaf.v2_base!r}")
    v1 = {slot.path or "": slot.slot_index for slot in v1_slots}
    if sorted(v1) != sorted(name for name, _ in leaf.v1_bases) or len(v1) != len(v1_slots):
        raise _invalid(f"v1 leaf slots {sorted(v1)} are not the plan's controllers")
    if not v2_slots and not v1_slots:
        raise _invalid("the cgroup leaf has no slot")
    return (v2_slots[0].slot_index if v2_slots else None), v1


def _verify_secrets(body: LaunchBody, ambient: mech.Params | None) -> None:
    env = ambient.env if isinstance(ambient, mech.AmbientScrub) else ()
    leases = sorted({source.lease for source in env if source.lease is not None})
    given = [ref for ref, _ in body.secrets]
    if given != leases:
        raise Refusal(
            "secrets-mismatch", f"the body carries secrets {given}, the environment names {leases}"
        )
