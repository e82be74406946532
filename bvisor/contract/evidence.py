"""Evidence claims: what a spec requires the report to be able to prove.

The claim set is a *set*: its canonical form is the claim names sorted as text, so two
specs asking for the same claims in a different order have the same bytes and digests.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum

from bvisor import canonical
from bvisor.contract._wire import expect_array, expect_enum, expect_map
from bvisor.contract.errors import ContractError

__all__ = ["EvidenceClaim", "EvidenceRequirements"]


class EvidenceClaim(Enum):
    TERMINAL_OUTCOME = "terminal_outcome"
    CAPTURED_STREAMS = "captured_streams"
    RESOURCE_USAGE = "resource_usage"
    ALLOWED_ACTIONS = "allowed_actions"
    DENIED_ATTEMPTS = "denied_attempts"
    FILESYSTEM_DELTA = "filesystem_delta"
    PROCESS_TREE = "process_tree"
    NETWORK_ACTIVITY = "network_activity"
    ARTIFACT_LINEAGE = "artifact_lineage"
    MECHANISM_ATTESTATION = "mechanism_attestation"

    def to_value(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class EvidenceRequirements:
    """The claims the report must support; empty means none beyond the basics."""

    required: frozenset[EvidenceClaim] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        if not isinstance(self.required, frozenset):
            if isinstance(self.required, (set, list, tuple)):
                object.__setattr__(self, "required", frozenset(self.required))
            else:
                raise ContractError("required", "expected a set of evidence claims")
        for claim in self.required:
            if not isinstance(claim, EvidenceClaim):
                raise ContractError("required", f"{claim!r} is not an EvidenceClaim")

    @classmethod
    def of(cls, claims: Iterable[EvidenceClaim]) -> EvidenceRequirements:
        return cls(frozenset(claims))

    def sorted_claims(self) -> tuple[EvidenceClaim, ...]:
        """The claims in canonical order (sorted by their text value)."""
        return tuple(sorted(self.required, key=lambda claim: claim.value))

    def to_value(self) -> dict[str, canonical.Value]:
        return {"required": [claim.value for claim in self.sorted_claims()]}

    @classmethod
    def from_value(cls, value: object, path: str = "evidence") -> EvidenceRequirements:
        body = expect_map(value, path, required=("required",))
        items = expect_array(body["required"], f"{path}.required")
        claims = [
            expect_enum(EvidenceClaim, v, f"{path}.required[{i}]") for i, v in enumerate(items)
        ]
        result = cls(frozenset(claims))
        if [c.value for c in claims] != [c.value for c in result.sorted_claims()]:
            raise ContractError(f"{path}.required", "claims must be unique and sorted")
        return result
