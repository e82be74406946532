"""``--lease REF=HOSTVAR``: secret lease values taken from host variables at launch.

Shared by ``bvisor run`` and ``bvisor-replay --rerun`` (which asks for the leases again,
never reading a value from the ledger): one parser, one match against the spec's refs.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["check_leases", "lease_values", "spec_lease_refs"]


def lease_values(pairs: list[str]) -> dict[str, str] | str:
    values: dict[str, str] = {}
    for pair in pairs:
        ref, sep, host_var = pair.partition("=")
        if not sep or not ref or not host_var:
            return f"--lease {pair!r}: expected REF=HOSTVAR"
        if ref in values:
            return f"--lease {pair!r}: lease {ref!r} is given more than once"
        if host_var not in os.environ:
            return f"--lease {pair!r}: host variable {host_var} is not set"
        values[ref] = os.environ[host_var]
    return values


def spec_lease_refs(spec: Any) -> list[str]:
    """The secret lease references the spec's environment asks for, in order."""
    from bvisor.contract import Environment, SecretLease

    refs: list[str] = []
    for capability in spec.capabilities:
        if isinstance(capability, Environment):
            for entry in capability.policy.entries:
                if isinstance(entry.value, SecretLease) and entry.value.ref not in refs:
                    refs.append(entry.value.ref)
    return refs


def check_leases(spec: Any, leases: dict[str, str]) -> str | None:
    """Match ``--lease`` options to the spec before anything runs or is recorded.

    A missing lease would otherwise only surface as a run denied at launch (recorded in
    the ledger, exit 125), and a lease the spec never uses is almost always a typo in REF.
    """
    wanted = spec_lease_refs(spec)
    for ref in leases:
        if ref not in wanted:
            uses = ", ".join(repr(r) for r in wanted) or "none"
            return f"--lease {ref}=...: the spec has no secret lease {ref!r} (it uses: {uses})"
    for ref in wanted:
        if ref not in leases:
            return f"the spec needs secret lease {ref!r}: give --lease {ref}=HOSTVAR"
    return None
