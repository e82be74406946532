"""The bvisor contract: pure, frozen value types with canonical forms (no I/O).

Everything a planner, launcher, runner or replayer exchanges is defined here: the spec
(workload, capabilities, host controls, budgets, evidence), requirement keys, the
enforcement lattice, outcomes and the sealed report. Every value type is a frozen
dataclass with ``to_value()`` (its canonical value, see ``bvisor.canonical``) and a strict
``from_value(value, path)`` that raises :class:`ContractError` naming the bad field.
This package imports only the standard library, ``bvisor.canonical`` and
``bvisor.digest``.
"""

from bvisor.contract.budgets import Budget, BudgetDimension, BudgetRequirements
from bvisor.contract.capabilities import (
    CAPABILITY_FAMILIES,
    Capability,
    ChildSpawn,
    Environment,
    FdPolicy,
    FdsNone,
    FdsOnly,
    Filesystem,
    FsAccess,
    InheritedFds,
    Network,
    NetworkAllowList,
    NetworkDenyAll,
    NetworkPolicy,
    SpawnPolicy,
    capability_family,
    capability_from_value,
)
from bvisor.contract.controls import (
    CONTROL_KINDS,
    CaptureStreams,
    CommitArtifact,
    DiscardArtifact,
    Durability,
    ExposePath,
    HostControl,
    Kill,
    KillGuarantee,
    KillTarget,
    LaunchWorkload,
    ListOutputs,
    StdStreams,
    TempRoot,
    control_from_value,
    control_kind,
)
from bvisor.contract.enforcement import Enforcement, MinGuarantee, meet
from bvisor.contract.environment import (
    ENV_MAX_BYTES,
    ENV_MAX_ENTRIES,
    EnvEntry,
    EnvLiteral,
    EnvPolicy,
    EnvValue,
    SecretLease,
)
from bvisor.contract.errors import ContractError
from bvisor.contract.evidence import EvidenceClaim, EvidenceRequirements
from bvisor.contract.outcome import Outcome
from bvisor.contract.report import (
    REPORT_SCHEMA_VERSION,
    AdmittedRequirement,
    BoundaryReportBody,
    BudgetWitness,
    ExitStatus,
    ObservedFact,
    SealedReport,
    StreamRecord,
    seal_report,
    stream_digest,
)
from bvisor.contract.requirements import (
    Requirement,
    RequirementKind,
    requirement_of_capability,
    requirement_of_control,
    requirements_of,
)
from bvisor.contract.spec import BoundarySpec
from bvisor.contract.workload import (
    ProcessWorkload,
    WasmWorkload,
    Workload,
    workload_from_value,
)

__all__ = [
    "CAPABILITY_FAMILIES",
    "CONTROL_KINDS",
    "ENV_MAX_BYTES",
    "ENV_MAX_ENTRIES",
    "REPORT_SCHEMA_VERSION",
    "AdmittedRequirement",
    "BoundaryReportBody",
    "BoundarySpec",
    "Budget",
    "BudgetDimension",
    "BudgetRequirements",
    "BudgetWitness",
    "Capability",
    "CaptureStreams",
    "ChildSpawn",
    "CommitArtifact",
    "ContractError",
    "DiscardArtifact",
    "Durability",
    "Enforcement",
    "EnvEntry",
    "EnvLiteral",
    "EnvPolicy",
    "EnvValue",
    "Environment",
    "EvidenceClaim",
    "EvidenceRequirements",
    "ExitStatus",
    "ExposePath",
    "FdPolicy",
    "FdsNone",
    "FdsOnly",
    "Filesystem",
    "FsAccess",
    "HostControl",
    "InheritedFds",
    "Kill",
    "KillGuarantee",
    "KillTarget",
    "LaunchWorkload",
    "ListOutputs",
    "MinGuarantee",
    "Network",
    "NetworkAllowList",
    "NetworkDenyAll",
    "NetworkPolicy",
    "ObservedFact",
    "Outcome",
    "ProcessWorkload",
    "Requirement",
    "RequirementKind",
    "SealedReport",
    "SecretLease",
    "SpawnPolicy",
    "StdStreams",
    "StreamRecord",
    "TempRoot",
    "WasmWorkload",
    "Workload",
    "capability_family",
    "capability_from_value",
    "control_from_value",
    "control_kind",
    "meet",
    "requirement_of_capability",
    "requirement_of_control",
    "requirements_of",
    "seal_report",
    "stream_digest",
    "workload_from_value",
]
