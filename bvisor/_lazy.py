"""Lazy re-exports (PEP 562) for package ``__init__`` modules.

A package that re-exports many names should not import every module behind them when only
one is used: ``import bvisor.contract.transcript`` runs in every launch, and ``import
bvisor`` must not pull in the launcher or LMDB. Each package keeps a name -> module map
and installs the two hooks this builds.

Every ``bvisor`` command imports this (through ``bvisor/__init__``), the service's thin
client included, so it imports nothing at all: ``typing`` alone would cost each command
several milliseconds (``TYPE_CHECKING`` is spelled out for that reason).
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, namespace: dict[str, Any], names: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` resolving ``names`` (name -> module) on first use."""

    def getattr_(name: str) -> Any:
        module_name = names.get(name)
        if module_name is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        __import__(module_name)
        value = getattr(sys.modules[module_name], name)
        namespace[name] = value  # later lookups skip this hook
        return value

    def dir_() -> list[str]:
        return sorted(set(namespace) | set(names))

    return getattr_, dir_
