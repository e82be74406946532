"""Everyday commands behave as they would in a shell.

Oracles: what the command prints through ``bvisor run`` (run as a user's shell would),
its exit status, and what the workload itself reports about its stdin and argv.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bvisor.contract import ProcessWorkload
from tests.e2e.helpers import find_pids_with, ledger_runs_json, unique_marker, wait_for
from tests.features import require_feature

REPO = Path(__file__).resolve().parents[2]


def bvisor(
    *args: str, cwd: Path, ledger: Path, **kwargs: object
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bvisor.front.cli.main", "run", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env={**os.environ, "BVISOR_LEDGER": str(ledger), "PYTHONPATH": str(REPO)},
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    return tmp_path / "ledger"


def _script(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o755)
    return path


def test_a_pipe_on_stdin_is_relayed(work: Path, ledger: Path) -> None:
    require_feature("landlock")
    done = bvisor("--", "cat", cwd=work, ledger=ledger, input="hi\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "hi\n"


def test_a_file_on_stdin_is_relayed_through_a_pipe_not_handed_over(
    work: Path, ledger: Path, tmp_path: Path
) -> None:
    require_feature("landlock")
    data = tmp_path / "input.bin"
    data.write_bytes(os.urandom(300_000))
    with open(data, "rb") as handle:
        done = bvisor(
            "--",
            "/bin/sh",
            "-c",
            "readlink /proc/self/fd/0; wc -c",
            cwd=work,
            ledger=ledger,
            stdin=handle,
        )
    assert done.returncode == 0, done.stderr
    link, count = done.stdout.split()
    assert link.startswith("pipe:[") and count == "300000", done.stdout


def test_a_hash_bang_script_runs_with_its_interpreter(work: Path, ledger: Path) -> None:
    require_feature("landlock")
    _script(work / "build.sh", '#!/bin/sh\necho "built: $0 $*"\n')
    done = bvisor("--", "./build.sh", "fast", cwd=work, ledger=ledger)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "built: ./build.sh fast\n"


def test_an_interpreter_that_is_a_script_is_followed(work: Path, ledger: Path) -> None:
    require_feature("landlock")
    inner = _script(work / "inner", '#!/bin/sh\necho "inner got: $*"\n')
    _script(work / "outer", f"#!{inner} --flag\n")
    done = bvisor("--", "./outer", "x", cwd=work, ledger=ledger)
    assert done.returncode == 0, done.stderr
    # As the kernel does it: inner gets its own flag, the outer script's path, then x.
    assert done.stdout == "inner got: --flag ./outer x\n", done.stdout


def test_env_in_the_hash_bang_line_finds_its_program_inside(work: Path, ledger: Path) -> None:
    require_feature("landlock")
    _script(work / "tool", '#!/usr/bin/env sh\necho "via env: $0"\n')
    done = bvisor("--", "./tool", cwd=work, ledger=ledger)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "via env: ./tool\n"


@pytest.mark.parametrize(
    ("name", "content", "mode", "status", "says"),
    [
        ("missing-interp", "#!/nonexistent/interp\n", 0o755, 126, "bad interpreter"),
        ("not-executable", "#!/bin/sh\necho hi\n", 0o644, 126, "not executable"),
        ("empty-hashbang", "#!\n", 0o755, 126, "names no interpreter"),
    ],
)
def test_a_command_that_cannot_start_says_why_in_one_line(
    work: Path, ledger: Path, name: str, content: str, mode: int, status: int, says: str
) -> None:
    target = work / name
    target.write_text(content)
    target.chmod(mode)
    done = bvisor("--", f"./{name}", cwd=work, ledger=ledger)
    assert done.returncode == status, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0] and "Traceback" not in done.stderr, lines
    assert not ledger.exists(), "nothing was planned or recorded"


def test_a_missing_command_is_127_and_a_directory_126(work: Path, ledger: Path) -> None:
    missing = bvisor("--", "no-such-command-here", cwd=work, ledger=ledger)
    assert missing.returncode == 127 and "command not found" in missing.stderr
    (work / "adir").mkdir()
    directory = bvisor("--", "./adir", cwd=work, ledger=ledger)
    assert directory.returncode == 126 and "is a directory" in directory.stderr


def test_a_workload_the_kernel_cannot_execute_gets_a_reason_in_the_summary(
    work: Path, ledger: Path
) -> None:
    require_feature("landlock")
    _script(work / "garbage", "")  # executable, empty: no #!, not a binary
    (work / "garbage").write_bytes(b"\x00\x01 not a program")
    done = bvisor("--", "./garbage", cwd=work, ledger=ledger)
    assert done.returncode == 125, done.stderr
    reasons = [line for line in done.stderr.splitlines() if line.startswith("bvisor: not run:")]
    assert any("could not be executed" in line and "ENOEXEC" in line for line in reasons), (
        done.stderr
    )


def test_a_venv_python_run_by_its_path_sees_its_venv(work: Path, ledger: Path) -> None:
    require_feature("landlock")
    if "argv0" not in getattr(ProcessWorkload, "__dataclass_fields__", {}):
        pytest.skip(
            "LOUD SKIP: the contract's workload has no argv0 yet (planner rules set argv[0] "
            "to the exe's base name); the front passes it once it exists"
        )
    # An interpreter the default root holds (the system's): the venv's python is a link
    # to it, and what it links to must be inside the boundary to run at all.
    system = next((p for p in ("/usr/bin/python3", "/bin/python3") if Path(p).exists()), None)
    if system is None:
        pytest.skip("LOUD SKIP: no system python3 under /usr/bin for a venv the root holds")
    venv = work / "venv"
    subprocess.run([system, "-m", "venv", "--without-pip", str(venv)], check=True)
    code = "import sys; print(sys.prefix)"
    done = bvisor("--", "venv/bin/python", "-c", code, cwd=work, ledger=ledger)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(venv), done.stdout
    _script(venv / "bin" / "tool", f"#!{venv}/bin/python\nimport sys\nprint(sys.prefix)\n")
    done = bvisor("--", "venv/bin/tool", cwd=work, ledger=ledger)
    assert done.returncode == 0 and done.stdout.strip() == str(venv), done.stderr


def test_a_writer_whose_reader_went_away_gets_sigpipe(work: Path, ledger: Path) -> None:
    """``bvisor run -- yes | head -1`` ends as it does without bvisor.

    Oracles from outside the workload: the workload's process, found by its marker, is
    gone soon after the reader closed; ``bvisor`` exits 141 (SIGPIPE, as the shell
    reports ``yes``); the ledger records the signal. Before, the host dropped the output
    after EPIPE but kept draining the pipe, and the workload wrote on until killed.
    """
    require_feature("landlock")
    marker = unique_marker("EPIPE-WRITER")
    read_end, write_end = os.pipe()
    host = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bvisor.front.cli.main",
            "run",
            "--",
            "/bin/sh",
            "-c",
            "while :; do echo y; done",
            marker,
        ],
        stdout=write_end,
        stderr=subprocess.PIPE,
        cwd=work,
        env={**os.environ, "BVISOR_LEDGER": str(ledger), "PYTHONPATH": str(REPO)},
    )
    os.close(write_end)
    try:
        with os.fdopen(read_end, "rb") as reader:
            assert reader.readline() == b"y\n"
        # `head -1` has exited: nobody holds the read end any more.
        assert wait_for(lambda: host.poll() is not None, timeout=30), "the run never ended"
        assert not find_pids_with(marker, program="sh"), "the workload outlived its reader"
        err = host.stderr.read().decode() if host.stderr else ""
    finally:
        if host.poll() is None:
            host.kill()
            host.wait()
    assert host.returncode == 128 + 13, err
    assert "killed (signal=13)" in err and "(EPIPE" in err, err
    runs = ledger_runs_json(ledger)
    assert '"outcome": "killed"' in runs, runs


def test_a_writer_whose_output_cannot_be_written_is_stopped_too(work: Path, ledger: Path) -> None:
    """Found by attack: only EPIPE closed the workload's pipe; a full disk (ENOSPC) or a
    socket reset (ECONNRESET) left ``yes`` writing into nothing until killed. Oracle:
    ``bvisor``'s own exit (timeout of 30 s otherwise) and the fact naming the error."""
    require_feature("landlock")
    with open("/dev/full", "wb") as full:
        done = subprocess.run(
            [sys.executable, "-m", "bvisor.front.cli.main", "run", "--", "yes"],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=30,
            cwd=work,
            env={**os.environ, "BVISOR_LEDGER": str(ledger), "PYTHONPATH": str(REPO)},
        )
    assert done.returncode == 128 + 13, done.stderr
    assert "(ENOSPC: writing to the caller failed" in done.stderr, done.stderr
