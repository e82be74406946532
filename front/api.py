"""The Python API: plan and run a spec in one call, recorded in a ledger.

``run_confined`` is what the ``bvisor run`` command does, minus argument parsing: probe
once, admit (or refuse — a refusal is recorded as ``plan.refused`` and raised), execute
under the Linux backend, seal, and record every step in the evidence ledger. It is safe to
call from a multi-threaded program: nothing here forks; the launcher is started with
``posix_spawn`` — once, as a resident launcher that forks a fresh launcher for each run
(:mod:`bvisor.launcher.host.resident`; ``BVISOR_RESIDENT=0`` starts one per run) — and
the probed profile and the plan of an unchanged spec are reused while the host is
unchanged (:mod:`bvisor.launcher.host.profile_cache`).

Ledger selection: ``ledger=None`` records in the default ledger (``$BVISOR_LEDGER``, else
``$XDG_DATA_HOME/bvisor/ledger``); a path records there; an open ``ledger.Ledger`` is used
as is; ``ledger=False`` records nothing (for callers that keep their own evidence).

Checkpoints: when a signing key is configured — ``key=`` a path, else ``$BVISOR_KEY``, else
the default key under the data directory if it exists — the run's last record is written
in one transaction with a signed checkpoint of the ledger (``bvisor.ledger.notary``); a
run whose roots reach the key is refused like one that reaches the ledger. ``key=False``
signs nothing. If the checkpoint cannot be signed the record is kept all the same and
``on_checkpoint(None, why)`` hears why; a signed one comes as ``on_checkpoint(signed,
remark)``, the remark None unless something is worth saying (the memory was not kept, or
the checkpoint also covers runs this call did not record: a signature says what the ledger
held, not who wrote it). If a run's record cannot be finished after its plan was
recorded (a full disk), :class:`bvisor.ledger.errors.RecordIncompleteError` says that the
workload ran and its record is incomplete.

Artifacts: a spec that commits its outputs (``CommitArtifact``) puts them in
``<artifacts>/<run id>``; ``artifacts=None`` is ``$BVISOR_ARTIFACTS``, else
``$XDG_DATA_HOME/bvisor/artifacts``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from bvisor.contract import BoundarySpec, events
from bvisor.contract.plan import BoundaryPlan
from bvisor.contract.report import SealedReport

if TYPE_CHECKING:
    from bvisor.contract.profile import ProfileSnapshot
    from bvisor.contract.rerun import RerunLink
    from bvisor.launcher.host.backend import LinuxBackend
    from bvisor.launcher.host.relay import HostStdio
    from bvisor.launcher.host.secrets import SecretResolver
    from bvisor.ledger import Ledger
    from bvisor.ledger.checkpoint import SignedCheckpoint
    from bvisor.ledger.notary import SigningRequest
    from bvisor.ledger.note import Signer

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


def _holds_ledger(where: str) -> bool:
    """Does ``where`` already hold a ledger's files (so opening it creates none)?"""
    return all(os.path.isfile(os.path.join(where, name)) for name in ("data.mdb", "lock.mdb"))


def _signing_key(key: str | os.PathLike[str] | Literal[False] | None) -> tuple[Signer, str] | None:
    """The configured checkpoint key and its path (see module), loaded before anything runs."""
    if key is False:
        return None
    from bvisor.ledger.paths import resolve_key_path

    path = resolve_key_path(key)
    if path is None:
        return None
    from bvisor.ledger.keys import load_signer

    return load_signer(path), os.fspath(path)


