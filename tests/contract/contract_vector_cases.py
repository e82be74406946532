"""One or more instances of every contract type, for the golden encoding vectors.

Shared by ``test_contract_vectors.py`` (which recomputes the encodings and compares them
with the checked-in hex) and ``tests/vectors/contract/generate.py`` (run once, by hand,
when an encoding is changed *on purpose*). Each case maps a stable name to
``(value, decoder)``: the decoder turns the canonical value back into the object, so the
test also proves every encoding decodes to what produced it.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum

from bvisor.contract import (
    AdmittedRequirement,
    BoundaryReportBody,
    BoundarySpec,
    Budget,
    BudgetDimension,
    BudgetRequirements,
    BudgetWitness,
    CaptureStreams,
    ChildSpawn,
    CommitArtifact,
    DiscardArtifact,
    Durability,
    Enforcement,
    EnvEntry,
    Environment,
    EnvLiteral,
    EnvPolicy,
    EvidenceClaim,
    EvidenceRequirements,
    ExitStatus,
    ExposePath,
    FdsNone,
    FdsOnly,
    Filesystem,
    FsAccess,
    InheritedFds,
    Kill,
    KillGuarantee,
    KillTarget,
    LaunchWorkload,
    ListOutputs,
    MinGuarantee,
    Network,
    NetworkAllowList,
    NetworkDenyAll,
    ObservedFact,
    Outcome,
    ProcessWorkload,
    Requirement,
    RequirementKind,
    SealedReport,
    SecretLease,
    SpawnPolicy,
    StdStreams,
    StreamRecord,
    TempRoot,
    WasmWorkload,
    capability_from_value,
    control_from_value,
    requirements_of,
    seal_report,
    workload_from_value,
)
from bvisor.contract._wire import expect_enum
from bvisor.contract.denials import DeniedAttempt
from bvisor.contract.environment import env_value_from_value

Decoder = Callable[[object], object]
Case = tuple[object, Decoder]


def _enum(cls: type[Enum]) -> Decoder:
    return lambda value: expect_enum(cls, value, "x")


SPEC = BoundarySpec(
    workload=ProcessWorkload("/bin/sh", ("-c", "echo hi")),
    capabilities=(
        InheritedFds(FdsNone()),
        Environment(EnvPolicy.of({"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}, {"API": "tok"})),
        Network(NetworkDenyAll()),
        Filesystem(FsAccess.READ, ("/srv/data", "/opt/tool")),
        Filesystem(FsAccess.READ_WRITE, ("/tmp/out",)),
        ChildSpawn(SpawnPolicy.DENY_NEW_TASKS),
    ),
    controls=(
        Kill(KillTarget.RUN_TREE, KillGuarantee.ATOMIC),
        CaptureStreams(StdStreams.capture_out_err()),
        LaunchWorkload(),
    ),
    budgets=BudgetRequirements(
        wall_micros=Budget(10_000_000, MinGuarantee.ENFORCED),
        process_count=Budget(16, MinGuarantee.ENFORCED, evidence=False),
    ),
    evidence=EvidenceRequirements.of(
        [EvidenceClaim.TERMINAL_OUTCOME, EvidenceClaim.CAPTURED_STREAMS]
    ),
)

REPORT_BODY = BoundaryReportBody(
    schema_version=1,
    plan_id=bytes(range(32)),
    attempt_id=bytes([9]) * 32,
    h_a=bytes([2]) * 32,
    h_p=bytes([3]) * 32,
    h_l=bytes([4]) * 32,
    backend="linux",
    profile="linux-x86_64",
    outcome=Outcome.COMPLETED,
    admitted=(
        AdmittedRequirement(
            RequirementKind.CHILD_SPAWN_DENY_NEW_TASKS,
            Enforcement.ENFORCED,
            "linux:seccomp_deny_tasks:Enforced",
        ),
    ),
    observed=(ObservedFact("child_spawn_lowered", "seccomp"),),
    denied_attempts=(
        DeniedAttempt(
            mechanism="seccomp",
            syscall="clone",
            number=56,
            arch="x86_64",
            access=None,
            target=None,
            answer="EPERM",
            count=3,
            pids=(41, 42),
            pids_complete=True,
            args=(0x1200011, 0, 0, 0, 0x7F00, 0),
            tallied=True,
        ),
    ),
    exit=ExitStatus(0, None),
    streams=(StreamRecord.of("stdout", b"hi\n"), StreamRecord.of("stderr", b"abc", 10)),
    budget_witnesses=(
        BudgetWitness(BudgetDimension.WALL_MICROS, 10_000_000, "enforced", 1234, False, "clock"),
        BudgetWitness(BudgetDimension.CPU_MICROS, None, "mediated", None, False, "cgroup"),
    ),
    artifacts=("out.txt",),
    findings=(),
)


def _network_policy(value: object) -> object:
    return Network.from_value({"network": {"policy": value}}).policy


def _fd_policy(value: object) -> object:
    return InheritedFds.from_value({"inherited_fds": {"policy": value}}).policy


def _requirement(kind: RequirementKind) -> Requirement:
    return next(r for r in requirements_of(SPEC) if r.kind is kind)


def cases() -> dict[str, Case]:
    """Every named vector case."""
    result: dict[str, Case] = {
        "workload.process": (SPEC.workload, workload_from_value),
        "workload.wasm": (WasmWorkload("mod:sha256:abc"), workload_from_value),
        "capability.filesystem": (
            Filesystem(FsAccess.WRITE, ("/b", "/a"), recursive=False),
            capability_from_value,
        ),
        "capability.network.deny_all": (Network(NetworkDenyAll()), capability_from_value),
        "capability.network.allow_list": (
            Network(NetworkAllowList(("Example.org:443", "[::1]:8080"))),
            capability_from_value,
        ),
        "capability.environment": (
            Environment(EnvPolicy.of({"B": "2", "A": "1"}, {"TOKEN": "lease-1"})),
            capability_from_value,
        ),
        "capability.environment.empty": (Environment(EnvPolicy.exact()), capability_from_value),
        "capability.inherited_fds.none": (InheritedFds(FdsNone()), capability_from_value),
        "capability.inherited_fds.only": (InheritedFds(FdsOnly((7, 3))), capability_from_value),
        "env.literal": (EnvLiteral("x=y"), lambda v: env_value_from_value(v, "x")),
        "env.secret_lease": (SecretLease("api-token"), lambda v: env_value_from_value(v, "x")),
        "env.entry": (EnvEntry("PATH", EnvLiteral("/bin")), EnvEntry.from_value),
        "env.policy": (EnvPolicy.of({"Z": "", "A": "a"}), EnvPolicy.from_value),
        "control.std_streams": (StdStreams(True, False, True), StdStreams.from_value),
        "control.launch_workload": (LaunchWorkload(), control_from_value),
        "control.capture_streams": (
            CaptureStreams(StdStreams.capture_out_err()),
            control_from_value,
        ),
        "control.temp_root": (TempRoot(), control_from_value),
        "control.expose_path": (
            ExposePath("/srv/in", "/in", FsAccess.READ),
            control_from_value,
        ),
        "control.commit_artifact": (CommitArtifact(Durability.SYNCED), control_from_value),
        "control.discard_artifact": (DiscardArtifact(), control_from_value),
        "control.kill": (
            Kill(KillTarget.RUN_TREE, KillGuarantee.BEST_EFFORT_ALLOWED),
            control_from_value,
        ),
        "control.list_outputs": (ListOutputs(), control_from_value),
        "budget": (Budget(1 << 40, MinGuarantee.MEDIATED, False), Budget.from_value),
        "budgets.none": (BudgetRequirements.none(), BudgetRequirements.from_value),
        "budgets.uniform": (
            BudgetRequirements.uniform(8, MinGuarantee.MEDIATED),
            BudgetRequirements.from_value,
        ),
        "budgets.deny_all": (BudgetRequirements.deny_all(), BudgetRequirements.from_value),
        "evidence.none": (EvidenceRequirements(), EvidenceRequirements.from_value),
        "evidence.all": (
            EvidenceRequirements(frozenset(EvidenceClaim)),
            EvidenceRequirements.from_value,
        ),
        "spec": (SPEC, BoundarySpec.from_value),
        "requirement.filesystem": (
            _requirement(RequirementKind.FILESYSTEM),
            Requirement.from_value,
        ),
        "requirement.launch_workload": (
            _requirement(RequirementKind.LAUNCH_WORKLOAD),
            Requirement.from_value,
        ),
        "requirement.environment": (
            _requirement(RequirementKind.ENVIRONMENT),
            Requirement.from_value,
        ),
        "report.exit.code": (ExitStatus(3, None), ExitStatus.from_value),
        "report.exit.signal": (ExitStatus(None, 9), ExitStatus.from_value),
        "report.observed_fact": (REPORT_BODY.observed[0], ObservedFact.from_value),
        "report.admitted": (REPORT_BODY.admitted[0], AdmittedRequirement.from_value),
        "report.stream": (REPORT_BODY.streams[1], StreamRecord.from_value),
        "report.budget_witness": (REPORT_BODY.budget_witnesses[0], BudgetWitness.from_value),
        "report.body": (REPORT_BODY, BoundaryReportBody.from_value),
        "report.sealed": (seal_report(REPORT_BODY), SealedReport.from_value),
    }
    result["policy.network.deny_all"] = (NetworkDenyAll(), _network_policy)
    result["policy.network.allow_list"] = (NetworkAllowList(("a.example:1",)), _network_policy)
    result["policy.fds.none"] = (FdsNone(), _fd_policy)
    result["policy.fds.only"] = (FdsOnly((3,)), _fd_policy)
    for spawn in SpawnPolicy:
        result[f"capability.child_spawn.{spawn.value}"] = (
            ChildSpawn(spawn),
            capability_from_value,
        )
    enums: tuple[type[Enum], ...] = (
        Enforcement,
        MinGuarantee,
        Outcome,
        EvidenceClaim,
        BudgetDimension,
        RequirementKind,
        FsAccess,
        Durability,
        SpawnPolicy,
        KillTarget,
        KillGuarantee,
    )
    for enum_cls in enums:
        for member in enum_cls:
            result[f"enum.{enum_cls.__name__}.{member.value}"] = (member, _enum(enum_cls))
    return result


def encode_case(obj: object) -> bytes:
    """The canonical bytes of a case object (enums and values alike have ``to_value``)."""
    from bvisor import canonical

    return canonical.encode(obj.to_value())  # type: ignore[attr-defined]
