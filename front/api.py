"""The Python API: plan and run a spec in one call, recorded in a ledger.

``run_confined`` is what the ``bvisor run`` command does, minus argument parsing: probe
once, admit (or refuse — a refusal is recorded as ``plan.refused`` and raised), execute
under the Linux backend, seal, and record every step in the evidence ledger. It is safe to
call from a multi-threaded program: nothing here forks; the launcher is started with
``posix_spawn``.

Ledger selection: ``ledger=None`` records in the default ledger (``$BVISOR_LEDGER``, else
``$XDG_DATA_HOME/bvisor/ledger``); a path records there; an open ``ledger.Ledger`` is used
as is; ``ledger=False`` records nothing (for callers that keep their own evidence).

Artifacts: a spec that commits its outputs (``CommitArtifact``) puts them in
``<artifacts>/<run id>``; ``artifacts=None`` is ``$BVISOR_ARTIFACTS``, else
``$XDG_DATA_HOME/bvisor/artifacts``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from bvisor.contract import BoundarySpec
from bvisor.contract.plan import BoundaryPlan
from bvisor.contract.report import SealedReport

if TYPE_CHECKING:
    from bvisor.launcher.host.backend import LinuxBackend
    from bvisor.launcher.host.secrets import SecretResolver
    from bvisor.ledger import Ledger

__all__ = ["open_ledger", "plan_spec", "run_confined"]


def open_ledger(choice: Ledger | str | os.PathLike[str] | Literal[False] | None) -> Ledger | None:
    """Resolve the ``ledger=`` argument to an open ledger (created if needed), or None."""
    from bvisor.ledger import Ledger
    from bvisor.ledger.paths import default_ledger_path

    if choice is False:
        return None
    if isinstance(choice, Ledger):
        return choice
    path = Path(choice) if choice is not None else Path(default_ledger_path())
    return Ledger.open(path, create=True)


def _ledger_location(choice: Ledger | str | os.PathLike[str] | Literal[False] | None) -> str | None:
    """Where ``ledger=`` records, without opening (or creating) it; None: not recording."""
    from bvisor.ledger import Ledger
    from bvisor.ledger.paths import default_ledger_path

    if choice is False:
        return None
    if isinstance(choice, Ledger):
        return choice.path
    return os.fspath(choice if choice is not None else default_ledger_path())


def _backend(backend: LinuxBackend | None) -> LinuxBackend:
    from bvisor.launcher.host.backend import LinuxBackend

    return backend if backend is not None else LinuxBackend()


def plan_spec(spec: BoundarySpec, *, backend: LinuxBackend | None = None) -> BoundaryPlan:
    """Admit ``spec`` against this kernel; raises ``bvisor.planner.errors.PlanRefusal``."""
    from bvisor.planner.planning import BoundaryPlanner
    from bvisor.planner.registry import BackendRegistry

    chosen = _backend(backend)
    registry = BackendRegistry()
    registry.register(chosen)
    return BoundaryPlanner(registry).plan(spec, chosen.id())


def run_confined(
    spec: BoundarySpec,
    *,
    ledger: Ledger | str | os.PathLike[str] | Literal[False] | None = None,
    secrets: SecretResolver | Mapping[str, str] | None = None,
    backend: LinuxBackend | None = None,
    on_stdout: Callable[[bytes], None] | None = None,
    on_stderr: Callable[[bytes], None] | None = None,
    on_plan: Callable[[BoundaryPlan], None] | None = None,
    stdin_fd: int | None = None,
    artifacts: str | os.PathLike[str] | None = None,
) -> SealedReport:
    """Plan, run confined, seal and record. Raises ``PlanRefusal`` when refused."""
    from bvisor.launcher.host.artifacts import default_artifacts_path
    from bvisor.launcher.host.reach import refuse_if_artifacts_reachable, refuse_if_plan_reaches
    from bvisor.launcher.host.runner import BoundaryRunner, refused_payload
    from bvisor.launcher.host.secrets import MapSecretResolver
    from bvisor.planner.errors import PlanRefusal
    from bvisor.planner.planning import BoundaryPlanner
    from bvisor.planner.registry import BackendRegistry

    chosen = _backend(backend)
    registry = BackendRegistry()
    registry.register(chosen)
    resolver = MapSecretResolver(secrets) if isinstance(secrets, Mapping) else secrets
    attempt_id = os.urandom(32)
    snapshot = chosen.probe()
    try:
        plan = BoundaryPlanner(registry).plan(spec, chosen.id(), snapshot=snapshot)
    except PlanRefusal as refusal:
        store = open_ledger(ledger)
        if store is not None:
            store.append(
                "plan.refused", refused_payload(spec, snapshot, refusal, attempt_id), attempt_id
            )
        raise
    where = _ledger_location(ledger)
    if where is not None:
        # Before the ledger is created: a run refused for this must change nothing.
        refuse_if_plan_reaches(where, plan)
    artifact_dir = artifacts if artifacts is not None else default_artifacts_path()
    refuse_if_artifacts_reachable(artifact_dir, plan)  # before anything is created, too
    store = open_ledger(ledger)
    if on_plan is not None:
        on_plan(plan)
    runner = BoundaryRunner(registry, sink=store)
    return runner.run(
        plan,
        secrets=resolver,
        on_stdout=on_stdout,
        on_stderr=on_stderr,
        stdin_fd=stdin_fd,
        attempt_id=attempt_id,
        artifact_dir=artifact_dir,
    )