class _RecordingSink:
    """The runner's sink: the ledger, with a checkpoint signed in the transaction of the
    run's last record, and a record that cannot be finished said as such."""

    def __init__(
        self,
        ledger: Ledger,
        signing: tuple[Signer, str] | None,
        on_checkpoint: Callable[[SignedCheckpoint | None, str | None], None] | None,
        *,
        new_log: bool = False,
        place: str | None = None,
    ) -> None:
        self.ledger = ledger
        self.path = ledger.path
        self._signing = signing
        self._new_log = new_log
        # The ledger's path as the caller named it (``ledger.path`` has its links
        # resolved): the key binds both, so a link re-pointed there is not a new place.
        self._place = place if place is not None else ledger.path
        self._on_checkpoint = on_checkpoint
        self._admitted = False
        # The runs this sink recorded (its command's own), each event's seq and hash.
        self._seqs: dict[bytes, dict[int, bytes]] = {}

    def append(self, kind: str, payload: object, run_id: bytes | None = None) -> object:
        return self.append_many([(kind, payload, run_id)])

    def append_many(self, items: object) -> object:
        from bvisor.ledger import LedgerError
        from bvisor.ledger.errors import RecordIncompleteError

        batch = list(items)  # type: ignore[call-overload]
        kinds = [item[0] for item in batch]
        last = not events.CLOSING_KINDS.isdisjoint(kinds)
        request = None
        if last and self._signing is not None:
            request = self._request(*self._signing)
        try:
            receipts = self.ledger.append_many(batch, sign=request)
        except LedgerError as exc:
            if not self._admitted:
                raise
            run_id = batch[0][2] if len(batch[0]) == 3 else b""
            outcome = next(
                (o for o in (events.terminal_outcome(i[0], i[1]) for i in batch) if o), None
            )
            ran = f" (outcome {outcome})" if outcome else ""
            raise RecordIncompleteError(
                f"the workload ran{ran} but its record is incomplete: {exc}; the ledger holds "
                f"its plan, and bvisor-replay shows run {run_id.hex()[:16]} as incomplete",
                run_id,
            ) from exc
        self._admitted = self._admitted or events.PLAN_ADMITTED in kinds
        for item, receipt in zip(batch, receipts, strict=True):
            if len(item) == 3 and item[2]:
                self._seqs.setdefault(item[2], {})[receipt.seq] = receipt.hash
        if request is not None:
            self._settle(request)
        return receipts

    def _request(self, signer: Signer, key_path: str) -> SigningRequest | None:
        """What to sign with, or None (said to ``on_checkpoint``) when the key's memory
        cannot be read: the run is recorded unsigned rather than signed blind."""
        from bvisor.ledger import LedgerError
        from bvisor.ledger.keys import remembered
        from bvisor.ledger.notary import SigningRequest

        try:
            memory = remembered(
                Path(key_path), self.ledger.ledger_id, self._place, new_log=self._new_log
            )
        except LedgerError as exc:
            if self._on_checkpoint is not None:
                self._on_checkpoint(None, str(exc))
            return None
        recorded = {run: dict(hashes) for run, hashes in self._seqs.items()}
        return SigningRequest(signer, remembered=memory, tolerate=True, recorded=recorded)

    def _settle(self, request: SigningRequest) -> None:
        from bvisor.ledger import LedgerError
        from bvisor.ledger.keys import remember

        assert self._signing is not None
        if request.signed is not None:
            try:
                remember(Path(self._signing[1]), request.signed, self._place)
            except LedgerError as exc:
                request.problem = f"signed, but the signer's memory was not kept: {exc}"
            others = [run for run in request.covered_runs if run not in self._seqs]
            if others and request.problem is None:
                # A signature says the ledger held them, not who wrote them: whoever could
                # write the ledger may have appended them since the last checkpoint.
                shown = ", ".join(run.hex()[:16] for run in others[:8])
                more = f" and {len(others) - 8} more" if len(others) > 8 else ""
                request.problem = (
                    f"signed; the checkpoint also covers {len(others)} run(s) this command did "
                    f"not record, appended since the last checkpoint: {shown}{more} (if you "
                    "did not make them, check them: bvisor-replay RUN)"
                )
        if self._on_checkpoint is not None:
            self._on_checkpoint(request.signed, request.problem)


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
    stdio: HostStdio | None = None,
    snapshot: ProfileSnapshot | None = None,
    key: str | os.PathLike[str] | Literal[False] | None = None,
    artifacts: str | os.PathLike[str] | None = None,
    on_checkpoint: Callable[[SignedCheckpoint | None, str | None], None] | None = None,
    rerun_of: RerunLink | None = None,
    new_log: bool = False,
) -> SealedReport:
    """Plan, run confined, seal and record. Raises ``PlanRefusal`` when refused.

    ``artifacts``: where a spec that commits its outputs puts them (see above).
    ``stdin_fd``: when the spec reads stdin, this fd's bytes are relayed into the
    workload's stdin pipe (the fd itself never reaches it; a terminal is never relayed).
    ``stdio`` says the same and more (outlets for the caller's stdout/stderr, a pty for
    interactive use); it replaces ``stdin_fd``. ``snapshot`` is a profile this process
    probed moments ago (the CLI probes once to choose its default limits). ``key`` signs
    a checkpoint with the run's last record (see the transparency section of README);
    ``new_log``: the ledger is a new one at a place where the key signed another before.
    ``rerun_of`` names the recorded run this one re-executes (``bvisor-replay --rerun``);
    it is recorded with the plan, outside every plan digest.
    """
    from bvisor.front.service.paths import service_dirs
    from bvisor.launcher.host.artifacts import default_artifacts_path
    from bvisor.launcher.host.reach import (
        refuse_if_artifacts_reachable,
        refuse_if_code_reachable,
        refuse_if_key_reachable,
        refuse_if_plan_reaches,
        refuse_if_service_reachable,
    )
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
    signing = None if ledger is False else _signing_key(key)
    if snapshot is None:
        snapshot = chosen.probe()
    try:
        plan = BoundaryPlanner(registry).plan(spec, chosen.id(), snapshot=snapshot)
    except PlanRefusal as refusal:
        store = open_ledger(ledger)
        if store is not None:
            _RecordingSink(
                store, signing, on_checkpoint, new_log=new_log, place=_ledger_location(ledger)
            ).append(
                events.PLAN_REFUSED,
                refused_payload(spec, snapshot, refusal, attempt_id),
                attempt_id,
            )
        raise
    where = _ledger_location(ledger)
    # Opening a ledger that is already there changes nothing these checks judge (its
    # directory, files, inodes and mount): the runner need not make them again.
    exists = where is None or _holds_ledger(where)
    # Before the ledger is created: a run refused for these must change nothing.
    refuse_if_code_reachable(plan, chosen.launcher_path)
    if where is not None:
        refuse_if_plan_reaches(where, plan)
    if signing is not None:
        refuse_if_key_reachable(signing[1], plan)
    artifact_dir = artifacts if artifacts is not None else default_artifacts_path()
    refuse_if_artifacts_reachable(artifact_dir, plan)  # before anything is created, too
    refuse_if_service_reachable(service_dirs(), plan)
    store = open_ledger(ledger)
    if on_plan is not None:
        on_plan(plan)
    sink = (
        None
        if store is None
        else _RecordingSink(store, signing, on_checkpoint, new_log=new_log, place=where)
    )
    runner = BoundaryRunner(registry, sink=sink)
    return runner.run(
        plan,
        secrets=resolver,
        on_stdout=on_stdout,
        on_stderr=on_stderr,
        stdin_fd=stdin_fd,
        attempt_id=attempt_id,
        stdio=stdio,
        artifact_dir=artifact_dir,
        rerun_of=rerun_of,
        reach_checked=exists,
    )
