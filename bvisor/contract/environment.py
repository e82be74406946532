"""The workload's environment: exactly the listed entries, nothing inherited.

An entry's value is either a literal or a *secret lease* (a reference the runner
resolves at launch, so the secret itself never enters the spec, the plan or the ledger).
Validation mirrors what ``execve`` can carry and what a reader can trust: names are
non-empty and contain neither ``=`` nor NUL, values contain no NUL, names are unique, at
most ``ENV_MAX_ENTRIES`` entries and ``ENV_MAX_BYTES`` bytes in total. Each rule has its
own error ``code`` and names the offending entry.

Size accounting counts each entry as ``NAME=value\\0`` in UTF-8 (the execve layout). A
lease's value is unknown until it is resolved, so only ``NAME=\\0`` is counted here; the
runner must re-check the limit after resolving leases.

Canonical form: entries sorted by name (UTF-8 byte order); the policy is stored sorted,
so two policies listing the same entries in a different order are equal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from bvisor import canonical
from bvisor.contract._wire import as_tuple, expect_array, expect_map, expect_text, expect_variant
from bvisor.contract.errors import ContractError

__all__ = [
    "ENV_MAX_BYTES",
    "ENV_MAX_ENTRIES",
    "EnvEntry",
    "EnvLiteral",
    "EnvPolicy",
    "EnvValue",
    "SecretLease",
    "env_value_from_value",
]

ENV_MAX_ENTRIES = 256
ENV_MAX_BYTES = 128 * 1024


@dataclass(frozen=True, slots=True)
class EnvLiteral:
    value: str

    def __post_init__(self) -> None:
        text = expect_text(self.value, "value")
        if "\x00" in text:
            raise ContractError("value", "value contains a NUL byte", "env-value-has-nul")

    def to_value(self) -> dict[str, canonical.Value]:
        return {"literal": self.value}

    def byte_size(self) -> int:
        return len(self.value.encode("utf-8"))


@dataclass(frozen=True, slots=True)
class SecretLease:
    ref: str

    def __post_init__(self) -> None:
        text = expect_text(self.ref, "ref")
        if not text:
            raise ContractError("ref", "secret lease reference is empty", "env-empty-lease")
        if "\x00" in text:
            raise ContractError("ref", "lease reference contains a NUL byte", "env-value-has-nul")

    def to_value(self) -> dict[str, canonical.Value]:
        return {"secret_lease": self.ref}

    def byte_size(self) -> int:
        return 0


EnvValue: TypeAlias = EnvLiteral | SecretLease


def env_value_from_value(value: object, path: str) -> EnvValue:
    name, payload = expect_variant(value, path, ("literal", "secret_lease"))
    text = expect_text(payload, f"{path}.{name}")
    try:
        return EnvLiteral(text) if name == "literal" else SecretLease(text)
    except ContractError as exc:
        raise ContractError(f"{path}.{name}", exc.message, exc.code) from None


@dataclass(frozen=True, slots=True)
class EnvEntry:
    name: str
    value: EnvValue

    def __post_init__(self) -> None:
        name = expect_text(self.name, "name")
        if not name:
            raise ContractError("name", "environment variable name is empty", "env-empty-name")
        if "=" in name:
            raise ContractError("name", f"name {name!r} contains '='", "env-name-has-equals")
        if "\x00" in name:
            raise ContractError("name", f"name {name!r} contains a NUL byte", "env-name-has-nul")
        if not isinstance(self.value, (EnvLiteral, SecretLease)):
            raise ContractError("value", f"{name}: expected EnvLiteral or SecretLease")

    def byte_size(self) -> int:
        """Bytes this entry takes in an execve envp block: ``NAME=value\\0``."""
        return len(self.name.encode("utf-8")) + 2 + self.value.byte_size()

    def to_value(self) -> dict[str, canonical.Value]:
        return {"name": self.name, "value": self.value.to_value()}

    @classmethod
    def from_value(cls, value: object, path: str = "entry") -> EnvEntry:
        body = expect_map(value, path, required=("name", "value"))
        name = expect_text(body["name"], f"{path}.name")
        env_value = env_value_from_value(body["value"], f"{path}.value")
        try:
            return cls(name, env_value)
        except ContractError as exc:
            raise exc.under(path) from None


def _name_order(entry: EnvEntry) -> bytes:
    return entry.name.encode("utf-8")


@dataclass(frozen=True, slots=True)
class EnvPolicy:
    """``Exact[entries]``: the complete environment, stored sorted by name."""

    entries: tuple[EnvEntry, ...] = ()

    def __post_init__(self) -> None:
        entries = as_tuple(self.entries, "entries")
        seen: set[str] = set()
        total = 0
        for index, entry in enumerate(entries):
            path = f"entries[{index}]"
            if not isinstance(entry, EnvEntry):
                raise ContractError(path, f"expected an EnvEntry, got {entry!r}")
            if index >= ENV_MAX_ENTRIES:
                raise ContractError(
                    path,
                    f"{entry.name!r}: more than {ENV_MAX_ENTRIES} environment entries",
                    "env-too-many-entries",
                )
            if entry.name in seen:
                raise ContractError(
                    path, f"duplicate environment name {entry.name!r}", "env-duplicate-name"
                )
            seen.add(entry.name)
            total += entry.byte_size()
            if total > ENV_MAX_BYTES:
                raise ContractError(
                    path,
                    f"{entry.name!r}: environment exceeds {ENV_MAX_BYTES} bytes "
                    f"({total} bytes up to and including this entry)",
                    "env-too-large",
                )
        object.__setattr__(self, "entries", tuple(sorted(entries, key=_name_order)))

    @classmethod
    def exact(cls, entries: tuple[EnvEntry, ...] | list[EnvEntry] = ()) -> EnvPolicy:
        return cls(tuple(entries))

    @classmethod
    def of(cls, literals: dict[str, str], leases: dict[str, str] | None = None) -> EnvPolicy:
        """Convenience: literal values and lease references by name."""
        entries = [EnvEntry(k, EnvLiteral(v)) for k, v in literals.items()]
        entries += [EnvEntry(k, SecretLease(v)) for k, v in (leases or {}).items()]
        return cls(tuple(entries))

    def byte_size(self) -> int:
        return sum(entry.byte_size() for entry in self.entries)

    def to_value(self) -> dict[str, canonical.Value]:
        return {"exact": [entry.to_value() for entry in self.entries]}

    @classmethod
    def from_value(cls, value: object, path: str = "policy") -> EnvPolicy:
        _, payload = expect_variant(value, path, ("exact",))
        inner = f"{path}.exact"
        items = expect_array(payload, inner)
        entries = tuple(EnvEntry.from_value(v, f"{inner}[{i}]") for i, v in enumerate(items))
        try:
            policy = cls(entries)
        except ContractError as exc:
            where = f"{inner}{exc.path.removeprefix('entries')}"
            raise ContractError(where, exc.message, exc.code) from None
        if policy.entries != entries:
            raise ContractError(inner, "entries are not sorted by name", "not-canonical")
        return policy
