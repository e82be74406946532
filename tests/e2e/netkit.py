"""Test servers and runs for the network allow list.

A :class:`Server` is a small HTTP server on an address of the test's choosing; it records
every connection it accepted and every request path, so a test can say from *outside* the
workload what reached it (the oracle), independently of what the proxy or the report say.
:func:`allow_spec` is the default boundary with an allow list instead of deny-all, and
:func:`run_allowed` runs it into a ledger of its own (optionally with test hooks), then
audits that ledger with replay.
"""

from __future__ import annotations

import dataclasses
import http.server
import socketserver
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bvisor.contract import (
    BoundarySpec,
    BudgetRequirements,
    EvidenceClaim,
    EvidenceRequirements,
    Network,
    NetworkAllowList,
)
from bvisor.contract.events import NETWORK_DECISION as DECISION_EVENT
from bvisor.contract.netpolicy import NetworkDecision
from bvisor.contract.report import SealedReport
from bvisor.front.defaults import default_spec
from bvisor.launcher.host.backend import LinuxBackend
from bvisor.launcher.host.locate import default_launcher_path
from bvisor.launcher.host.runner import BoundaryRunner
from bvisor.ledger import Ledger
from bvisor.planner.planning import BoundaryPlanner
from bvisor.planner.registry import BackendRegistry
from bvisor.replay import audit

PYTHON = "/usr/bin/python3"
CURL = "/usr/bin/curl"


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Tcp

    def do_GET(self) -> None:
        self.server.owner.paths.append(self.path)
        if self.path.startswith("/big/"):
            body = b"x" * int(self.path.rsplit("/", 1)[1])
        else:
            body = f"hello from {self.server.owner.name} {self.path}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class _Tcp(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: Server

    def verify_request(self, request: object, client_address: object) -> bool:
        self.owner.connections += 1
        return True


@dataclass
class Server:
    """An HTTP server that counts connections and keeps request paths (see module doc)."""

    name: str
    host: str = "127.0.0.1"
    port: int = 0
    connections: int = 0
    paths: list[str] = field(default_factory=list)


@contextmanager
def serving(name: str, host: str = "127.0.0.1", port: int = 0) -> Iterator[Server]:
    server = Server(name, host)
    tcp = _Tcp((host, port), _Handler)
    tcp.owner = server
    server.port = tcp.server_address[1]
    thread = threading.Thread(target=tcp.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        tcp.shutdown()
        tcp.server_close()
        thread.join(5)


def allow_spec(
    command: Sequence[str],
    entries: Sequence[str],
    work: Path,
    *,
    budgets: BudgetRequirements | None = None,
) -> BoundarySpec:
    """The default boundary of ``bvisor run`` with ``entries`` as its allow list."""
    base = default_spec(list(command), cwd=str(work))
    caps = tuple(
        Network(NetworkAllowList(tuple(entries))) if isinstance(c, Network) else c
        for c in base.capabilities
    )
    return dataclasses.replace(
        base,
        capabilities=caps,
        budgets=budgets or base.budgets,
        evidence=EvidenceRequirements.of({EvidenceClaim.NETWORK_ACTIVITY}),
    )


@dataclass
class AllowedRun:
    report: SealedReport
    out: str
    decisions: list[NetworkDecision]  # as the ledger holds them
    audit_ok: bool
    audit_detail: str
    entry_ids: list[str]  # the plan's lowering, in schedule order

    def facts(self, kind: str) -> list[str]:
        return [f.detail for f in self.report.body.observed if f.kind == kind]


def run_allowed(
    spec: BoundarySpec, ledger_dir: Path, hooks: frozenset[str] = frozenset()
) -> AllowedRun:
    backend = LinuxBackend.dangerous_with_test_hooks(default_launcher_path(), hooks)
    registry = BackendRegistry()
    registry.register(backend)
    plan = BoundaryPlanner(registry).plan(spec, "linux")
    out = bytearray()
    with Ledger.open(ledger_dir, create=True) as ledger:
        report = BoundaryRunner(registry, sink=ledger).run(
            plan, on_stdout=out.extend, on_stderr=out.extend
        )
        events = ledger.run_events(report.body.attempt_id)
        decisions = [
            NetworkDecision.from_value(e.payload["decision"])  # type: ignore[index]
            for e in events
            if e.kind == DECISION_EVENT
        ]
    with Ledger.open(ledger_dir, readonly=True) as ledger:
        audited = audit(ledger)
    detail = "; ".join(
        f"{check.name}: {check.detail}"
        for run in audited.runs
        for check in run.checks
        if not check.ok
    )
    ids = [entry.id for entry in plan.entries]
    return AllowedRun(report, out.decode("utf-8", "replace"), decisions, audited.ok, detail, ids)
