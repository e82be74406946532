"""``bvisor serve`` seen from outside: the run it makes is the run the caller would have made.

Every test starts its own service in a private runtime directory (``XDG_RUNTIME_DIR``
under ``tmp_path``), so no service of the user's is touched. The oracles: the plan id
(a served run and a run in the command's own process have the same plan), the process
tree in ``/proc`` (whose child the run's launcher was), the ledger, exit statuses and
the kernel's account of what is still alive.
"""

from __future__ import annotations

import json
import os
import pty
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bvisor.ledger import Ledger
from tests.e2e.helpers import find_pids_with, unique_marker, wait_for
from tests.features import require_feature

REPO = Path(__file__).resolve().parents[2]
_RESIDENT_NOTE = re.compile(r"resident launcher pid=(\d+)")


class Service:
    def __init__(self, env: dict[str, str], process: subprocess.Popen[str], pid: int) -> None:
        self.env = env
        self.process = process
        self.pid = pid

    def bvisor(self, *args: str, cwd: Path, **kwargs: object) -> subprocess.CompletedProcess[str]:
        """``bvisor ARGS`` as a command (the path a user types: the service is asked)."""
        return subprocess.run(
            [sys.executable, "-c", _COMMAND, *args],
            cwd=cwd,
            env=kwargs.pop("env", self.env),  # type: ignore[arg-type]
            stdin=kwargs.pop("stdin", subprocess.DEVNULL),  # type: ignore[arg-type]
            capture_output=True,
            text=True,
            timeout=120,
            **kwargs,  # type: ignore[arg-type]
        )


