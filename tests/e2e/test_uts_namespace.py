"""The workload's hostname and domain name are the plan's, in a UTS namespace of its own
(``linux.utsns.v1``, rules v4), and it cannot rename the host.

The oracles are the host's, taken while the workload runs: ``/proc/<workload>/ns/uts`` is
not the host's own namespace, and the hostname *in* that namespace — read by nsenter(1)
entering it from the host, not by anything the workload says — is the plan's. The planted
lie (``skip_utsns``: the launcher leaves the namespace and the names out but still notes
them) turns both red. A workload that calls sethostname(2) leaves the host's
``/proc/sys/kernel/hostname`` as it was.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from bvisor.contract import Outcome
from bvisor.contract import facts as fact_kinds
from bvisor.contract import mechanisms as mech
from bvisor.front.defaults import default_spec
from bvisor.launcher.host.backend import LinuxBackend
from bvisor.launcher.host.locate import default_launcher_path
from bvisor.launcher.host.runner import BoundaryRunner
from bvisor.planner.planning import BoundaryPlanner
from bvisor.planner.registry import BackendRegistry
from tests.e2e.helpers import find_pids_with, unique_marker, wait_for
from tests.features import require_feature

HOST_HOSTNAME = Path("/proc/sys/kernel/hostname")
HOST_DOMAINNAME = Path("/proc/sys/kernel/domainname")

# Try to rename the (workload's) host, say what it sees and how the call went, then wait
# for the host's look ("done" appears) so the oracle reads a live namespace.
_WORKLOAD = """
import ctypes, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
rc = libc.sethostname(b"renamed-by-workload", 19)
err = ctypes.get_errno()
domain = open("/proc/sys/kernel/domainname").read().strip()
open("seen", "w").write(f"{os.uname().nodename} {domain} {rc} {err}\\n")
for _ in range(1000):
    if os.path.exists("done"):
        break
    time.sleep(0.01)
"""


def _in_namespace(pid: int, program: str) -> str:
    """What ``program`` prints run inside ``pid``'s UTS namespace, entered from the host
    (through its user namespace, whose owner this user is). A namespace that is the host's
    own is read here directly: entering it would need CAP_SYS_ADMIN over the host's, which
    a normal user lacks, and this process is in it already."""
    tool = shutil.which("nsenter")
    assert tool is not None
    enter: list[str] = []
    if os.readlink(f"/proc/{pid}/ns/uts") != os.readlink("/proc/self/ns/uts"):
        enter = [tool, f"--user=/proc/{pid}/ns/user", "--preserve-credentials"]
        enter.append(f"--uts=/proc/{pid}/ns/uts")
    done = subprocess.run(
        [*enter, program], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def _run(work: Path, hooks: frozenset[str]) -> dict[str, Any]:
    backend = LinuxBackend.dangerous_with_test_hooks(default_launcher_path(), hooks)
    registry = BackendRegistry()
    registry.register(backend)
    marker = unique_marker("uts")
    code = _WORKLOAD + f"# {marker}\n"
    spec = default_spec(["/usr/bin/python3", "-c", code], cwd=str(work))
    plan = BoundaryPlanner(registry).plan(spec, "linux")
    seen: dict[str, Any] = {"host_before": HOST_HOSTNAME.read_text().strip()}

    def watch() -> None:
        try:
            if not wait_for(lambda: (work / "seen").is_file(), 30):
                return
            (pid,) = wait_for(lambda: find_pids_with(marker), 10) or (None,)
            if pid is None:
                return
            seen["ns"] = os.readlink(f"/proc/{pid}/ns/uts")
            seen["hostname"] = _in_namespace(pid, "hostname")
            seen["domainname"] = _in_namespace(pid, "domainname")
            seen["host_during"] = HOST_HOSTNAME.read_text().strip()
        finally:
            (work / "done").write_text("")

    watcher = threading.Thread(target=watch)
    watcher.start()
    report = BoundaryRunner(registry).run(plan)
    watcher.join()
    seen["outcome"] = report.body.outcome
    seen["workload"] = (work / "seen").read_text().split()
    seen["host_after"] = HOST_HOSTNAME.read_text().strip()
    seen["planned"] = mech.UtsNamespace.from_value(plan.params_of(mech.UTSNS.id))
    seen["notes"] = [f.detail for f in report.body.observed if f.kind == fact_kinds.LAUNCHER_NOTE]
    return seen


def _needs() -> None:
    for feature in ("userns", "utsns"):
        require_feature(feature)
    if shutil.which("nsenter") is None:
        pytest.skip("LOUD SKIP: no nsenter(1) to enter the workload's namespace with")


def test_the_workload_sees_the_plans_names_in_a_namespace_of_its_own(work: Path) -> None:
    _needs()
    seen = _run(work, frozenset())
    assert seen["outcome"] is Outcome.COMPLETED, seen
    planned = seen["planned"]
    assert planned == mech.UtsNamespace("sandbox", "(none)")
    # from the host, during the run
    assert seen["ns"] != os.readlink("/proc/self/ns/uts"), "the workload shares the host's"
    assert seen["hostname"] == planned.hostname != seen["host_before"], seen
    assert seen["domainname"] == planned.domainname, seen
    # what the workload itself read agrees (it is not the oracle)
    assert seen["workload"][:2] == [planned.hostname, planned.domainname]
    assert "uts namespace created: hostname=sandbox domainname=(none)" in seen["notes"]


def test_a_workload_calling_sethostname_leaves_the_host_named_as_it_was(work: Path) -> None:
    _needs()
    seen = _run(work, frozenset())
    nodename, _domain, rc, err = seen["workload"]
    assert (rc, err) == ("-1", "1"), "EPERM: the workload holds no capability to rename"
    assert seen["host_before"] == seen["host_during"] == seen["host_after"], seen
    assert HOST_HOSTNAME.read_text().strip() != "renamed-by-workload"
    assert nodename == "sandbox"


def test_skip_utsns_turns_the_namespace_oracles_red(work: Path) -> None:
    _needs()
    seen = _run(work, frozenset({"skip_utsns"}))
    assert seen["outcome"] is Outcome.COMPLETED, seen
    assert seen["ns"] == os.readlink("/proc/self/ns/uts"), "oracle missed the shared namespace"
    assert seen["hostname"] == seen["host_before"] != "sandbox", seen
    assert seen["domainname"] == HOST_DOMAINNAME.read_text().strip()
    # the lie: the launcher still claims the names, after its DANGER note
    assert "DANGER test hook active: skip_utsns" in seen["notes"]
    assert "uts namespace created: hostname=sandbox domainname=(none)" in seen["notes"]
    assert seen["host_after"] == seen["host_before"]
