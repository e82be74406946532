"""The bvisor contract: pure, frozen value types with canonical forms (no I/O).

Everything a planner, launcher, runner or replayer exchanges is defined here: the spec
(workload, capabilities, host controls, budgets, evidence), requirement keys, the
enforcement lattice, outcomes and the sealed report. Every value type is a frozen
dataclass with ``to_value()`` (its canonical value, see ``bvisor.canonical``) and a strict
``from_value(value, path)`` that raises :class:`ContractError` naming the bad field.
This package imports only the standard library, ``bvisor.canonical`` and
``bvisor.digest``.

Names are re-exported lazily (PEP 562): importing one contract module — as the launcher
does for the state machine on every launch — must not pay for importing all of them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_LAZY: dict[str, str] = {
    "AdmittedRequirement": "bvisor.contract.report",
    "BoundaryReportBody": "bvisor.contract.report",
    "BoundarySpec": "bvisor.contract.spec",
    "Budget": "bvisor.contract.budgets",
    "BudgetDimension": "bvisor.contract.budgets",
    "BudgetRequirements": "bvisor.contract.budgets",
    "BudgetWitness": "bvisor.contract.report",
    "CAPABILITY_FAMILIES": "bvisor.contract.capabilities",
    "CONTROL_KINDS": "bvisor.contract.controls",
    "Capability": "bvisor.contract.capabilities",
    "CaptureStreams": "bvisor.contract.controls",
    "ChildSpawn": "bvisor.contract.capabilities",
    "CommitArtifact": "bvisor.contract.controls",
    "ContractError": "bvisor.contract.errors",
    "DiscardArtifact": "bvisor.contract.controls",
    "Durability": "bvisor.contract.controls",
    "ENV_MAX_BYTES": "bvisor.contract.environment",
    "ENV_MAX_ENTRIES": "bvisor.contract.environment",
    "Enforcement": "bvisor.contract.enforcement",
    "EnvEntry": "bvisor.contract.environment",
    "EnvLiteral": "bvisor.contract.environment",
    "EnvPolicy": "bvisor.contract.environment",
    "EnvValue": "bvisor.contract.environment",
    "Environment": "bvisor.contract.capabilities",
    "EvidenceClaim": "bvisor.contract.evidence",
    "EvidenceRequirements": "bvisor.contract.evidence",
    "ExitStatus": "bvisor.contract.report",
    "ExposePath": "bvisor.contract.controls",
    "FdPolicy": "bvisor.contract.capabilities",
    "FdsNone": "bvisor.contract.capabilities",
    "FdsOnly": "bvisor.contract.capabilities",
    "Filesystem": "bvisor.contract.capabilities",
    "FsAccess": "bvisor.contract.capabilities",
    "HostControl": "bvisor.contract.controls",
    "InheritedFds": "bvisor.contract.capabilities",
    "Kill": "bvisor.contract.controls",
    "KillGuarantee": "bvisor.contract.controls",
    "KillTarget": "bvisor.contract.controls",
    "LaunchWorkload": "bvisor.contract.controls",
    "ListOutputs": "bvisor.contract.controls",
    "MinGuarantee": "bvisor.contract.enforcement",
    "Network": "bvisor.contract.capabilities",
    "NetworkAllowList": "bvisor.contract.capabilities",
    "NetworkDenyAll": "bvisor.contract.capabilities",
    "NetworkPolicy": "bvisor.contract.capabilities",
    "ObservedFact": "bvisor.contract.report",
    "Outcome": "bvisor.contract.outcome",
    "ProcessWorkload": "bvisor.contract.workload",
    "REPORT_SCHEMA_VERSION": "bvisor.contract.report",
    "Requirement": "bvisor.contract.requirements",
    "RequirementKind": "bvisor.contract.requirements",
    "SealedReport": "bvisor.contract.report",
    "SecretLease": "bvisor.contract.environment",
    "SpawnPolicy": "bvisor.contract.capabilities",
    "StdStreams": "bvisor.contract.controls",
    "StreamRecord": "bvisor.contract.report",
    "TempRoot": "bvisor.contract.controls",
    "WasmWorkload": "bvisor.contract.workload",
    "Workload": "bvisor.contract.workload",
    "capability_family": "bvisor.contract.capabilities",
    "capability_from_value": "bvisor.contract.capabilities",
    "control_from_value": "bvisor.contract.controls",
    "control_kind": "bvisor.contract.controls",
    "meet": "bvisor.contract.enforcement",
    "requirement_of_capability": "bvisor.contract.requirements",
    "requirement_of_control": "bvisor.contract.requirements",
    "requirements_of": "bvisor.contract.requirements",
    "seal_report": "bvisor.contract.report",
    "stream_digest": "bvisor.contract.report",
    "workload_from_value": "bvisor.contract.workload",
}

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


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'bvisor.contract' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
