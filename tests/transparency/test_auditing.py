"""Auditing a ledger you must not change: read-only ledgers, localised damage, export.

Oracles from outside the product: the bytes, mode and mtime of every file in the ledger
directory before and after (read commands must change nothing), a second user (nobody,
via ``setpriv``) for "another user's files", a read-only bind mount in a private mount
namespace (``unshare -m``) for a read-only copy even root cannot write.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bvisor.front.cli.ledger_cmd import main as ledger_main
from bvisor.front.cli.replay_cmd import main as replay_main
from bvisor.ledger import Ledger
from tests.ledger.testkit import get_record, put_record
from tests.replay.helpers import FakeRun, record_synthetic
from tests.transparency.kit import call, call_json, keypair

NOBODY = 65534


def _state(directory: Path) -> dict[str, tuple[str, int, int]]:
    """Every file's digest, mode and mtime: what a read must leave exactly as it was."""
    state = {}
    for path in sorted(directory.rglob("*")):
        info = path.stat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
        state[str(path.relative_to(directory))] = (digest, info.st_mode, info.st_mtime_ns)
    return state


@pytest.fixture
def recorded(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, list[bytes], Path]:
    _signer, key, pub = keypair(tmp_path / "keys")
    path = tmp_path / "ledger"
    with Ledger.open(path, create=True) as ledger:
        runs = [record_synthetic(ledger, fake=FakeRun()) for _ in range(3)]
    assert call(capsys, ledger_main, "checkpoint", "--ledger", str(path), "--key", str(key))[0] == 0
    return path, runs, pub


def _commands(ledger: str, run: str, pub: str) -> list[list[str]]:
    return [
        ["bvisor.front.cli.ledger_cmd", "verify", "--ledger", ledger, "--pub", pub, "--tree"],
        ["bvisor.front.cli.ledger_cmd", "log", "--ledger", ledger, "--run", run[:10]],
        ["bvisor.front.cli.ledger_cmd", "export", "--ledger", ledger],
        ["bvisor.front.cli.ledger_cmd", "runs", "--ledger", ledger],
        ["bvisor.front.cli.ledger_cmd", "prove", run, "--ledger", ledger],
        ["bvisor.front.cli.replay_cmd", "--ledger", ledger],
        ["bvisor.front.cli.replay_cmd", "--ledger", ledger, "--pub", pub, "--last"],
    ]


def _as(user: int | None, module_args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    prefix = (
        [] if user is None else ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups"]
    )
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    return subprocess.run(
        [*prefix, sys.executable, "-m", *module_args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env=env,
        check=False,
    )


def _read_only_copy(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    for path in [target, *target.rglob("*")]:
        os.chmod(path, 0o555 if path.is_dir() else 0o444)
    for parent in target.parents:
        if parent == Path("/"):
            break
        os.chmod(parent, parent.stat().st_mode | 0o005)  # nobody may walk down to it
    return target


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv (util-linux) not installed")
def test_another_users_read_only_ledger_is_verified_logged_replayed_changing_nothing(
    recorded: tuple[Path, list[bytes], Path], tmp_path: Path
) -> None:
    if os.geteuid() != 0:
        pytest.skip("LOUD SKIP: needs root to read the ledger as another user (setpriv)")
    path, runs, pub = recorded
    copy = _read_only_copy(path, tmp_path / "audit" / "ledger")
    public = tmp_path / "audit" / "checkpoint.pub"
    shutil.copy(pub, public)
    os.chmod(public, 0o444)
    before = _state(copy)
    for command in _commands(str(copy), runs[1].hex(), str(public)):
        done = _as(NOBODY, command, cwd=Path("/"))
        assert done.returncode == 0, (command, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr and "without LMDB's lock" in done.stderr
    assert _state(copy) == before


# A normal user makes the mount namespace inside a user namespace of its own.
_UNSHARE = ["unshare"] if os.geteuid() == 0 else ["unshare", "-r"]


def test_a_read_only_mount_is_read_changing_nothing(
    recorded: tuple[Path, list[bytes], Path], tmp_path: Path
) -> None:
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) not installed")
    path, runs, pub = recorded
    copy = tmp_path / "mounted"
    shutil.copytree(path, copy)
    before = _state(copy)
    for command in _commands(str(copy), runs[0].hex(), str(pub)):
        script = (
            f"mount --bind {copy} {copy} && mount -o remount,bind,ro {copy} && "
            f"exec {sys.executable} -m {' '.join(command)}"
        )
        done = subprocess.run(
            [*_UNSHARE, "-m", "--propagation", "private", "sh", "-c", script],
            capture_output=True,
            text=True,
            timeout=120,
            env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2])),
            check=False,
        )
        if "mount:" in done.stderr and done.returncode != 0:
            pytest.skip(f"cannot make a read-only mount here: {done.stderr.strip()[:200]}")
        assert done.returncode == 0, (command, done.stderr)
    assert _state(copy) == before


