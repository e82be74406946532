"""The backend profile snapshot: probed host facts plus the ceiling derived from them.

A plan is admitted against one snapshot, and h_p (``bvisor.profile.v1``) is the digest of
the snapshot's canonical value. Everything that shaped the ceiling — every probed fact,
including *how* each was established (``probe_notes``) — is inside the snapshot, so a
replayer holding only the recorded snapshot can re-derive the ceiling and re-run
admission without touching a host. The types are pure data; probing lives in
``bvisor.launcher.host.probe``.

Ceiling keys are text: a requirement kind (``filesystem``), a Kill policy
(``kill:atomic``, ``kill:best_effort_allowed`` — the two guarantees need different
mechanisms, so one cell each), a budget dimension (``budget:<dimension>``) or an evidence
claim (``evidence:<claim>``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from bvisor import canonical
from bvisor.contract._wire import (
    expect_array,
    expect_bool,
    expect_enum,
    expect_int,
    expect_map,
    expect_text,
)
from bvisor.contract.enforcement import Enforcement
from bvisor.contract.errors import ContractError
from bvisor.digest import Purpose, digest_value

__all__ = ["CeilingCell", "HostFacts", "ProfileSnapshot", "profile_digest"]

_FACT_KEYS = (
    "kernel_release",
    "arch",
    "landlock_abi",
    "seccomp_filter",
    "seccomp_actions",
    "userns",
    "netns",
    "max_user_namespaces",
    "cgroup",
    "host_uid",
    "host_gid",
    "launcher_path",
    "launcher_identity",
    "probe_notes",
)
_CGROUP_KEYS = ("v2_mount", "v2_base", "v2_kill", "v2_controllers", "v1_bases")


def _opt_text(value: object, path: str) -> str | None:
    return None if value is None else expect_text(value, path)


def _texts(value: object, path: str) -> tuple[str, ...]:
    return tuple(expect_text(v, f"{path}[{i}]") for i, v in enumerate(expect_array(value, path)))


@dataclass(frozen=True, slots=True)
class HostFacts:
    """Every host fact the Linux ceiling depends on, exactly as the probe found it.

    ``landlock_abi`` 0 means no Landlock. ``cgroup_v2_base`` / ``cgroup_v1_bases`` are the
    directories of *this process's own* cgroups where a probe leaf could be created —
    never an ancestor, so a run stays inside whoever started bvisor.
    ``cgroup_v2_controllers`` are the controllers a new leaf under the v2 base gets.
    ``cgroup_v1_bases`` pairs are sorted by controller and unique.
    """

    kernel_release: str
    arch: str
    landlock_abi: int
    seccomp_filter: bool
    seccomp_actions: tuple[str, ...]
    userns: bool
    netns: bool
    max_user_namespaces: int
    cgroup_v2_mount: str | None
    cgroup_v2_base: str | None
    cgroup_v2_kill: bool
    cgroup_v2_controllers: tuple[str, ...]
    cgroup_v1_bases: tuple[tuple[str, str], ...]
    host_uid: int
    host_gid: int
    launcher_path: str | None = None
    launcher_identity: str | None = None
    probe_notes: tuple[str, ...] = ()
    # Probed since planner rules v2 (None in profiles recorded before, and then left out
    # of the canonical form so those profiles keep their bytes and h_p): a child could
    # create a PID and a mount namespace (inside a user namespace unless bvisor runs as
    # root) and mount a fresh /proc there — what a private root needs.
    pidns: bool | None = None
    # Probed since denial evidence (None before, and then left out likewise): the kernel
    # audit log is enabled and bvisor may read it (its multicast group; CAP_AUDIT_READ) —
    # where Landlock reports its denials. bvisor never enables audit itself.
    audit_readable: bool | None = None
    # Probed since the network allow list (None before, and then left out of the canonical
    # form like ``pidns``): in a new network namespace a child could bring the loopback up
    # and listen on 127.0.0.1 — where the allow list's proxy listener lives.
    netns_loopback: bool | None = None
    # Probed since planner rules v4 (None before, and then left out of the canonical form
    # like ``pidns``): a child could make a UTS namespace (inside a user namespace unless
    # bvisor runs as root) and set its hostname there — what ``linux.utsns.v1`` does.
    utsns: bool | None = None

    def __post_init__(self) -> None:
        expect_text(self.kernel_release, "kernel_release")
        expect_text(self.arch, "arch")
        expect_int(self.landlock_abi, "landlock_abi", minimum=0)
        expect_bool(self.seccomp_filter, "seccomp_filter")
        for name in ("seccomp_actions", "cgroup_v2_controllers", "probe_notes"):
            if not isinstance(getattr(self, name), tuple):
                raise ContractError(name, "expected a tuple of strings")
            _texts(getattr(self, name), name)
        expect_bool(self.userns, "userns")
        expect_bool(self.netns, "netns")
        expect_int(self.max_user_namespaces, "max_user_namespaces", minimum=0)
        _opt_text(self.cgroup_v2_mount, "cgroup.v2_mount")
        _opt_text(self.cgroup_v2_base, "cgroup.v2_base")
        expect_bool(self.cgroup_v2_kill, "cgroup.v2_kill")
        if not isinstance(self.cgroup_v1_bases, tuple):
            raise ContractError("cgroup.v1_bases", "expected a tuple of (controller, base) pairs")
        for pair in self.cgroup_v1_bases:
            if not (isinstance(pair, tuple) and len(pair) == 2):
                raise ContractError("cgroup.v1_bases", f"{pair!r} is not a (controller, base) pair")
            expect_text(pair[0], "cgroup.v1_bases", nonempty=True)
            expect_text(pair[1], f"cgroup.v1_bases.{pair[0]}", nonempty=True)
        names = [c for c, _ in self.cgroup_v1_bases]
        if names != sorted(set(names)):
            raise ContractError("cgroup.v1_bases", "controllers must be unique and sorted")
        expect_int(self.host_uid, "host_uid", minimum=0)
        expect_int(self.host_gid, "host_gid", minimum=0)
        _opt_text(self.launcher_path, "launcher_path")
        _opt_text(self.launcher_identity, "launcher_identity")
        if self.pidns is not None:
            expect_bool(self.pidns, "pidns")
        if self.audit_readable is not None:
            expect_bool(self.audit_readable, "audit_readable")
        if self.netns_loopback is not None:
            expect_bool(self.netns_loopback, "netns_loopback")
        if self.utsns is not None:
            expect_bool(self.utsns, "utsns")

    def v1_base(self, controller: str) -> str | None:
        """The writable v1 base for ``controller``, or None."""
        return dict(self.cgroup_v1_bases).get(controller)

    def to_value(self) -> dict[str, canonical.Value]:
        value: dict[str, canonical.Value] = {
            "kernel_release": self.kernel_release,
            "arch": self.arch,
            "landlock_abi": self.landlock_abi,
            "seccomp_filter": self.seccomp_filter,
            "seccomp_actions": list(self.seccomp_actions),
            "userns": self.userns,
            "netns": self.netns,
            "max_user_namespaces": self.max_user_namespaces,
            "cgroup": {
                "v2_mount": self.cgroup_v2_mount,
                "v2_base": self.cgroup_v2_base,
                "v2_kill": self.cgroup_v2_kill,
                "v2_controllers": list(self.cgroup_v2_controllers),
                "v1_bases": dict(self.cgroup_v1_bases),
            },
            "host_uid": self.host_uid,
            "host_gid": self.host_gid,
            "launcher_path": self.launcher_path,
            "launcher_identity": self.launcher_identity,
            "probe_notes": list(self.probe_notes),
        }
        if self.pidns is not None:
            value["pidns"] = self.pidns
        if self.audit_readable is not None:
            value["audit_readable"] = self.audit_readable
        if self.netns_loopback is not None:
            value["netns_loopback"] = self.netns_loopback
        if self.utsns is not None:
            value["utsns"] = self.utsns
        return value

    @classmethod
    def from_value(cls, value: object, path: str = "facts") -> HostFacts:
        body = expect_map(
            value,
            path,
            required=_FACT_KEYS,
            optional=("pidns", "audit_readable", "netns_loopback", "utsns"),
        )
        cg = expect_map(body["cgroup"], f"{path}.cgroup", required=_CGROUP_KEYS)
        v1 = cg["v1_bases"]
        if not isinstance(v1, Mapping):
            raise ContractError(f"{path}.cgroup.v1_bases", "expected a table", "wrong-type")
        try:
            return cls(
                kernel_release=expect_text(body["kernel_release"], f"{path}.kernel_release"),
                arch=expect_text(body["arch"], f"{path}.arch"),
                landlock_abi=expect_int(body["landlock_abi"], f"{path}.landlock_abi", minimum=0),
                seccomp_filter=expect_bool(body["seccomp_filter"], f"{path}.seccomp_filter"),
                seccomp_actions=_texts(body["seccomp_actions"], f"{path}.seccomp_actions"),
                userns=expect_bool(body["userns"], f"{path}.userns"),
                netns=expect_bool(body["netns"], f"{path}.netns"),
                max_user_namespaces=expect_int(
                    body["max_user_namespaces"], f"{path}.max_user_namespaces", minimum=0
                ),
                cgroup_v2_mount=_opt_text(cg["v2_mount"], f"{path}.cgroup.v2_mount"),
                cgroup_v2_base=_opt_text(cg["v2_base"], f"{path}.cgroup.v2_base"),
                cgroup_v2_kill=expect_bool(cg["v2_kill"], f"{path}.cgroup.v2_kill"),
                cgroup_v2_controllers=_texts(cg["v2_controllers"], f"{path}.cgroup.v2_controllers"),
                cgroup_v1_bases=tuple(
                    (str(k), expect_text(v, f"{path}.cgroup.v1_bases.{k}"))
                    for k, v in sorted(v1.items())
                ),
                host_uid=expect_int(body["host_uid"], f"{path}.host_uid", minimum=0),
                host_gid=expect_int(body["host_gid"], f"{path}.host_gid", minimum=0),
                launcher_path=_opt_text(body["launcher_path"], f"{path}.launcher_path"),
                launcher_identity=_opt_text(body["launcher_identity"], f"{path}.launcher_identity"),
                probe_notes=_texts(body["probe_notes"], f"{path}.probe_notes"),
                pidns=None if "pidns" not in body else expect_bool(body["pidns"], f"{path}.pidns"),
                audit_readable=(
                    None
                    if "audit_readable" not in body
                    else expect_bool(body["audit_readable"], f"{path}.audit_readable")
                ),
                netns_loopback=(
                    None
                    if "netns_loopback" not in body
                    else expect_bool(body["netns_loopback"], f"{path}.netns_loopback")
                ),
                utsns=None if "utsns" not in body else expect_bool(body["utsns"], f"{path}.utsns"),
            )
        except ContractError as exc:
            if exc.path.startswith(path):
                raise
            raise exc.under(path) from None


@dataclass(frozen=True, slots=True)
class CeilingCell:
    """What this backend can reach for one key, by which mechanism, and why.

    ``evidence`` names the evidence claims through which the cell's enforcement is
    witnessed in a report (e.g. a seccomp cell is attested by ``mechanism_attestation``).
    """

    key: str
    enforcement: Enforcement
    mechanism: str
    reason: str
    evidence: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        expect_text(self.key, "key", nonempty=True)
        if not isinstance(self.enforcement, Enforcement):
            raise ContractError(f"ceiling.{self.key}.enforcement", "expected an Enforcement")
        expect_text(self.mechanism, f"ceiling.{self.key}.mechanism", nonempty=True)
        expect_text(self.reason, f"ceiling.{self.key}.reason")
        if not isinstance(self.evidence, tuple):
            raise ContractError(f"ceiling.{self.key}.evidence", "expected a tuple of claims")
        _texts(self.evidence, f"ceiling.{self.key}.evidence")

    def to_value(self) -> dict[str, canonical.Value]:
        return {
            "key": self.key,
            "enforcement": self.enforcement.value,
            "mechanism": self.mechanism,
            "reason": self.reason,
            "evidence": list(self.evidence),
        }

    @classmethod
    def from_value(cls, value: object, path: str = "cell") -> CeilingCell:
        body = expect_map(
            value, path, required=("key", "enforcement", "mechanism", "reason", "evidence")
        )
        return cls(
            key=expect_text(body["key"], f"{path}.key", nonempty=True),
            enforcement=expect_enum(Enforcement, body["enforcement"], f"{path}.enforcement"),
            mechanism=expect_text(body["mechanism"], f"{path}.mechanism", nonempty=True),
            reason=expect_text(body["reason"], f"{path}.reason"),
            evidence=_texts(body["evidence"], f"{path}.evidence"),
        )


@dataclass(frozen=True, slots=True)
class ProfileSnapshot:
    """One probe's result for one backend: the facts and the ceiling derived from them.

    Cells are unique by key; their order is the order the backend derived them in (kept,
    so the digest is over exactly what was recorded).
    """

    backend: str
    facts: HostFacts
    ceiling: tuple[CeilingCell, ...]

    def __post_init__(self) -> None:
        expect_text(self.backend, "backend", nonempty=True)
        if not isinstance(self.facts, HostFacts):
            raise ContractError("facts", "expected HostFacts")
        if not isinstance(self.ceiling, tuple) or not all(
            isinstance(c, CeilingCell) for c in self.ceiling
        ):
            raise ContractError("ceiling", "expected a tuple of CeilingCell")
        keys = [c.key for c in self.ceiling]
        if len(keys) != len(set(keys)):
            dup = next(k for k in keys if keys.count(k) > 1)
            raise ContractError(f"ceiling.{dup}", "duplicate ceiling key")

    def cell(self, key: str) -> CeilingCell | None:
        """The cell for ``key``, or None when the profile does not cover it."""
        for c in self.ceiling:
            if c.key == key:
                return c
        return None

    def cells(self) -> Mapping[str, CeilingCell]:
        return {c.key: c for c in self.ceiling}

    def to_value(self) -> dict[str, canonical.Value]:
        return {
            "backend": self.backend,
            "facts": self.facts.to_value(),
            "ceiling": [c.to_value() for c in self.ceiling],
        }

    @classmethod
    def from_value(cls, value: object, path: str = "profile") -> ProfileSnapshot:
        body = expect_map(value, path, required=("backend", "facts", "ceiling"))
        cells = expect_array(body["ceiling"], f"{path}.ceiling")
        return cls(
            backend=expect_text(body["backend"], f"{path}.backend", nonempty=True),
            facts=HostFacts.from_value(body["facts"], f"{path}.facts"),
            ceiling=tuple(
                CeilingCell.from_value(c, f"{path}.ceiling[{i}]") for i, c in enumerate(cells)
            ),
        )

    def digest(self) -> bytes:
        """h_p."""
        return profile_digest(self)


def profile_digest(snapshot: ProfileSnapshot) -> bytes:
    """h_p: the ``bvisor.profile.v1`` digest of the snapshot's canonical value."""
    return digest_value(Purpose.PROFILE, snapshot.to_value())
