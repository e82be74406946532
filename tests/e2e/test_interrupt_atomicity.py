"""Ctrl-C at the worst moment still leaves a report and a ledger that agree.

CI once caught a Ctrl-C landing between "keep this launcher line for the report" and
"append it to the ledger": the report named nine launcher notes, the ledger held eight,
and replay failed the run. The lines are now written with the report in one transaction,
and these tests still deliver SIGINT at chosen points — as a launcher line arrives, and
from inside the final append itself (before the write) — so the race is hit every time.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

from bvisor import replay
from bvisor.contract import Outcome
from bvisor.launcher.host.interrupts import HostStopped, interrupts_held, stop_signals_interrupt
from bvisor.ledger import Ledger
from tests.e2e.helpers import descendants_spec, run_execute
from tests.features import require_feature


class InterruptingSink:
    """Forwards to a ledger, but raises a stop signal on this process before chosen appends."""

    def __init__(
        self,
        ledger: Ledger,
        *,
        at_seal: bool = False,
        signum: int = signal.SIGINT,
    ):
        self._ledger = ledger
        self._at_seal = at_seal
        self._signum = signum
        self.interrupts_sent = 0

    def _interrupt(self) -> None:
        self.interrupts_sent += 1
        signal.raise_signal(self._signum)

    def interrupt_at_phase(self, at: int) -> Callable[[int, str], None]:
        def on_phase(index: int, _line: str) -> None:
            if index == at:
                self._interrupt()

        return on_phase

    def append(self, kind: str, payload: Any, run_id: bytes | None = None) -> object:
        return self._ledger.append(kind, payload, run_id)

    def append_many(self, items: Iterable[tuple[str, Any, bytes | None]]) -> object:
        batch = list(items)
        if self._at_seal and any(kind == "report.sealed" for kind, _, _ in batch):
            self._interrupt()
        return self._ledger.append_many(batch)


def _only_run(store: Ledger) -> replay.RunAudit:
    audit = replay.audit(store)
    assert len(audit.runs) == 1, audit.to_json()
    return audit.runs[0]


@pytest.mark.parametrize("phase_index", [0, 6, 8, 12])
def test_interrupt_as_a_launcher_line_arrives_keeps_report_and_ledger_in_step(
    tmp_path: Path, phase_index: int
) -> None:
    require_feature("cgroup2-kill")
    with Ledger.open(tmp_path / "ledger", create=True) as store:
        sink = InterruptingSink(store)
        with pytest.raises(KeyboardInterrupt):
            run_execute(
                descendants_spec(["-c", "sleep 300"]),
                sink=sink,
                on_phase=sink.interrupt_at_phase(phase_index),
            )
        assert sink.interrupts_sent == 1
        phases = [e.payload for e in store.events() if e.kind == "launcher.phase"]
        sealed = [e.payload for e in store.events() if e.kind == "report.sealed"]
        run = _only_run(store)
    # The line that arrived with Ctrl-C was recorded, and the run ended: the report's
    # transcript and the ledger's lines are the same list.
    assert phases[-1]["index"] >= phase_index, phases
    assert len(sealed) == 1 and sealed[0]["body"]["outcome"] == Outcome.KILLED.value
    assert run.verdict == replay.VERIFIED, run.to_json()


def test_interrupt_while_the_report_is_appended_still_records_it(tmp_path: Path) -> None:
    require_feature("cgroup2-kill")
    with Ledger.open(tmp_path / "ledger", create=True) as store:
        sink = InterruptingSink(store, at_seal=True)
        with pytest.raises(KeyboardInterrupt):
            run_execute(descendants_spec(["-c", "exit 4"]), sink=sink)
        sealed = [e.payload for e in store.events() if e.kind == "report.sealed"]
        run = _only_run(store)
    # The workload had finished on its own: the late Ctrl-C changes nothing recorded.
    assert len(sealed) == 1 and sealed[0]["body"]["exit"]["code"] == 4
    assert run.verdict == replay.VERIFIED, run.to_json()


def test_held_interrupt_is_delivered_after_the_body_and_not_before() -> None:
    steps: list[str] = []
    with pytest.raises(KeyboardInterrupt), interrupts_held():
        signal.raise_signal(signal.SIGINT)
        steps.append("after the signal")
    assert steps == ["after the signal"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_held_interrupt_can_be_noted_instead_of_raised() -> None:
    with interrupts_held(redeliver=False) as held:
        signal.raise_signal(signal.SIGINT)
    assert held.arrived
    with interrupts_held(redeliver=False) as quiet:
        pass
    assert not quiet.arrived
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_holding_outside_the_main_thread_leaves_signals_alone() -> None:
    errors: list[BaseException] = []

    def body() -> None:
        try:
            with interrupts_held() as held:
                assert not held.arrived
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=body)
    worker.start()
    worker.join()
    assert errors == []
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_sigterm_under_the_command_line_handler_ends_the_run_like_ctrl_c(tmp_path: Path) -> None:
    require_feature("cgroup2-kill")
    with Ledger.open(tmp_path / "ledger", create=True) as store:
        sink = InterruptingSink(store, signum=signal.SIGTERM)
        with pytest.raises(HostStopped) as stopped, stop_signals_interrupt():
            run_execute(
                descendants_spec(["-c", "sleep 300"]),
                sink=sink,
                on_phase=sink.interrupt_at_phase(8),
            )
        sealed = [e.payload for e in store.events() if e.kind == "report.sealed"]
        run = _only_run(store)
    assert stopped.value.signum == signal.SIGTERM
    assert len(sealed) == 1 and sealed[0]["body"]["outcome"] == Outcome.KILLED.value
    facts = {f["kind"]: f["detail"] for f in sealed[0]["body"]["observed"]}
    assert "SIGTERM" in facts["host_interrupted"]
    assert run.verdict == replay.VERIFIED, run.to_json()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_stop_signal_handlers_are_restored_and_raise_with_their_signal() -> None:
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)}
    for signum in (signal.SIGTERM, signal.SIGHUP):
        with pytest.raises(HostStopped) as stopped, stop_signals_interrupt():
            signal.raise_signal(signum)
        assert stopped.value.signum == signum
        assert isinstance(stopped.value, KeyboardInterrupt)
    assert {s: signal.getsignal(s) for s in before} == before


def test_a_held_sigterm_is_delivered_to_the_callers_handler_after_the_body() -> None:
    steps: list[str] = []
    with pytest.raises(HostStopped), stop_signals_interrupt():
        with interrupts_held():
            signal.raise_signal(signal.SIGTERM)
            steps.append("after the signal")
        steps.append("never reached")
    assert steps == ["after the signal"]


def test_default_action_signals_are_not_held() -> None:
    with interrupts_held():
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler


def test_a_plan_with_unreadable_params_is_sealed_and_recorded_without_running(
    tmp_path: Path,
) -> None:
    """The backend's earliest refusal still reaches the runner's seal (nothing is lost)."""
    import dataclasses

    from bvisor.contract import mechanisms as mech
    from bvisor.contract.lowering import lowering_digest, param_digest
    from bvisor.contract.plan import BoundaryPlan, PlannedPrimitive, plan_identity
    from bvisor.launcher.host.backend import LinuxBackend
    from bvisor.launcher.host.locate import default_launcher_path
    from bvisor.launcher.host.runner import BoundaryRunner
    from bvisor.planner.planning import BoundaryPlanner
    from bvisor.planner.registry import BackendRegistry

    backend = LinuxBackend.with_launcher_path(default_launcher_path())
    registry = BackendRegistry()
    registry.register(backend)
    plan = BoundaryPlanner(registry).plan(descendants_spec(["-c", "true"]), backend.id())
    broken = {"exe": 7, "argv": []}  # hashes fine, but no host side can read it
    lowering = tuple(
        PlannedPrimitive(dataclasses.replace(p.entry, param_digest=param_digest(broken)), broken)
        if p.entry.id == mech.EXEC.id
        else p
        for p in plan.lowering
    )
    h_l = lowering_digest(p.entry for p in lowering)
    forged = dataclasses.replace(
        plan,
        lowering=lowering,
        h_l=h_l,
        plan_id=plan_identity(
            plan.schema_version, plan.backend, plan.spec, plan.h_p, plan.h_a, h_l, plan.admission
        ),
    )
    assert isinstance(forged, BoundaryPlan)
    with Ledger.open(tmp_path / "ledger", create=True) as store:
        report = BoundaryRunner(registry, sink=store).run(forged)
        kinds = [e.kind for e in store.events()]
    assert report.body.outcome is Outcome.SUPERVISOR_FAULT
    assert any(f.kind == "lowering_params_invalid" for f in report.body.observed)
    assert kinds[-1] == "report.sealed" and "launcher.phase" not in kinds