def test_a_ledger_without_a_lock_file_is_read_without_creating_one(
    recorded: tuple[Path, list[bytes], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    path, _runs, _pub = recorded
    (path / "lock.mdb").unlink()
    before = _state(path)
    code, _out, err = call(capsys, ledger_main, "verify", "--ledger", str(path))
    assert code == 0 and "no lock file" in err
    assert call(capsys, replay_main, "--ledger", str(path))[0] == 0
    assert _state(path) == before and not (path / "lock.mdb").exists()


# -- damage stays with the run it belongs to ---------------------------------------------------


def _kinds(path: Path, run: bytes) -> dict[str, int]:
    with Ledger.open(path, readonly=True) as ledger:
        return {e.kind: e.seq for e in ledger.run_events(run)}


@pytest.mark.parametrize("damage", ["payload byte", "non-canonical"])
def test_damage_to_one_runs_record_fails_that_run_and_no_other(
    recorded: tuple[Path, list[bytes], Path], capsys: pytest.CaptureFixture[str], damage: str
) -> None:
    path, runs, _pub = recorded
    seq = _kinds(path, runs[1])["run.terminal"]
    record = bytearray(get_record(path, seq))
    if damage == "payload byte":
        at = record.rindex(b"failed")
        record[at] = ord("F")  # still canonical text: another payload, same payload hash
    else:
        assert record[2] == 0x18  # seq in one extra byte: same value, not the canonical form
        record[2:4] = b"\x19\x00" + bytes([record[3]])
    put_record(path, seq, bytes(record))
    code, document = call_json(capsys, replay_main, "--ledger", str(path))
    assert code == 1
    verdicts = {r["run_id"]: r for r in document["runs"]}
    assert verdicts[runs[1].hex()]["verdict"] == "failed"
    for innocent in (runs[0], runs[2]):
        run = verdicts[innocent.hex()]
        assert run["verdict"] == "verified", run["checks"][0]
    later = verdicts[runs[2].hex()]["checks"][0]["detail"]
    assert f"damage at event {seq}" in later and "this run's events are proven" in later
    ledger = document["ledger"]
    assert ledger["chain_bad_seq"] is None and f"seq {seq}" in ledger["proven"]
    code, out, _ = call(capsys, replay_main, "--ledger", str(path))
    assert "header chain is intact" in out


def test_a_broken_header_chain_still_fails_every_run_after_it(
    recorded: tuple[Path, list[bytes], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    path, runs, _pub = recorded
    seq = _kinds(path, runs[1])["run.terminal"]
    record = bytearray(get_record(path, seq))
    at = record.index(b"run.terminal")
    record[at + 4] = ord("s")  # run.serminal: a valid kind, in the header: the next link breaks
    put_record(path, seq, bytes(record))
    code, document = call_json(capsys, replay_main, "--ledger", str(path))
    assert code == 1
    verdicts = {r["run_id"]: r["verdict"] for r in document["runs"]}
    assert verdicts[runs[0].hex()] == "verified"
    assert verdicts[runs[2].hex()] == "failed"  # nothing after a broken header is proven
    assert "header chain is broken" in document["ledger"]["proven"]


# -- export ------------------------------------------------------------------------------------


def test_export_carries_the_ledger_id_and_goes_on_past_a_damaged_event(
    recorded: tuple[Path, list[bytes], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    path, runs, _pub = recorded
    seq = _kinds(path, runs[0])["run.terminal"]
    put_record(path, seq, b"\xff\x00garbage")
    code, out, err = call(capsys, ledger_main, "export", "--ledger", str(path))
    lines = [json.loads(line) for line in out.splitlines()]
    with Ledger.open(path, readonly=True) as ledger:
        count, ledger_id = sum(1 for _ in ledger.raw_events()), ledger.ledger_id.hex()
    assert code == 1 and len(lines) == count and "damaged" in err
    assert {line["ledger_id"] for line in lines} == {ledger_id}
    (bad,) = [line for line in lines if "damaged" in line]
    assert bad["seq"] == seq and bad["record"] == b"\xff\x00garbage".hex()
    assert bad["damaged"]["code"] == "malformed-record"
    assert lines[-1]["seq"] == count - 1 and "payload" in lines[-1]


def test_a_stray_event_key_at_the_end_of_the_key_space_is_a_verdict_not_a_hang(
    recorded: tuple[Path, list[bytes], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """One record put under the largest event key (seq 2**64 - 1): the coverage check
    walked every seq up to it (practically forever), and export asked for the key after
    it (a traceback). Both now answer: findings, exit 1."""
    path, _runs, pub = recorded
    put_record(path, (1 << 64) - 1, get_record(path, 5))
    code, out, err = call(capsys, ledger_main, "verify", "--ledger", str(path), "--pub", str(pub))
    assert code == 1 and "Traceback" not in err, (out, err)
    assert "not yet covered by a signed checkpoint" in out + err, (out, err)
    code, out, err = call(capsys, ledger_main, "export", "--ledger", str(path))
    assert code == 1 and "damaged" in err and "Traceback" not in err, err
    assert json.loads(out.splitlines()[-1])["seq"] == (1 << 64) - 1


def test_a_ledger_path_that_is_not_text_is_a_clear_error(tmp_path: Path) -> None:
    name = os.fsencode(str(tmp_path)) + b"/\xff\xfe-ledger"
    os.mkdir(name)
    for module in ("bvisor.front.cli.ledger_cmd", "bvisor.front.cli.replay_cmd"):
        args = (
            [module, "verify", "--ledger"]
            if module.endswith("ledger_cmd")
            else [module, "--ledger"]
        )
        done = subprocess.run(
            [sys.executable, "-m", *args, os.fsdecode(name)],
            capture_output=True,
            text=True,
            errors="replace",
            timeout=60,
            check=False,
        )
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
        assert "not valid text" in done.stderr
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bvisor.front.cli.ledger_cmd",
            "append",
            "--ledger",
            os.fsdecode(name) + "/new",
            "--kind",
            "note.x",
            "--data",
            "1",
        ],
        capture_output=True,
        text=True,
        errors="replace",
        timeout=60,
        check=False,
    )
    assert done.returncode == 2 and "not valid text" in done.stderr
    assert os.listdir(name) == []
