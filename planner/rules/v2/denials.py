"""Denial evidence under rules v2: which denials the kernel reports to bvisor, and which not.

``evidence:denied_attempts`` is producible where the kernel can hand bvisor the denials
of the boundary's seccomp filter: a filter whose denials return SECCOMP_RET_USER_NOTIF
to a listener the launcher holds (``user_notif`` among the seccomp actions; it works for
a normal user). The launcher answers each with the errno its rule means and records it;
the report lists them (:mod:`bvisor.contract.denials`). The cell's reason says, for
people and in the admission record, what is seen and what is not.

``evidence:denied_attempts:filesystem`` is the cell a spec with a filesystem capability
needs as well: without it the report could list no refusal of file access, and a claim
that silently omits the capability the spec is mostly about is worse than a refusal. It
is Unsupported on every host under these rules:

* outside its grants the private root has nothing to open (ENOENT) and a read-only grant
  is a read-only mount (EROFS, checked before any LSM hook): neither is a denial any
  kernel mechanism reports;
* what Landlock refuses behind them reaches anyone only as kernel audit records
  (Landlock ABI >= 7, with audit enabled and readable: fact ``audit_readable``), and
  bvisor never enables audit; the reason names that fact where it is missing.

So a spec asking for denied attempts is admitted without a filesystem capability and
refused (``evidence-unsatisfiable``) with one.
"""

from __future__ import annotations

from bvisor.contract.admission import AdmissionRecord
from bvisor.contract.enforcement import Enforcement
from bvisor.contract.evidence import EvidenceClaim
from bvisor.contract.profile import CeilingCell, HostFacts, ProfileSnapshot
from bvisor.contract.requirements import RequirementKind
from bvisor.planner.errors import PlanRefusal
from bvisor.planner.rules.v1 import ceiling as v1
from bvisor.planner.rules.v1.ceiling import evidence_key, missing_fact_of, require_cell

__all__ = [
    "DENIED_KEY",
    "FILESYSTEM_DENIED_KEY",
    "LANDLOCK_AUDIT_ABI",
    "check_denial_evidence",
    "denial_cells",
    "notify_missing",
]

DENIED_KEY = evidence_key(EvidenceClaim.DENIED_ATTEMPTS)
FILESYSTEM_DENIED_KEY = f"{DENIED_KEY}:filesystem"
LANDLOCK_AUDIT_ABI = 7

_REASON = (
    "seen: every call a rule of the boundary's seccomp filter refuses with EPERM (sockets, "
    "connect and addressed sendto without a network; fork, vfork and fork-like clones "
    "without new tasks; namespaces, mounts, keyrings, io_uring, other processes' limits "
    "and scheduling, setuid/setgid modes, file leases; a seccomp filter of the workload's "
    "own) — handed to the launcher by the kernel (user notification), answered EPERM, "
    "reported with syscall, number, arch, first argument registers and pids, counted per "
    "syscall (64 kinds and 8 pids each itemised, the rest counted); a workload killed by "
    "SIGSYS (a kill rule, a foreign-ABI call) is reported as a kill. Not seen: which call "
    "a kill rule stopped; the ENOSYS answers of clone3 and openat2 (they deny nothing: "
    "libc then uses the older call, which the filter judges); refusals by Landlock (files, "
    "signals, abstract sockets), which only the kernel audit log reports and bvisor does "
    "not read; paths absent from the private root (ENOENT), read-only mounts (EROFS), "
    "dropped capabilities and cgroup limits, which no rule reports"
)


def notify_missing(facts: HostFacts) -> str | None:
    """The fact seccomp user notifications lack here, or None."""
    if not facts.seccomp_filter:
        return "seccomp_filter"
    if "user_notif" not in facts.seccomp_actions or "errno" not in facts.seccomp_actions:
        return "seccomp_actions"
    return None


def _audit_missing(facts: HostFacts) -> str | None:
    if facts.landlock_abi < LANDLOCK_AUDIT_ABI:
        return "landlock_abi"
    if facts.audit_readable is not True:
        return "audit_readable"
    return None


def denial_cells(facts: HostFacts) -> tuple[CeilingCell, CeilingCell]:
    """The ``evidence:denied_attempts`` cell and its filesystem companion."""
    missing = notify_missing(facts)
    if missing is None:
        main = v1._cell(
            DENIED_KEY,
            Enforcement.ENFORCED,
            "seccomp_user_notif",
            _REASON,
            (EvidenceClaim.DENIED_ATTEMPTS.value,),
        )
    else:
        main = v1._absent(
            DENIED_KEY,
            "seccomp_user_notif",
            missing,
            "denied attempts are reported through the seccomp filter's user notifications",
        )
    return main, _filesystem_cell(facts)


def _filesystem_cell(facts: HostFacts) -> CeilingCell:
    why = (
        "a filesystem boundary's refusals are not reported: outside the grants the private "
        "root has nothing to open (ENOENT) and read-only grants are read-only mounts (EROFS), "
        "which no kernel mechanism reports, and Landlock's refusals behind them reach "
        "bvisor only as kernel audit records (Landlock ABI >= 7, audit enabled and readable), "
        "which bvisor does not read and never enables"
    )
    missing = _audit_missing(facts)
    if missing is not None:
        return v1._absent(FILESYSTEM_DENIED_KEY, "landlock_audit", missing, why)
    return v1._cell(FILESYSTEM_DENIED_KEY, Enforcement.UNSUPPORTED, "landlock_audit", why)


def check_denial_evidence(snapshot: ProfileSnapshot, record: AdmissionRecord) -> None:
    """A spec asking for denied attempts with a filesystem capability needs its cell too."""
    if EvidenceClaim.DENIED_ATTEMPTS.value not in {e.claim for e in record.evidence}:
        return
    if RequirementKind.FILESYSTEM.value not in {d.key for d in record.requirements}:
        return
    cell = require_cell(snapshot, FILESYSTEM_DENIED_KEY, DENIED_KEY)
    if cell.enforcement is Enforcement.UNSUPPORTED:
        raise PlanRefusal(
            "evidence-unsatisfiable",
            f"the report cannot carry denied_attempts for a spec with a filesystem "
            f"capability: {cell.reason}",
            requirement=FILESYSTEM_DENIED_KEY,
            missing_fact=missing_fact_of(cell),
        )
