"""`bvisor run` as a user meets it: exit statuses, --json, refusals, usage errors, Ctrl-C.

Each test runs the installed command in a subprocess, the way a shell script would.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from bvisor import replay
from bvisor.ledger import Ledger
from tests.e2e.helpers import find_pids_with, marked_sleep, unique_marker, wait_for
from tests.features import require_feature

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def bvisor(*args: str, ledger: Path, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bvisor.front.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "BVISOR_LEDGER": str(ledger)},
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture
def ledger_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Outside the run's cwd (``tmp_path``): a ledger inside a root is refused."""
    return tmp_path_factory.mktemp("ledgers") / "ledger"


@pytest.mark.parametrize("how", ["--ledger", "default under HOME"])
def test_a_ledger_inside_the_runs_reach_is_refused_and_nothing_is_recorded(
    tmp_path: Path, how: str
) -> None:
    """The workload could read other runs' output or truncate the store under the host."""
    env = {k: v for k, v in os.environ.items() if k not in ("BVISOR_LEDGER", "XDG_DATA_HOME")}
    args = ["run", "--ledger", "./ledger"] if how == "--ledger" else ["run"]
    done = subprocess.run(
        [sys.executable, "-m", "bvisor.front.cli.main", *args, "--", "/bin/true"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**env, "HOME": str(tmp_path), "PYTHONPATH": str(Path(__file__).parents[2])},
    )
    assert done.returncode == 2, done.stderr
    assert "lies inside the filesystem root" in done.stderr and "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == [], "a refused run must leave no ledger behind"


def test_default_run_passes_output_through_and_exits_with_the_workload_status(
    ledger_dir: Path, tmp_path: Path
) -> None:
    require_feature("landlock")
    done = bvisor(
        "run",
        "--",
        "/bin/sh",
        "-c",
        "echo out; echo err >&2; exit 3",
        ledger=ledger_dir,
        cwd=tmp_path,
    )
    assert done.returncode == 3, done.stderr
    assert done.stdout == "out\n"
    assert "err" in done.stderr
    assert "bvisor: failed (exit=3)" in done.stderr
    assert (ledger_dir / "data.mdb").exists(), "the run must be recorded in the ledger"


def test_signal_death_maps_to_128_plus_n(ledger_dir: Path, tmp_path: Path) -> None:
    done = bvisor("run", "--", "/bin/sh", "-c", "kill -TERM $$", ledger=ledger_dir, cwd=tmp_path)
    assert done.returncode == 128 + signal.SIGTERM, done.stderr


def test_default_spec_has_no_network_and_a_read_only_system(
    ledger_dir: Path, tmp_path: Path
) -> None:
    require_feature("netns")
    require_feature("landlock")
    marker = unique_marker("DEFAULT")
    script = (
        f": {marker}; "
        "touch /etc/bvisor-must-not-exist 2>/dev/null && echo etc=WRITABLE || echo etc=ro; "
        "echo inside > ./written-inside; sleep 1"
    )
    seen: dict[str, str] = {}

    def watch() -> None:
        pids = wait_for(lambda: find_pids_with(marker, program="sh"), timeout=20)
        if pids:
            seen["net"] = Path(f"/proc/{pids[0]}/net/dev").read_text()  # type: ignore[index]

    watcher = threading.Thread(target=watch)
    watcher.start()
    done = bvisor("run", "--", "/bin/sh", "-c", script, ledger=ledger_dir, cwd=tmp_path)
    watcher.join()
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["etc=ro"], done.stdout
    interfaces = [line.split(":")[0].strip() for line in seen["net"].splitlines()[2:]]
    assert interfaces == ["lo"], seen["net"]
    assert not Path("/etc/bvisor-must-not-exist").exists()
    assert (tmp_path / "written-inside").read_text() == "inside\n"