# What the console script does: main() with no argv, so the command-line path is taken.
_COMMAND = (
    "import sys; from bvisor.front.cli.main import main; sys.argv[0] = 'bvisor'; sys.exit(main())"
)


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BVISOR_")}
    env.update(
        XDG_RUNTIME_DIR=str(runtime),
        BVISOR_SERVE="1",
        PYTHONPATH=str(REPO),
        **extra,
    )
    return env


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    env = _env(tmp_path)
    process = subprocess.Popen(
        [sys.executable, "-m", "bvisor.front.cli.main", "serve", "--idle", "60", "--json"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line, process.stderr.read() if process.stderr else "no output"
    pid = int(json.loads(line)["pid"])
    assert pid == process.pid
    yield Service(env, process, pid)
    _stop(process)


def _work(tmp_path: Path) -> Path:
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    return work


def _true_command(
    work: Path, env: dict[str, str], timeout: int
) -> subprocess.CompletedProcess[str]:
    """``bvisor run --no-record -- /bin/true`` as a command from ``work`` (stdin closed)."""
    return subprocess.run(
        [sys.executable, "-c", _COMMAND, "run", "--no-record", "--", "/bin/true"],
        cwd=work,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _ledger_runs(path: Path) -> list[dict[str, object]]:
    runs: dict[bytes, dict[str, object]] = {}
    with Ledger.open(path, readonly=True) as store:
        for event in store.events():
            run = runs.setdefault(event.run_id or b"", {"lines": []})
            if event.kind == "plan.admitted":
                run["plan_id"] = event.payload["plan_id"]  # type: ignore[index]
            elif event.kind == "launcher.phase":
                run["lines"].append(event.payload["line"])  # type: ignore[index,union-attr]
            elif event.kind == "report.sealed":
                run["outcome"] = event.payload["body"]["outcome"]  # type: ignore[index]
    return [r for r in runs.values() if "plan_id" in r]


def _resident_pid(run: dict[str, object]) -> int:
    for line in run["lines"]:  # type: ignore[attr-defined]
        match = _RESIDENT_NOTE.search(line)
        if match:
            return int(match.group(1))
    raise AssertionError("the run names no resident launcher")


def _ppid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def test_a_served_run_is_the_run_the_command_would_have_made(
    service: Service, tmp_path: Path
) -> None:
    work, ledger = _work(tmp_path), tmp_path / "ledger"
    script = "echo out; echo err >&2; pwd; exit 3"
    served = service.bvisor(
        "run",
        "--ledger",
        str(ledger),
        "--",
        "/bin/sh",
        "-c",
        script,
        cwd=work,
        env={**service.env, "BVISOR_SERVE": "require"},  # not served: fail, saying why
    )
    here = service.bvisor(
        "run",
        "--ledger",
        str(ledger),
        "--",
        "/bin/sh",
        "-c",
        script,
        cwd=work,
        env={**service.env, "BVISOR_SERVE": "0"},
    )
    for done in (served, here):
        assert done.returncode == 3, done.stderr
        assert done.stdout == f"out\n{work}\n"
        assert done.stderr.startswith("err\n") and "bvisor: failed (exit=3)" in done.stderr
    first, second = _ledger_runs(ledger)
    # The same plan, digest for digest: the service ran exactly what the command asked.
    assert first["plan_id"] == second["plan_id"]
    # Whose launcher ran it: the service's resident for the first, the command's own second.
    assert _ppid(_resident_pid(first)) == service.pid
    assert _resident_pid(second) != _resident_pid(first)


def test_usage_mistakes_and_refusals_keep_their_status(service: Service, tmp_path: Path) -> None:
    work = _work(tmp_path)
    nothing = service.bvisor("run", "--no-record", cwd=work)
    assert nothing.returncode == 2 and "nothing to run" in nothing.stderr
    spec = work / "fd.toml"
    spec.write_text(
        textwrap.dedent(
            """
            [workload]
            exe = "/bin/true"
            [[capability]]
            type = "inherited_fds"
            only = [3]
            [[control]]
            type = "launch_workload"
            """
        )
    )
    # fd 3 is not open in the command (the service's copy has fds of its own there or
    # above): refused as the command would refuse it, before anything runs.
    kept = service.bvisor("run", "--no-record", "--spec", str(spec), cwd=work)
    assert kept.returncode == 2, kept.stderr
    assert "fd 3, which was not open when bvisor started" in kept.stderr


def test_stop_signals_are_forwarded_and_the_run_is_sealed(service: Service, tmp_path: Path) -> None:
    work, ledger = _work(tmp_path), tmp_path / "ledger"
    marker = unique_marker("SERVED")
    command = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _COMMAND,
            "run",
            "--ledger",
            str(ledger),
            "--",
            "/bin/sh",
            "-c",
            f": {marker}; sleep 60",
        ],
        cwd=work,
        env=service.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert wait_for(lambda: find_pids_with(marker, program="sh"), timeout=30)
        workload = find_pids_with(marker, program="sh")
        command.send_signal(signal.SIGTERM)
        _out, err = command.communicate(timeout=30)
    finally:
        if command.poll() is None:
            command.kill()
    assert command.returncode == 128 + signal.SIGTERM, err
    assert wait_for(lambda: not any(Path(f"/proc/{p}").exists() for p in workload), timeout=10)
    (run,) = _ledger_runs(ledger)
    assert run["outcome"] == "killed"


def test_a_vanished_command_has_its_run_stopped(service: Service, tmp_path: Path) -> None:
    work, ledger = _work(tmp_path), tmp_path / "ledger"
    marker = unique_marker("ORPHAN")
    command = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _COMMAND,
            "run",
            "--ledger",
            str(ledger),
            "--",
            "/bin/sh",
            "-c",
            f": {marker}; sleep 60",
        ],
        cwd=work,
        env=service.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    assert wait_for(lambda: find_pids_with(marker, program="sh"), timeout=30)
    command.kill()
    command.wait()
    assert wait_for(lambda: not find_pids_with(marker, program="sh"), timeout=20)
    assert wait_for(
        lambda: _ledger_runs(ledger) and "outcome" in _ledger_runs(ledger)[0], timeout=20
    )
    assert _ledger_runs(ledger)[0]["outcome"] == "killed"


def test_a_caller_in_another_context_runs_in_its_own_process(
    service: Service, tmp_path: Path
) -> None:
    work, ledger = _work(tmp_path), tmp_path / "ledger"
    # A terminal on stdin: its signals and job control belong to the command.
    leader, follower = pty.openpty()
    try:
        done = service.bvisor(
            "run", "--ledger", str(ledger), "--", "/bin/true", cwd=work, stdin=follower
        )
    finally:
        os.close(leader)
        os.close(follower)
    assert done.returncode == 0, done.stderr
    (run,) = _ledger_runs(ledger)
    assert _ppid_of_gone_or_not_service(_resident_pid(run), service.pid)


def _ppid_of_gone_or_not_service(pid: int, service_pid: int) -> bool:
    try:
        return _ppid(pid) != service_pid
    except OSError:
        return True  # the command's own resident left with the command


def test_the_service_refuses_a_caller_whose_namespaces_differ(
    service: Service, tmp_path: Path
) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to enter a new network namespace without a user namespace")
    probe = textwrap.dedent(
        """
        import os, socket, sys
        from bvisor.front.service import paths, wire
        directory = paths.private_dir(paths.service_dir(), create=False)
        token, proof_fd = paths.read_token(directory)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        sock.connect(os.path.join(directory, paths.SOCKET_NAME))
        mine = os.memfd_create(paths.PROOF_NAME + "00" * 16)
        message = {"v": wire.VERSION, "token": token.hex(),
                   "proof": paths.proof_nonce(SERVICE_PID, proof_fd), "hello": mine}
        socket.send_fds(sock, [wire.encode(message)], [])
        print(sock.recv(65536).decode())
        """
    )
    probe = probe.replace("SERVICE_PID", str(service.pid))
    out = subprocess.run(
        ["unshare", "--net", sys.executable, "-c", probe],
        cwd=tmp_path,
        env=service.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    answer = json.loads(out.stdout)
    assert "net namespace" in answer.get("refused", ""), answer


def _ask_raw(service: Service, cwd: Path, message: str) -> dict[str, object]:
    """The service's answer to one message sent as it is, with no fds: ``message`` is a
    Python expression for its bytes, evaluated by the asking process (where ``wire`` is
    imported)."""
    probe = textwrap.dedent(
        f"""
        import os, socket
        from bvisor.front.service import paths, wire
        directory = paths.private_dir(paths.service_dir(), create=False)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        sock.connect(os.path.join(directory, paths.SOCKET_NAME))
        socket.send_fds(sock, [{message}], [])
        print(sock.recv(65536).decode())
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=cwd,
        env=service.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    answer = json.loads(out.stdout)
    assert isinstance(answer, dict)
    return answer


def test_a_wrong_token_is_refused(service: Service, tmp_path: Path) -> None:
    answer = _ask_raw(
        service, tmp_path, 'wire.encode({"v": 1, "token": "00" * 32, "status": True})'
    )
    assert "token does not match" in str(answer["refused"])


def _plans(service: Service, tmp_path: Path) -> tuple[int, int]:
    """(plans the service's copies made themselves, plans it made for them)."""
    done = service.bvisor("serve", "--status", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    view = json.loads(done.stdout)
    return view["planned_by_copies"], view["planned_for_copies"]


def _plan_id(done: subprocess.CompletedProcess[str]) -> str:
    match = re.search(r"; plan ([0-9a-f]{16}) ", done.stderr)
    assert match, done.stderr
    return match.group(1)


def test_a_spec_one_command_planned_is_planned_for_the_next_by_the_service(
    service: Service, tmp_path: Path
) -> None:
    """Oracle: the service's count of the specs its copies had to plan themselves. A copy
    that inherits the plan the service made from what the first one told plans nothing
    (the learner skipped: the second copy plans again and the count is 2)."""
    work, elsewhere = _work(tmp_path), tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert _plans(service, tmp_path) == (0, 0)
    first = _true_command(work, {**service.env, "BVISOR_SERVE": "require"}, 60)
    assert first.returncode == 0, first.stderr
    assert _plans(service, tmp_path)[0] == 1
    assert wait_for(lambda: _plans(service, tmp_path) == (1, 1), timeout=20)
    second = _true_command(work, {**service.env, "BVISOR_SERVE": "require"}, 60)
    assert second.returncode == 0, second.stderr
    assert _plans(service, tmp_path) == (1, 1)  # planned by nobody but the service
    # The plan the copy found is the plan a command of its own makes, digest for digest.
    alone = _true_command(work, {**service.env, "BVISOR_SERVE": "0"}, 60)
    assert _plan_id(first) == _plan_id(second) == _plan_id(alone)
    # Another write root is another spec: its copy plans it, and tells.
    third = _true_command(elsewhere, {**service.env, "BVISOR_SERVE": "require"}, 60)
    assert third.returncode == 0, third.stderr
    assert _plan_id(third) != _plan_id(first)
    assert wait_for(lambda: _plans(service, tmp_path) == (2, 2), timeout=20)


def test_status_and_stop(service: Service, tmp_path: Path) -> None:
    status = service.bvisor("serve", "--status", "--json", cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["pid"] == service.pid
    stop = service.bvisor("serve", "--stop", "--json", cwd=tmp_path)
    assert stop.returncode == 0 and json.loads(stop.stdout)["stopping"]
    assert service.process.wait(timeout=20) == 0
    socket_path = Path(service.env["XDG_RUNTIME_DIR"]) / "bvisor" / "serve.sock"
    assert not socket_path.exists()
    gone = service.bvisor("serve", "--status", "--json", cwd=tmp_path)
    assert gone.returncode == 1 and json.loads(gone.stdout)["running"] is False


def test_an_idle_service_leaves(tmp_path: Path) -> None:
    env = _env(tmp_path)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "bvisor.front.cli.main", "serve", "--idle", "1", "--quiet"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 30


def _serve_refused(cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``bvisor serve --idle 1`` run to its end (a refused place ends it at once)."""
    return subprocess.run(
        [sys.executable, "-m", "bvisor.front.cli.main", "serve", "--idle", "1"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_directory_others_can_enter_is_never_used(tmp_path: Path) -> None:
    env = _env(tmp_path)
    shared = Path(env["XDG_RUNTIME_DIR"]) / "bvisor"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    serve = _serve_refused(tmp_path, env)
    assert serve.returncode == 1 and "not a directory owned by" in serve.stderr
    assert list(shared.iterdir()) == []
    # A command there runs in its own process, and starts no service in that directory.
    work = _work(tmp_path)
    done = _true_command(work, env, timeout=120)
    assert done.returncode == 0, done.stderr
    time.sleep(1)
    assert list(shared.iterdir()) == []


@pytest.mark.parametrize("how", ["writable-parent", "linked-parent"])
def test_a_place_another_user_could_change_is_never_made_or_used(tmp_path: Path, how: str) -> None:
    """A HOME in a tree another user can change (``sudo -E``): that user's
    ``~/.cache`` writable by others, or ``~/.cache/bvisor`` a link to a directory of
    their choosing, must not have this user's service make its directory there or
    listen in it. The oracle is the disk: nothing is made below the place, and the
    service says why and exits 1."""
    home = tmp_path / "home"
    cache = home / ".cache"
    cache.mkdir(parents=True)
    target = tmp_path / "theirs" / "chosen"
    target.mkdir(parents=True)
    if how == "writable-parent":
        cache.chmod(0o777)  # what another user's own directory is to us
        place = cache
    else:
        (tmp_path / "theirs").chmod(0o777)
        (cache / "bvisor").symlink_to(target)
        place = target
    env = _env(tmp_path, HOME=str(home))
    del env["XDG_RUNTIME_DIR"]
    serve = _serve_refused(tmp_path, env)
    assert serve.returncode == 1, (serve.stdout, serve.stderr)
    assert "another user could re-point it" in serve.stderr
    assert list(place.iterdir()) == []


def test_a_command_with_no_service_starts_one_for_next_time(tmp_path: Path) -> None:
    env = _env(tmp_path)
    work = _work(tmp_path)
    done = _true_command(work, env, timeout=120)
    assert done.returncode == 0, done.stderr
    status = [sys.executable, "-m", "bvisor.front.cli.main", "serve", "--status", "--json"]
    try:
        assert wait_for(
            lambda: subprocess.run(status, env=env, capture_output=True).returncode == 0,
            timeout=60,
        )
    finally:
        subprocess.run(
            [sys.executable, "-m", "bvisor.front.cli.main", "serve", "--stop"],
            env=env,
            capture_output=True,
        )


def test_require_says_why_a_command_is_not_served(tmp_path: Path) -> None:
    """``BVISOR_SERVE=require`` with no service: exit 125 and the reason, nothing run."""
    work = _work(tmp_path)
    env = {**_env(tmp_path), "BVISOR_SERVE": "require"}
    done = _true_command(work, env, timeout=60)
    assert done.returncode == 125, done.stderr
    assert "bvisor: not served: no service is running" in done.stderr
    assert "completed" not in done.stderr  # the command did not run itself


# A module that, imported from the directory it lies in, leaves a mark outside every
# boundary and then hands over the real module (so the importer keeps working).
_PLANTED = """\
open({mark!r} + "-" + __name__, "w").write("ran unconfined")
import importlib, sys
del sys.modules[__name__]
_here = sys.path.pop(0)
try:
    globals().update(vars(importlib.import_module(__name__)))
finally:
    sys.path.insert(0, _here)
"""
# Modules every Python process has imported before it could look in a planted directory.
_CORE = {
    "os",
    "sys",
    "site",
    "codecs",
    "encodings",
    "io",
    "abc",
    "stat",
    "posixpath",
    "genericpath",
    "types",
    "importlib",
    "warnings",
    "enum",
    "functools",
    "operator",
    "keyword",
    "reprlib",
    "collections",
    "re",
    "copyreg",
    "builtins",
    "marshal",
    "posix",
    "zipimport",
    "time",
    "errno",
    "itertools",
    "heapq",
    "weakref",
    "contextlib",
    "typing",
}


def test_the_service_imports_nothing_from_the_directory_it_was_started_in(tmp_path: Path) -> None:
    """A command with no service starts one in its own working directory — the run's write
    root by default. Started as ``python -m``, the service had that directory first on
    ``sys.path``, so a module the workload left there (``base64.py``) was imported by a
    later served command's copy: the workload's code ran as the caller, unconfined. The
    oracle: the marks such modules leave outside the run's roots."""
    env = _env(tmp_path)
    work = _work(tmp_path)
    planted = work / "planted"
    planted.mkdir()
    mark = str(tmp_path / "PWNED")
    for name in sys.stdlib_module_names:
        if not name.startswith("_") and name not in _CORE:
            (planted / f"{name}.py").write_text(_PLANTED.format(mark=mark))
    done = subprocess.run(
        [sys.executable, "-c", _COMMAND, "run", "--no-record", "--", "/bin/sh", "-c",
         "cp planted/*.py ."],
        cwd=work, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (work / "base64.py").exists()  # the workload could write there
    assert sorted(p.name for p in tmp_path.glob("PWNED*")) == []
    status = [sys.executable, "-m", "bvisor.front.cli.main", "serve", "--status", "--json"]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    try:
        assert wait_for(
            lambda: (
                subprocess.run(status, env=env, cwd=elsewhere, capture_output=True).returncode == 0
            ),
            timeout=60,
        )
        for args in (["--json", "--no-record"], ["--ledger", str(tmp_path / "ledger")], []):
            ran = subprocess.run(
                [sys.executable, "-c", _COMMAND, "run", *args, "--", "/bin/true"],
                cwd=elsewhere, env={**env, "BVISOR_LEDGER": str(tmp_path / "default")},
                stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
            )  # fmt: skip
            assert ran.returncode == 0, ran.stderr
    finally:
        subprocess.run(
            [sys.executable, "-m", "bvisor.front.cli.main", "serve", "--stop"],
            env=env,
            cwd=elsewhere,
            capture_output=True,
        )
    assert sorted(p.name for p in tmp_path.glob("PWNED*")) == []


@pytest.mark.parametrize("where", ["run", "."])
def test_a_root_over_the_service_directory_is_refused(
    service: Service, tmp_path: Path, where: str
) -> None:
    """Run from the directory that holds the service's (the runtime dir, or ``~/.cache``
    without one) or from above it, the default workload would have
    the service's token and socket read-write: it copied the token out and could put its
    own socket under the name. The run is refused, naming the directory; the oracle is
    the copy the workload would have left in its working directory."""
    cwd = (tmp_path / where).resolve()
    stolen = cwd / "stolen-token"
    done = service.bvisor(
        "run", "--no-record", "--", "/bin/sh", "-c",
        "cp run/bvisor/serve.token stolen-token 2>/dev/null"
        " || cp bvisor/serve.token stolen-token",
        cwd=cwd,
    )  # fmt: skip
    assert done.returncode == 2, (done.stdout, done.stderr)  # a usage mistake, as the ledger's
    assert "directory of your bvisor service" in done.stderr and "bvisor" in done.stderr
    assert not stolen.exists()
    # From a directory beside it, the same command runs.
    work = _work(tmp_path)
    done = service.bvisor("run", "--no-record", "--", "/bin/true", cwd=work)
    assert done.returncode == 0, done.stderr


def test_without_a_runtime_dir_the_service_lives_in_home_not_tmp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No XDG_RUNTIME_DIR: the service's directory is ``~/.cache/bvisor/serve``, made
    private with its parent — never a predictable name in ``/tmp``, which another user
    could take first and which a run from ``/tmp`` is given read-write."""
    from bvisor.front.service import paths

    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    where = paths.service_dir()
    assert where == str(tmp_path / ".cache" / "bvisor" / "serve")
    assert not where.startswith("/tmp/bvisor-")
    assert paths.private_dir(where, create=True) == where
    for made in (tmp_path / ".cache" / "bvisor", tmp_path / ".cache" / "bvisor" / "serve"):
        assert made.stat().st_mode & 0o077 == 0, made
    assert paths.service_dirs() == (where,)


def test_the_wire_is_json_as_the_json_module_writes_and_reads_it() -> None:
    """The wire uses ``json``'s C half directly (the thin client imports no ``json``):
    the bytes are exactly ``json.dumps``', and reading refuses what is not one object."""
    from bvisor.front.service import wire

    message: dict[str, object] = {
        "v": 1,
        "argv": ["run", "--", "/bin/echo", "caf\u00e9", "\udcff", 'q"\\\n'],
        "env": [["A", "1"], ["B", ""]],
        "fds": [0, 1, 2],
        "stop": True,
        "none": None,
    }
    encoded = wire.encode(message)
    assert encoded == json.dumps(message, separators=(",", ":")).encode("ascii")
    assert wire.decode(encoded) == message
    for bad in (b"", b"[1]", b'{"a":1} ', b'{"a":1}{}', b'{"a":NaN}', b"\xff", b"[" * 100_000):
        with pytest.raises(wire.WireError):
            wire.decode(bad)


def test_a_message_nested_past_the_recursion_limit_is_refused_not_fatal(
    service: Service, tmp_path: Path
) -> None:
    """Before its token is checked, a message is parsed: one nested deeper than the
    interpreter's recursion limit used to end the service (RecursionError is no
    ValueError). It is refused like any other bad message, and the service stays."""
    answer = _ask_raw(service, tmp_path, 'b"[" * 200_000')
    assert "not a JSON message" in str(answer["refused"])
    status = service.bvisor("serve", "--status", "--json", cwd=tmp_path)
    assert status.returncode == 0 and json.loads(status.stdout)["pid"] == service.pid


def _start_service(tmp_path: Path, env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    """A service started by hand with ``env``, from ``cwd``; it has answered once it returns."""
    process = subprocess.Popen(
        [sys.executable, "-m", "bvisor.front.cli.main", "serve", "--idle", "60", "--json"],
        cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    assert process.stdout.readline(), process.stderr.read() if process.stderr else "no output"
    return process


def _stop(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def test_a_run_whose_root_covers_the_service_import_path_is_refused_when_served(
    tmp_path: Path,
) -> None:
    """Found by attack: the host exempted ``sys.path[0]`` (a script's or ``-m``'s
    directory) from its code-reach check, but the service runs with ``-P`` or forgets
    that entry, so its ``sys.path[0]`` is the first ``PYTHONPATH`` directory. A served run
    whose write root covered it was accepted (unserved it is refused), its workload left
    modules there, and the next command's copy imported them, unconfined. Oracle: the
    marks such modules leave outside the run's roots, and the refusal, served and not."""
    work = _work(tmp_path)
    lib = work / "lib"
    lib.mkdir()
    env = {**_env(tmp_path), "PYTHONPATH": f"{lib}:{REPO}", "BVISOR_SERVE": "require"}
    process = _start_service(tmp_path, {**env, "BVISOR_SERVE": "1"}, tmp_path)
    mark = str(tmp_path / "PWNED")
    try:
        for serve in ("require", "0"):
            done = subprocess.run(
                [sys.executable, "-c", _COMMAND, "run", "--no-record", "--", "/bin/sh", "-c",
                 f"echo 'open({mark!r}, \"w\")' > lib/cffi.py"],
                cwd=work, env={**env, "BVISOR_SERVE": serve}, stdin=subprocess.DEVNULL,
                capture_output=True, text=True, timeout=120,
            )  # fmt: skip
            assert done.returncode == 2, (serve, done.stderr)
            assert "code the host runs" in done.stderr, (serve, done.stderr)
            assert not (lib / "cffi.py").exists()
    finally:
        _stop(process)
    assert not Path(mark).exists()


def test_a_command_of_another_install_or_environment_is_not_served(tmp_path: Path) -> None:
    """Found by attack: a service served every command of its user, whichever bvisor or
    environment the command was, so a command of another install (a second checkout, an
    upgrade into a new environment) ran the service's code, and a command without the
    ``PYTHONPATH`` the service was started with imported from it all the same. The
    service now serves only a command whose interpreter, bvisor package, prefix, import
    path and PYTHON*/LD_* environment are its own. Oracle: BVISOR_SERVE=require's
    answer, and the service's process tree (no copy of it ran the command)."""
    work = _work(tmp_path)
    env = _env(tmp_path)
    process = _start_service(tmp_path, env, tmp_path)
    try:
        same = _true_command(work, {**env, "BVISOR_SERVE": "require"}, timeout=120)
        assert same.returncode == 0, same.stderr
        for extra in ({"PYTHONPATH": f"{tmp_path}:{REPO}"}, {"PYTHONNOUSERSITE": "1"}):
            other = _true_command(work, {**env, **extra, "BVISOR_SERVE": "require"}, 120)
            assert other.returncode == 125, (extra, other.stderr)
            assert "the caller is another bvisor" in other.stderr, other.stderr
            assert "import path" in other.stderr or "env differ" in other.stderr, other.stderr
            itself = _true_command(work, {**env, **extra, "BVISOR_SERVE": "1"}, 120)
            assert itself.returncode == 0, itself.stderr  # it ran in its own process
    finally:
        _stop(process)


# A caller in a Landlock domain that allows no writes, speaking to the service itself
# (bvisor's client would stop at its own checks): everything a request needs, and the
# proof if it can read it (it cannot), asking for a run that writes WHERE.
_CAGED_CALLER = """
import ctypes, json, os, socket, sys
libc = ctypes.CDLL(None, use_errno=True)
WRITES = (1 << 1) | (1 << 4) | (1 << 6) | (1 << 7) | (1 << 8) | (1 << 9) | (1 << 11)
attr = ctypes.c_uint64(WRITES)
ruleset = libc.syscall(444, ctypes.byref(attr), ctypes.sizeof(attr), 0)
assert ruleset >= 0 and libc.prctl(38, 1, 0, 0, 0) == 0 and libc.syscall(446, ruleset, 0) == 0
try:
    open(WHERE + ".direct", "w")
    sys.exit("the cage lets writes through")
except PermissionError:
    pass
from bvisor.front.service import paths, wire
from bvisor.front.service.install import install_identity
extra = {"install": install_identity(start_directory_first=True)}
directory = paths.private_dir(paths.service_dir(), create=False)
read = paths.read_token(directory)
token, proof_fd = read if isinstance(read, tuple) else (read, -1)
proof = paths.proof_nonce(SERVICE_PID, proof_fd)
sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
sock.connect(os.path.join(directory, paths.SOCKET_NAME))
fds = [0, 1, 2]
message = {"v": wire.VERSION, "token": token.hex(), "proof": proof or "",
           "argv": ["run", "--no-record", "--spec", SPEC],
           "env": sorted([k, v] for k, v in os.environ.items()), "umask": 18, "fds": fds,
           "encoding": [sys.getfilesystemencoding(), "utf-8"], **extra}
socket.send_fds(sock, [wire.encode(message)], [os.open(".", os.O_PATH), *fds])
print(json.dumps({"proof": proof, "answer": wire.decode(sock.recv(65536))}))
"""


def test_a_caller_in_a_landlock_domain_is_not_served(tmp_path: Path) -> None:
    """Found by attack: ``/proc`` shows no Landlock domain, and with the service under
    ``no_new_privs`` too nothing it compared differed, so a caller in a domain that
    allows no writes that spoke to the service itself (skipping the client's checks)
    was served, and its run wrote where the caller may not. The service now serves only
    a caller that read the nonce in its proof fd's name, which the kernel refuses a
    process in a domain the service is not in. Oracles: the cage's own refused write,
    and the file the served run would have made."""
    require_feature("landlock")
    env = _env(tmp_path)
    process = subprocess.Popen(
        [sys.executable, "-m", "bvisor.front.cli.main", "serve", "--idle", "60", "--json"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=_no_new_privs,
    )  # fmt: skip
    assert process.stdout is not None and process.stdout.readline()
    where = tmp_path / "ESCAPED"
    spec = tmp_path / "nofs.toml"  # no filesystem capability: no confinement asked of it
    spec.write_text(
        f'[workload]\nexe = "/bin/sh"\nargs = ["-c", "touch {where}"]\n'
        '[[control]]\ntype = "launch_workload"\n'
    )
    caller = (
        _CAGED_CALLER.replace("SERVICE_PID", str(process.pid))
        .replace("WHERE", repr(str(where)))
        .replace("SPEC", repr(str(spec)))
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", caller], cwd=tmp_path, env=env, capture_output=True,
            text=True, timeout=120, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        said = json.loads(done.stdout.splitlines()[-1])
        assert said["proof"] is None, said  # the kernel kept the proof from the cage
        assert "could not inspect the service" in said["answer"].get("refused", ""), said
        time.sleep(1)
    finally:
        _stop(process)
    assert not where.exists(), "the caged caller's run wrote outside its domain"


def _no_new_privs() -> None:
    import ctypes

    assert ctypes.CDLL(None).prctl(38, 1, 0, 0, 0) == 0  # PR_SET_NO_NEW_PRIVS


def _filter(program: list[tuple[int, int, int, int]]) -> None:
    """no_new_privs, then a seccomp filter of ``program`` (classic BPF) on this process."""
    import ctypes
    import struct as layout

    libc = ctypes.CDLL(None, use_errno=True)
    code = b"".join(layout.pack("HBBI", *insn) for insn in program)
    buffer = ctypes.create_string_buffer(code)

    class Prog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    prog = Prog(len(program), ctypes.cast(buffer, ctypes.c_void_p))
    assert libc.prctl(38, 1, 0, 0, 0) == 0  # PR_SET_NO_NEW_PRIVS
    assert libc.prctl(22, 2, ctypes.byref(prog), 0, 0) == 0  # PR_SET_SECCOMP, MODE_FILTER


_ALLOW = 0x7FFF0000
_ALLOW_ALL = [(0x06, 0, 0, _ALLOW)]
# mkdir (83) and mkdirat (258) answer EPERM, everything else is allowed (x86_64 numbers).
_NO_MKDIR = [
    (0x20, 0, 0, 0),
    (0x15, 2, 0, 83),
    (0x15, 1, 0, 258),
    (0x06, 0, 0, _ALLOW),
    (0x06, 0, 0, 0x00050001),
]


def test_a_caller_under_a_seccomp_filter_is_not_served(tmp_path: Path) -> None:
    """Found by attack: only the seccomp *mode* was compared, so a caller under a filter
    forbidding mkdir was served by a service under another filter, and its run made the
    directory. Which filters a process is under cannot be read from ``/proc``, so a
    caller (or service) in filter mode is never served. Oracles: the caller's own refused
    mkdir, and the directory the served run would have made."""
    import platform

    if platform.machine() != "x86_64":
        pytest.skip("the test's filters use x86_64 syscall numbers")
    env = _env(tmp_path)
    process = subprocess.Popen(
        [sys.executable, "-m", "bvisor.front.cli.main", "serve", "--idle", "60", "--json"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: _filter(_ALLOW_ALL),
    )  # fmt: skip
    assert process.stdout is not None and process.stdout.readline()
    work = _work(tmp_path)
    try:
        caged = subprocess.run(
            ["/bin/mkdir", "direct"], cwd=work, capture_output=True,
            preexec_fn=lambda: _filter(_NO_MKDIR),
        )  # fmt: skip
        assert caged.returncode != 0 and not (work / "direct").exists()  # the filter holds
        done = subprocess.run(
            [sys.executable, "-c", _COMMAND, "run", "--no-record", "--", "/bin/mkdir", "made"],
            cwd=work, env={**env, "BVISOR_SERVE": "require"}, stdin=subprocess.DEVNULL,
            capture_output=True, text=True, timeout=120, preexec_fn=lambda: _filter(_NO_MKDIR),
        )  # fmt: skip
        assert done.returncode == 125, done.stderr
        assert "seccomp filter mode" in done.stderr, done.stderr
    finally:
        _stop(process)
    assert not (work / "made").exists(), "the caller's run escaped its seccomp filter"


def test_a_command_whose_service_dies_returns_its_run_status_once_the_run_is_over(
    tmp_path: Path,
) -> None:
    """Found by attack: with the service killed mid-run the command exited 125 at once
    while its run went on, writing into the caller's stdout after the caller moved on,
    and sealing its real status in the ledger. The copy now tells the client its status
    itself, and a client told nothing waits for the copy to be gone. Oracles: the
    command's status, and the caller's stdout file as the command returns."""
    env = _env(tmp_path)
    process = _start_service(tmp_path, env, tmp_path)
    work = _work(tmp_path)
    out = tmp_path / "out"
    marker = unique_marker("SERVICE-DIES")
    try:
        with out.open("w") as stdout:
            command = subprocess.Popen(
                [sys.executable, "-c", _COMMAND, "run", "--no-record", "--", "/bin/sh", "-c",
                 f": {marker}; sleep 3; echo done; exit 7"],
                cwd=work, env={**env, "BVISOR_SERVE": "require"}, stdin=subprocess.DEVNULL,
                stdout=stdout, stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
            assert wait_for(lambda: find_pids_with(marker, program="sh"), timeout=30)
            process.kill()
            process.wait()
            _, err = command.communicate(timeout=60)
            written = out.read_text()
    finally:
        _stop(process)
    assert command.returncode == 7, err
    assert written == "done\n", (written, err)


# A process of the user's posing as the service from inside a Landlock domain: it makes
# the service's directory, token and socket first (as a sandbox allowed to write there
# could), then enters a domain allowing no writes, answers one caller's hello with what it
# can read of the caller's proof fd, and says whether the caller's environment reached it.
_IMPOSTOR = """
import ctypes, os, socket, sys
from bvisor.front.service import paths, wire
directory = paths.private_dir(paths.service_dir(), create=True)
nonce = os.urandom(16).hex()
proof = os.memfd_create(paths.PROOF_NAME + nonce)
token = os.open(os.path.join(directory, paths.TOKEN_NAME), os.O_WRONLY | os.O_CREAT, 0o600)
os.write(token, b"t" * paths.TOKEN_BYTES + str(proof).encode())
os.close(token)
listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
listener.bind(os.path.join(directory, paths.SOCKET_NAME))
listener.listen(1)
libc = ctypes.CDLL(None, use_errno=True)
attr = ctypes.c_uint64((1 << 1) | (1 << 4) | (1 << 6) | (1 << 7) | (1 << 8) | (1 << 11))
ruleset = libc.syscall(444, ctypes.byref(attr), ctypes.sizeof(attr), 0)
if NNP:
    assert libc.prctl(38, 1, 0, 0, 0) == 0
assert ruleset >= 0 and libc.syscall(446, ruleset, 0) == 0
print("READY", flush=True)
conn, _ = listener.accept()
peer = int.from_bytes(conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)[:4], "little")
first = conn.recv(1 << 20)
hello = wire.decode(first)
try:
    seen = os.readlink(f"/proc/{peer}/fd/{hello['hello']}").split(paths.PROOF_NAME)[1].split(" ")[0]
except (OSError, KeyError, IndexError):
    seen = ""
conn.send(wire.encode({"seen": seen}))
conn.settimeout(5)
try:
    data = conn.recv(1 << 20)
except OSError:
    data = b""
print("GOT THE ENVIRONMENT" if b"hunter2" in first + data else "NOTHING", flush=True)
if data:
    conn.send(wire.encode({"refused": "impostor"}))
"""


def test_a_process_posing_as_the_service_from_a_sandbox_is_handed_nothing(
    tmp_path: Path,
) -> None:
    """Found by attack: the caller proved it may inspect the service, not the other way
    round, so a process of the user's in a Landlock domain that could write the service's
    directory posed as the service, and an unconfined ``bvisor run`` handed it its whole
    environment and its fds. The caller now names a memfd of its own and sends nothing
    until the service has read that memfd's nonce through ``/proc``. Oracle: what the
    impostor says it received."""
    require_feature("landlock")
    env = _env(tmp_path)
    nnp = os.geteuid() != 0  # a normal user enters a Landlock domain only with it
    impostor = subprocess.Popen(
        [sys.executable, "-c", _IMPOSTOR.replace("NNP", str(nnp))],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert impostor.stdout is not None
    assert impostor.stdout.readline() == "READY\n", (
        impostor.stderr.read() if impostor.stderr else ""
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", _COMMAND, "run", "--no-record", "--", "/bin/true"],
            cwd=_work(tmp_path), env={**env, "BVISOR_SERVE": "require", "SECRET": "hunter2"},
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
            preexec_fn=_no_new_privs if nnp else None,
        )  # fmt: skip
        said = impostor.stdout.readline()
    finally:
        impostor.kill()
        impostor.wait()
    assert said == "NOTHING\n", said
    assert done.returncode == 125, done.stderr
    assert "could not inspect this command" in done.stderr, done.stderr
