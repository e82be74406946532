"""Secret leases: values the workload may see but no plan, report or ledger ever holds.

A spec names a lease by reference (``SecretLease("api-token")``); only the host resolves
it, at launch time, into the child's environment table, which travels in the sealed launch
memfd and nowhere else. Resolvers are deliberately tiny so a caller can wrap a vault client.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

__all__ = ["MapSecretResolver", "NoSecrets", "SecretResolver", "SecretUnresolved"]


class SecretUnresolved(LookupError):
    """A lease named in the spec has no value; the run is refused before launch."""

    def __init__(self, ref: str) -> None:
        super().__init__(f"secret lease {ref!r} has no value (give it with --lease {ref}=HOSTVAR)")
        self.ref = ref


class SecretResolver(Protocol):
    def resolve(self, ref: str) -> str:
        """The lease's value; raise SecretUnresolved when there is none."""
        ...


class MapSecretResolver:
    """Resolve leases from an in-memory mapping (the CLI fills it from host variables)."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = dict(values)

    def resolve(self, ref: str) -> str:
        try:
            return self._values[ref]
        except KeyError:
            raise SecretUnresolved(ref) from None

    def __repr__(self) -> str:  # never print values
        return f"MapSecretResolver(refs={sorted(self._values)})"


class NoSecrets:
    """The default resolver: every lease is unresolved."""

    def resolve(self, ref: str) -> str:
        raise SecretUnresolved(ref)