def test_json_prints_one_sealed_report(ledger_dir: Path, tmp_path: Path) -> None:
    done = bvisor("run", "--json", "--", "/bin/echo", "hi", ledger=ledger_dir, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    payload = json.loads(done.stdout)
    assert payload["stdout"] == "hi\n"
    assert payload["report"]["outcome"] == "completed"
    assert len(bytes.fromhex(payload["seal"])) == 32


def test_refused_spec_exits_125_and_names_the_requirement(ledger_dir: Path) -> None:
    refused = str(EXAMPLES / "refused-network-allow-list.toml")
    done = bvisor("run", "--spec", refused, ledger=ledger_dir)
    assert done.returncode == 125
    assert "unsupported" in done.stderr and "network_allow_list" in done.stderr


def test_timeout_spec_exits_124(ledger_dir: Path) -> None:
    require_feature("cgroup2-kill")
    done = bvisor("run", "--spec", str(EXAMPLES / "budgeted-timeout.toml"), ledger=ledger_dir)
    assert done.returncode == 124, done.stderr


@pytest.mark.parametrize(
    "args, needle",
    [
        ([], "nothing to run"),
        (["--spec", "/nonexistent/spec.toml"], "spec.toml"),
        (["--lease", "broken", "--", "/bin/true"], "REF=HOSTVAR"),
        (["--lease", "tok=BVISOR_SURELY_UNSET_VAR", "--", "/bin/true"], "not set"),
    ],
)
def test_usage_mistakes_exit_2_without_traceback(
    args: list[str], needle: str, ledger_dir: Path
) -> None:
    done = bvisor("run", *args, ledger=ledger_dir)
    assert done.returncode == 2, done.stderr
    assert needle in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("signum", "status"),
    [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)],
    ids=["ctrl-c", "sigterm", "sighup"],
)
def test_interrupt_kills_the_run_tree(
    ledger_dir: Path, tmp_path: Path, signum: int, status: int
) -> None:
    require_feature("cgroup2-kill")
    marker = unique_marker("CTRLC")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bvisor.front.cli.main",
            "run",
            "--",
            "/bin/sh",
            "-c",
            f"{marked_sleep(marker, 300)} & {marked_sleep(marker, 300)}",
        ],
        cwd=tmp_path,
        env={**os.environ, "BVISOR_LEDGER": str(ledger_dir)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        # Only the workload's own shells count: the bvisor CLI's argv holds the marker too.
        assert wait_for(lambda: len(find_pids_with(marker, program="sh")) >= 2, timeout=20), (
            "workload never started"
        )
        proc.send_signal(signum)
        proc.wait(timeout=20)
        gone = wait_for(lambda: not find_pids_with(marker, program="sh"), timeout=10)
        assert gone, f"run tree survived {signum}: {find_pids_with(marker, program='sh')}"
        assert proc.returncode == status, proc.stderr.read() if proc.stderr else ""
        with Ledger.open(ledger_dir, readonly=True) as store:
            kinds = [event.kind for event in store.events()]
            sealed = [event for event in store.events() if event.kind == "report.sealed"]
            audit = replay.audit(store)
        assert [run.verdict for run in audit.runs] == ["verified"], audit.to_json()
        assert kinds[0] == "plan.admitted" and kinds[-1] == "report.sealed", kinds
        assert sealed[0].payload["body"]["outcome"] == "killed"
        facts = {f["kind"]: f["detail"] for f in sealed[0].payload["body"]["observed"]}
        assert signal.Signals(signum).name in facts["host_interrupted"]
        # The command says which run it recorded (before: only "interrupted").
        run_id = sealed[0].run_id
        assert run_id is not None and proc.stderr is not None
        said = proc.stderr.read().decode()
        assert "bvisor: killed (no exit)" in said and f"run {run_id.hex()[:16]}" in said, said
    finally:
        if proc.poll() is None:
            proc.kill()
        for pid in find_pids_with(marker):
            os.kill(pid, signal.SIGKILL)
        time.sleep(0)


def test_a_stopped_json_run_still_prints_its_report(ledger_dir: Path, tmp_path: Path) -> None:
    """Found by attack: ``bvisor run --json`` stopped by SIGTERM printed nothing on stdout,
    though the run was sealed and recorded as killed. It prints the report it recorded
    (exit_status 143), as a script reading stdout expects a document."""
    marker = unique_marker("JSONSTOP")
    proc = subprocess.Popen(
        [sys.executable, "-m", "bvisor.front.cli.main", "run", "--json", "--", "/bin/sh", "-c",
         marked_sleep(marker, 300)],
        cwd=tmp_path,
        env={**os.environ, "BVISOR_LEDGER": str(ledger_dir), "BVISOR_SERVE": "0"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert wait_for(lambda: find_pids_with(marker, program="sh"), timeout=20)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err
    doc = json.loads(out)
    assert doc["exit_status"] == 143 and doc["report"]["outcome"] == "killed", doc
    with Ledger.open(ledger_dir, readonly=True) as store:
        (sealed,) = [e for e in store.events() if e.kind == "report.sealed"]
    assert sealed.run_id is not None and doc["report"]["attempt_id"] == sealed.run_id.hex()


def test_default_spec_cannot_reach_a_host_daemon_socket(ledger_dir: Path, tmp_path: Path) -> None:
    """Landlock does not cover connect() on pathname sockets; the socket rule must."""
    require_feature("seccomp")
    import socket

    path = tmp_path / "daemon.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)
    listener.settimeout(0.5)
    probe = (
        "import socket\n"
        "try:\n"
        "    s = socket.socket(socket.AF_UNIX)\n"
        f"    s.connect({str(path)!r})\n"
        "    print('CONNECTED')\n"
        "except OSError as e:\n"
        "    print('refused', e.errno)\n"
    )
    try:
        done = bvisor("run", "--", "/usr/bin/python3", "-c", probe, ledger=ledger_dir, cwd=tmp_path)
        try:
            listener.accept()[0].close()
            accepted = True
        except TimeoutError:
            accepted = False
    finally:
        listener.close()
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("refused"), done.stdout
    assert not accepted, "the host daemon saw a connection from the workload"
