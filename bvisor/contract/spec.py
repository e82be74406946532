"""``BoundarySpec``: everything a caller asks of one run, and its canonical form.

Spec-level rules (checked when the value is built, so an invalid spec cannot exist):

* at most one capability per family, except ``Filesystem``: several may appear (a
  read-only data root next to a writable output root), at most one per
  ``(access, recursive)`` pair — two with the same pair would be one capability spelled
  two ways — and no root may appear in two of them;
* ``LaunchWorkload`` is present; every control kind appears at most once, except
  ``ExposePath`` (one per destination); ``CommitArtifact`` and ``DiscardArtifact``
  contradict each other and are refused together.

Canonical form: capabilities are stored sorted by family (filesystem, network,
child_spawn, environment, inherited_fds) and then by their encoded bytes; controls by
kind (the ``CONTROL_KINDS`` order) and then by encoded bytes. Together with the sorted
sets inside each value this makes ``to_value()`` a function of meaning: reordering a
spec file never changes its bytes, its requirement keys or its plan id.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bvisor import canonical
from bvisor.contract._wire import as_tuple, expect_array, expect_map
from bvisor.contract.budgets import BudgetRequirements
from bvisor.contract.capabilities import (
    CAPABILITY_FAMILIES,
    Capability,
    Filesystem,
    capability_family,
    capability_from_value,
)
from bvisor.contract.controls import (
    CONTROL_KINDS,
    ExposePath,
    HostControl,
    control_from_value,
    control_kind,
)
from bvisor.contract.errors import ContractError
from bvisor.contract.evidence import EvidenceRequirements
from bvisor.contract.workload import ProcessWorkload, WasmWorkload, Workload, workload_from_value

__all__ = ["BoundarySpec", "capability_sort_key", "control_sort_key"]

_FAMILY_ORDER = {name: index for index, name in enumerate(CAPABILITY_FAMILIES)}
_CONTROL_ORDER = {name: index for index, name in enumerate(CONTROL_KINDS)}


def capability_sort_key(capability: Capability) -> tuple[int, bytes]:
    return (_FAMILY_ORDER[capability_family(capability)], canonical.encode(capability.to_value()))


def control_sort_key(control: HostControl) -> tuple[int, bytes]:
    return (_CONTROL_ORDER[control_kind(control)], canonical.encode(control.to_value()))


def _check_capabilities(capabilities: tuple[object, ...]) -> None:
    families: dict[str, int] = {}
    fs_modes: dict[tuple[str, bool], int] = {}
    fs_roots: dict[str, int] = {}
    for index, capability in enumerate(capabilities):
        path = f"capabilities[{index}]"
        try:
            family = capability_family(capability)  # type: ignore[arg-type]
        except ContractError as exc:
            raise ContractError(path, exc.message, exc.code) from None
        if isinstance(capability, Filesystem):
            mode = (capability.access.value, capability.recursive)
            if mode in fs_modes:
                raise ContractError(
                    path,
                    f"a second filesystem capability with access {mode[0]} and recursive="
                    f"{str(mode[1]).lower()} (also capabilities[{fs_modes[mode]}]); "
                    "list all its roots in one",
                    "duplicate-capability",
                )
            fs_modes[mode] = index
            for root in capability.roots:
                if root in fs_roots:
                    raise ContractError(
                        path,
                        f"root {root!r} already appears in capabilities[{fs_roots[root]}] "
                        "(use access read_write for both)",
                        "duplicate-root",
                    )
                fs_roots[root] = index
            continue
        if family in families:
            raise ContractError(
                path,
                f"a second {family} capability (also capabilities[{families[family]}])",
                "duplicate-capability",
            )
        families[family] = index


def _check_controls(controls: tuple[object, ...]) -> None:
    kinds: dict[str, int] = {}
    dests: dict[str, int] = {}
    for index, control in enumerate(controls):
        path = f"controls[{index}]"
        try:
            kind = control_kind(control)  # type: ignore[arg-type]
        except ContractError as exc:
            raise ContractError(path, exc.message, exc.code) from None
        if isinstance(control, ExposePath):
            if control.dest in dests:
                raise ContractError(
                    path,
                    f"destination {control.dest!r} is already exposed by controls"
                    f"[{dests[control.dest]}]",
                    "duplicate-control",
                )
            dests[control.dest] = index
            continue
        if kind in kinds:
            raise ContractError(
                path,
                f"duplicate {kind} control (also controls[{kinds[kind]}])",
                "duplicate-control",
            )
        kinds[kind] = index
    if "commit_artifact" in kinds and "discard_artifact" in kinds:
        raise ContractError(
            f"controls[{kinds['discard_artifact']}]",
            f"discard_artifact contradicts commit_artifact (controls[{kinds['commit_artifact']}])",
            "conflicting-controls",
        )
    if "launch_workload" not in kinds:
        raise ContractError("controls", "launch_workload is required", "missing-launch")


@dataclass(frozen=True, slots=True)
class BoundarySpec:
    """The caller's request: workload, capabilities, host controls, budgets, evidence."""

    workload: Workload
    capabilities: tuple[Capability, ...]
    controls: tuple[HostControl, ...]
    budgets: BudgetRequirements = field(default_factory=BudgetRequirements)
    evidence: EvidenceRequirements = field(default_factory=EvidenceRequirements)

    def __post_init__(self) -> None:
        if not isinstance(self.workload, (ProcessWorkload, WasmWorkload)):
            raise ContractError("workload", f"{self.workload!r} is not a workload", "wrong-type")
        capabilities = as_tuple(self.capabilities, "capabilities")
        controls = as_tuple(self.controls, "controls")
        _check_capabilities(capabilities)
        _check_controls(controls)
        if not isinstance(self.budgets, BudgetRequirements):
            raise ContractError("budgets", "expected BudgetRequirements", "wrong-type")
        if not isinstance(self.evidence, EvidenceRequirements):
            raise ContractError("evidence", "expected EvidenceRequirements", "wrong-type")
        ordered_caps = tuple(sorted(capabilities, key=capability_sort_key))  # type: ignore[arg-type]
        ordered_controls = tuple(sorted(controls, key=control_sort_key))  # type: ignore[arg-type]
        object.__setattr__(self, "capabilities", ordered_caps)
        object.__setattr__(self, "controls", ordered_controls)

    def validate(self) -> BoundarySpec:
        """Specs are validated on construction; kept so callers can say it explicitly."""
        return self

    def to_value(self) -> dict[str, canonical.Value]:
        return {
            "workload": self.workload.to_value(),
            "capabilities": [c.to_value() for c in self.capabilities],
            "controls": [c.to_value() for c in self.controls],
            "budgets": self.budgets.to_value(),
            "evidence": self.evidence.to_value(),
        }

    def encode(self) -> bytes:
        return canonical.encode(self.to_value())

    @classmethod
    def from_value(cls, value: object, path: str = "spec") -> BoundarySpec:
        """Strictly decode; the value must already be in canonical order."""
        keys = ("workload", "capabilities", "controls", "budgets", "evidence")
        body = expect_map(value, path, required=keys)
        caps_raw = expect_array(body["capabilities"], f"{path}.capabilities")
        ctrl_raw = expect_array(body["controls"], f"{path}.controls")
        capabilities = tuple(
            capability_from_value(v, f"{path}.capabilities[{i}]") for i, v in enumerate(caps_raw)
        )
        controls = tuple(
            control_from_value(v, f"{path}.controls[{i}]") for i, v in enumerate(ctrl_raw)
        )
        workload = workload_from_value(body["workload"], f"{path}.workload")
        budgets = BudgetRequirements.from_value(body["budgets"], f"{path}.budgets")
        evidence = EvidenceRequirements.from_value(body["evidence"], f"{path}.evidence")
        try:
            spec = cls(workload, capabilities, controls, budgets, evidence)
        except ContractError as exc:
            raise exc.under(path) from None
        if spec.capabilities != capabilities:
            raise ContractError(f"{path}.capabilities", "not in canonical order", "not-canonical")
        if spec.controls != controls:
            raise ContractError(f"{path}.controls", "not in canonical order", "not-canonical")
        return spec
