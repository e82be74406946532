"""bvisor: run a Linux process inside a boundary it can prove it enforced, and keep the proof.

The public API is re-exported lazily: ``import bvisor.contract`` (pure data) must never pull
in the launcher, the planner's probe or LMDB, so those load only when a name that needs
them is first touched.
"""

from __future__ import annotations

from bvisor._lazy import lazy_exports

__version__ = "0.1.0"

_LAZY: dict[str, str] = {
    "run_confined": "bvisor.front.api",
    "plan_spec": "bvisor.front.api",
    "default_spec": "bvisor.front.defaults",
    "load_spec": "bvisor.front.specfile",
    "BoundaryPlanner": "bvisor.planner.planning",
    "BackendRegistry": "bvisor.planner.registry",
    "PlanRefusal": "bvisor.planner.errors",
    "LinuxBackend": "bvisor.launcher.host.backend",
    "BoundaryRunner": "bvisor.launcher.host.runner",
    "MapSecretResolver": "bvisor.launcher.host.secrets",
    "Ledger": "ledger",
}

__all__ = ["__version__", *sorted(_LAZY)]


__getattr__, __dir__ = lazy_exports("bvisor", globals(), _LAZY)
