"""User mistakes at the command line: a clear message, the documented exit status, no
traceback, and nothing changed on disk.

Each test runs the commands in a subprocess, the way a shell script would, so closed
descriptors, broken pipes and stdin behave as they do for a user.
"""

from __future__ import annotations

import json
import os
import random
import resource
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import lmdb
import pytest

from bvisor.ledger import Ledger

REPO = Path(__file__).resolve().parents[2]
SPEC_HEAD = '{"workload": {"exe": "/bin/true"}, "control": [{"type": "launch_workload"}]'


def _cli(
    module: str, *args: str, ledger: Path | None = None, **kwargs: object
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ}
    if ledger is not None:
        env["BVISOR_LEDGER"] = str(ledger)
    kwargs.setdefault("timeout", 120)
    if "stdout" not in kwargs:
        kwargs["capture_output"] = True
    else:
        kwargs.setdefault("stderr", subprocess.PIPE)
    return subprocess.run(  # type: ignore[call-overload,no-any-return]
        [sys.executable, "-m", module, *args], text=True, cwd=REPO, env=env, **kwargs
    )


def bvisor(*args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return _cli("bvisor.front.cli.main", *args, **kwargs)  # type: ignore[arg-type]


def ledger_cli(*args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return _cli("bvisor.front.cli.ledger_cmd", *args, **kwargs)  # type: ignore[arg-type]


def replay_cli(*args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return _cli("bvisor.front.cli.replay_cmd", *args, **kwargs)  # type: ignore[arg-type]


def witness_cli(*args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return _cli("bvisor.front.cli.witness_cmd", *args, **kwargs)  # type: ignore[arg-type]


def _no_traceback(done: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in done.stderr, done.stderr


def _note_ledger(path: Path, count: int = 3) -> Path:
    with Ledger.open(path, create=True) as ledger:
        for index in range(count):
            ledger.append("note.test", {"i": index})
    return path


# -- spec files ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("deep.json", "[" * 100_000 + "]" * 100_000),
        ("deep.toml", "a = " + "[" * 100_000 + "]" * 100_000),
    ],
)
def test_a_deeply_nested_spec_is_a_syntax_error(tmp_path: Path, name: str, text: str) -> None:
    spec = tmp_path / name
    spec.write_text(text)
    done = bvisor("plan", str(spec))
    _no_traceback(done)
    assert done.returncode == 2
    assert "nested too deeply" in done.stderr


@pytest.mark.parametrize(
    ("extra", "where"),
    [
        (
            ', "capability": [{"type": "environment", "exact": {"A": "\\ud800"}}]}',
            "capability[0].exact.A",
        ),
        (', "capability": [{"type": "environment", "exact": {"\\udc80": "x"}}]}', "exact"),
    ],
)
def test_a_lone_surrogate_in_a_json_spec_names_its_key(
    tmp_path: Path, extra: str, where: str
) -> None:
    spec = tmp_path / "s.json"
    spec.write_text(SPEC_HEAD + extra)
    done = bvisor("plan", str(spec))
    _no_traceback(done)
    assert done.returncode == 2
    assert where in done.stderr and "surrogate" in done.stderr


def test_a_surrogate_in_the_exe_is_a_usage_error_not_a_refusal(tmp_path: Path) -> None:
    spec = tmp_path / "s.json"
    spec.write_text(
        '{"workload": {"exe": "/bin/\\udc80"}, "control": [{"type": "launch_workload"}]}'
    )
    done = bvisor("plan", str(spec))
    assert done.returncode == 2, done.stderr
    assert "workload.exe" in done.stderr


def test_a_fifo_or_device_spec_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "spec.toml"
    os.mkfifo(fifo)
    done = bvisor("plan", str(fifo), timeout=30)
    assert done.returncode == 2 and "not a regular file" in done.stderr
    device = tmp_path / "zero.toml"
    device.symlink_to("/dev/zero")
    done = bvisor("plan", str(device), timeout=30)
    assert done.returncode == 2 and "not a regular file" in done.stderr
    done = bvisor("plan", str(tmp_path), timeout=30)
    assert done.returncode == 2 and "directory" in done.stderr


def test_plan_json_errors_are_a_json_document(tmp_path: Path) -> None:
    spec = tmp_path / "s.json"
    spec.write_text(SPEC_HEAD + ', "bogus": 1}')
    done = bvisor("plan", "--json", str(spec))
    assert done.returncode == 2
    error = json.loads(done.stdout)["error"]
    assert error["path"] == "bogus" and "unknown key" in error["message"]


# -- bvisor run ---------------------------------------------------------------------------

LEASE_SPEC = """
[workload]
exe = "/usr/bin/env"
[[capability]]
type = "environment"
leases = { TOKEN = "api-token" }
[[control]]
type = "launch_workload"
"""


@pytest.mark.parametrize(
    ("leases", "message"),
    [
        ([], "give --lease api-token=HOSTVAR"),
        (["--lease", "api-token=HOME", "--lease", "other=HOME"], "no secret lease 'other'"),
        (["--lease", "api-token=HOME", "--lease", "api-token=PATH"], "more than once"),
    ],
)
def test_lease_mistakes_are_usage_errors_and_record_nothing(
    tmp_path: Path, leases: list[str], message: str
) -> None:
    spec = tmp_path / "lease.toml"
    spec.write_text(LEASE_SPEC)
    ledger = tmp_path / "ledger"
    done = bvisor("run", "--spec", str(spec), *leases, ledger=ledger)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert not ledger.exists(), "a usage mistake must not record anything"


def test_run_json_usage_errors_are_a_json_document(tmp_path: Path) -> None:
    done = bvisor("run", "--json", "--lease", "broken", "--", "/bin/true", ledger=tmp_path / "l")
    assert done.returncode == 2
    assert "REF=HOSTVAR" in json.loads(done.stdout)["error"]["message"]


def test_closed_stdin_never_hands_a_ledger_file_to_the_workload(tmp_path: Path) -> None:
    """With fd 0 closed, the ledger's lock file used to take fd 0 and reach the workload."""
    spec = tmp_path / "stdin.toml"
    spec.write_text(
        '[workload]\nexe = "/bin/sh"\nargs = ["-c", "readlink /proc/self/fd/0"]\n'
        '[[capability]]\ntype = "environment"\nexact = { PATH = "/usr/bin:/bin" }\n'
        '[[control]]\ntype = "launch_workload"\n'
        '[[control]]\ntype = "capture_streams"\nstdin = true\n'
    )
    ledger = tmp_path / "ledger"
    argv = [sys.executable, "-m", "bvisor.front.cli.main", "run", "--spec", str(spec)]
    code = (
        "import os, subprocess, sys; os.close(0); "
        f"sys.exit(subprocess.run({argv!r}, env={{**os.environ, 'BVISOR_LEDGER': "
        f"{str(ledger)!r}}}).returncode)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO
    )
    _no_traceback(done)
    if done.returncode == 125:
        pytest.skip(f"this host cannot run the spec: {done.stderr}")
    assert done.returncode == 0, done.stderr
    # The caller's (now /dev/null) stdin is relayed into a pipe: no host file at all.
    assert done.stdout.strip().startswith("pipe:["), done.stdout


def _closed_stdout(argv: list[str], ledger: Path) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` with fd 1 closed (as ``>&-`` does in a shell)."""
    code = (
        "import os, subprocess, sys; os.close(1); "
        f"sys.exit(subprocess.run({argv!r}, env={{**os.environ, 'BVISOR_LEDGER': "
        f"{str(ledger)!r}}}).returncode)"
    )
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["bvisor.front.cli.main", "run", "--", "/bin/echo", "hi"],
        ["bvisor.front.cli.ledger_cmd", "append", "--kind", "note.x", "--data", "1"],
        ["bvisor.front.cli.ledger_cmd", "head"],
        ["bvisor.front.cli.replay_cmd"],
    ],
)
def test_a_closed_stdout_is_refused_and_changes_nothing(tmp_path: Path, argv: list[str]) -> None:
    ledger = _note_ledger(tmp_path / "ledger")
    before = (ledger / "data.mdb").read_bytes()
    done = _closed_stdout([sys.executable, "-m", *argv], ledger)
    _no_traceback(done)
    assert done.returncode == 2
    assert "standard output is closed" in done.stderr
    assert (ledger / "data.mdb").read_bytes() == before


def test_replay_into_a_closed_pipe_has_no_traceback(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    with Ledger.open(ledger, create=True) as handle:
        for index in range(3000):  # many runs: a table larger than a pipe buffer
            handle.append("note.test", {"i": index}, index.to_bytes(4, "big"))
    reader, writer = os.pipe()
    os.close(reader)
    try:
        done = replay_cli("--ledger", str(ledger), stdout=writer)
    finally:
        os.close(writer)
    _no_traceback(done)
    assert done.returncode == 141


def test_ledger_log_into_a_closed_pipe_exits_141_without_traceback(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    with Ledger.open(ledger, create=True) as handle:
        handle.append_many([("note.test", {"i": index}, None) for index in range(3000)])
    reader, writer = os.pipe()
    os.close(reader)
    try:
        done = ledger_cli("--ledger", str(ledger), "log", stdout=writer)
    finally:
        os.close(writer)
    _no_traceback(done)
    assert done.returncode == 141


@pytest.mark.parametrize(
    ("module", "argv"),
    [
        ("bvisor.front.cli.replay_cmd", ["--json", "--bogus"]),
        ("bvisor.front.cli.main", ["run", "--json", "--bogus", "--", "/bin/true"]),
        ("bvisor.front.cli.main", ["probe", "--json", "--bogus"]),
        ("bvisor.front.cli.main", ["plan", "--bogus", "--json", "--", "/bin/true"]),
        ("bvisor.front.cli.ledger_cmd", ["log", "--json", "--bogus"]),
        ("bvisor.front.cli.witness_cmd", ["state", "--json", "--bogus"]),
    ],
)
def test_an_unknown_option_with_json_is_one_json_document(
    tmp_path: Path, module: str, argv: list[str]
) -> None:
    """argparse printed its usage on stderr and nothing on stdout for bvisor and
    bvisor-replay, so a script parsing stdout got an empty string."""
    done = _cli(module, *argv, ledger=tmp_path / "ledger")
    _no_traceback(done)
    assert done.returncode == 2, done.stderr
    error = json.loads(done.stdout)["error"]
    assert error["code"] == "usage" and "--bogus" in error["message"], error
    assert "--bogus" in done.stderr and "usage:" not in done.stderr
    assert not (tmp_path / "ledger").exists()


@pytest.mark.parametrize(
    ("module", "argv", "named"),
    [
        ("bvisor.front.cli.main", ["serve", "--idle", "1e400"], "--idle"),
        ("bvisor.front.cli.main", ["serve", "--idle", "inf"], "--idle"),
        ("bvisor.front.cli.main", ["serve", "--idle", "nan"], "--idle"),
        ("bvisor.front.cli.main", ["serve", "--idle", "-5"], "--idle"),
        ("bvisor.front.cli.main", ["serve", "--idle", "1e12"], "--idle"),
        (
            "bvisor.front.cli.main",
            ["plan", "--limit-memory", "99999999999999999999999T", "--", "/bin/true"],
            "--limit-memory",
        ),
        (
            "bvisor.front.cli.main",
            ["run", "--limit-procs", "9" * 30, "--", "/bin/true"],
            "--limit-procs",
        ),
        ("bvisor.front.cli.ledger_cmd", ["consistency", "--old-size", "1_0"], "--old-size"),
        ("bvisor.front.cli.ledger_cmd", ["consistency", "--old-size", "-1"], "--old-size"),
        ("bvisor.front.cli.ledger_cmd", ["log", "--limit", "inf"], "--limit"),
        ("bvisor.front.cli.ledger_cmd", ["append", "--batch", "--group", "nan"], "--group"),
    ],
)
def test_a_number_that_is_not_finite_or_in_range_is_refused_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, module: str, argv: list[str], named: str
) -> None:
    """serve --idle took float(): 1e400 is inf, and the service announced 'idle exit infs'
    and never left; --old-size took int() ('1_0'), and a 30-digit limit was refused by the
    contract as 'None: limit: ...', naming no option."""
    runtime = tmp_path / "runtime"  # a service started by mistake is the test's own
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    for json_flag in ([], ["--json"]):
        words = [*argv[:1], *json_flag, *argv[1:]]
        done = _cli(module, *words, ledger=tmp_path / "ledger", timeout=30)
        _no_traceback(done)
        assert done.returncode == 2, (argv, done.stdout, done.stderr)
        assert named in done.stderr and "None" not in done.stderr, done.stderr
        if json_flag:
            assert named in json.loads(done.stdout)["error"]["message"]
        assert "listening" not in done.stdout + done.stderr
    assert not (tmp_path / "ledger").exists()


def test_a_json_after_the_separator_is_the_commands_own(tmp_path: Path) -> None:
    done = bvisor("run", "--bogus", "--", "/bin/echo", "--json", ledger=tmp_path / "l")
    assert done.returncode == 2 and done.stdout == "", done.stdout
    assert "--bogus" in done.stderr


def test_replay_json_usage_errors_are_a_json_document(tmp_path: Path) -> None:
    ledger = _note_ledger(tmp_path / "ledger")
    done = replay_cli("--ledger", str(ledger), "--json", "zz")
    assert done.returncode == 2
    assert "hexadecimal" in json.loads(done.stdout)["error"]["message"]


# -- bvisor-witness -----------------------------------------------------------------------


def _tree(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


@pytest.mark.parametrize("where", ["file", "file/x", "/proc/x"])
def test_a_witness_state_that_cannot_be_a_directory_is_named(tmp_path: Path, where: str) -> None:
    """init raised FileExistsError, NotADirectoryError and FileNotFoundError tracebacks
    (no JSON with --json), and 'state' on a regular file printed 'no logs', exit 0."""
    (tmp_path / "file").write_text("mine\n")
    state = where if where.startswith("/") else str(tmp_path / where)
    before = _tree(tmp_path)
    for command in ("init", "state", "add-checkpoint"):
        done = witness_cli("--json", "--state", state, command, stdin=subprocess.DEVNULL)
        _no_traceback(done)
        assert done.returncode == 2, (command, done.stdout, done.stderr)
        document = json.loads(done.stdout)
        assert document["ok"] is False and "--state" in document["error"]["message"]
        assert "--state" in done.stderr, done.stderr
    assert _tree(tmp_path) == before and (tmp_path / "file").read_text() == "mine\n"
    assert not os.path.lexists(state) or where == "file"


def test_a_witness_state_not_made_yet_is_named_not_empty(tmp_path: Path) -> None:
    done = witness_cli("--state", str(tmp_path / "typo"), "state")
    assert done.returncode == 2 and "--state" in done.stderr and "init" in done.stderr
    assert done.stdout == "" and not (tmp_path / "typo").exists()
    done = witness_cli("--state", str(tmp_path / "a" / "b"), "init", "--name", "w.example/w")
    assert done.returncode == 0, done.stderr
    assert witness_cli("--state", str(tmp_path / "a" / "b"), "state").stdout == "no logs\n"


def test_a_witness_state_another_user_may_change_is_refused(tmp_path: Path) -> None:
    """Found by attack: a witness state directory of mode 0777 was used; its log states
    are what keeps the witness from cosigning two histories, and another user could roll
    one back. Refused naming the directory, for the state and for its logs."""
    state = tmp_path / "w"
    done = witness_cli("--state", str(state), "init", "--name", "w.example/w")
    assert done.returncode == 0, done.stderr
    for loose in (state / "logs", state):
        if not loose.exists():
            loose.mkdir()
        os.chmod(loose, 0o777)
        done = witness_cli("--json", "--state", str(state), "state")
        _no_traceback(done)
        assert done.returncode == 2 and "writable by every user" in done.stderr, done.stderr
        assert json.loads(done.stdout)["ok"] is False
        os.chmod(loose, 0o700)
    assert witness_cli("--state", str(state), "state").returncode == 0


def test_a_refused_witness_init_leaves_no_directory_it_made(tmp_path: Path) -> None:
    state = tmp_path / "w"
    state.mkdir()
    (state / "witness.key").write_text("not mine to replace\n")
    done = witness_cli("--json", "--state", str(state), "init")
    _no_traceback(done)
    assert done.returncode == 2 and "already exists" in json.loads(done.stdout)["error"]["message"]
    assert _tree(state) == ["witness.key"]


# -- bvisor-ledger ------------------------------------------------------------------------


def test_a_surrogate_map_key_in_a_payload_names_it(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    done = ledger_cli(
        "append", "--ledger", str(ledger), "--kind", "note.x", "--data", '{"a": {"\\ud800": 1}}'
    )
    _no_traceback(done)
    assert done.returncode == 2 and "$.a" in done.stderr and "map key" in done.stderr
    batch = '{"kind": "note.a", "data": 1}\n{"kind": "note.a", "data": {"\\ud800": 1}}\n'
    done = ledger_cli("append", "--ledger", str(ledger), "--batch", input=batch)
    _no_traceback(done)
    assert done.returncode == 2 and "line 2" in done.stderr and "1 earlier" in done.stderr


def test_a_refused_append_creates_no_ledger(tmp_path: Path) -> None:
    ledger = tmp_path / "new"
    done = ledger_cli("append", "--ledger", str(ledger), "--kind", "note.x", "--data", str(1 << 64))
    assert done.returncode == 2 and "64-bit" in done.stderr
    assert not ledger.exists()
    done = ledger_cli("append", "--ledger", str(ledger), "--batch", input="[1]\n")
    assert done.returncode == 2 and "line 1" in done.stderr
    assert not ledger.exists()


def test_append_makes_no_directory_where_another_user_could_change_it(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    target = shared / "a" / "L"
    done = ledger_cli(
        "append", "--json", "--ledger", str(target), "--kind", "note.x", "--data", "1"
    )
    _no_traceback(done)
    assert done.returncode == 2 and "another user" in json.loads(done.stdout)["error"]["message"]
    assert list(shared.iterdir()) == []


def test_checkpoint_never_makes_a_ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """checkpoint --ledger <typo> made a new ledger there, signed a size-0 checkpoint of it
    and recorded that place in the key's memory (and made the default key first)."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.delenv("BVISOR_KEY", raising=False)
    keys = tmp_path / "keys"
    assert ledger_cli("keygen", "--out", str(keys), "--name", "t.example/k").returncode == 0
    kept = {p.name: p.read_bytes() for p in keys.iterdir()}
    typo = tmp_path / "typo" / "ledger"
    for key in (["--key", str(keys / "checkpoint.key")], []):
        done = ledger_cli("checkpoint", "--json", "--ledger", str(typo), *key)
        _no_traceback(done)
        assert done.returncode == 2, done.stderr
        assert str(typo) in json.loads(done.stdout)["error"]["message"]
        assert str(typo) in done.stderr and "does not exist" in done.stderr
    assert not (tmp_path / "typo").exists()
    assert {p.name: p.read_bytes() for p in keys.iterdir()} == kept
    assert not (tmp_path / "data").exists(), "no default key is made for a missing ledger"


@pytest.mark.parametrize("text", ["²", "٣", "1_0"])
def test_seq_and_expect_head_take_ascii_digits_only(tmp_path: Path, text: str) -> None:
    ledger = _note_ledger(tmp_path / "ledger", 12)
    done = ledger_cli("verify", "--ledger", str(ledger), "--expect-head", f"{text}:{'a' * 64}")
    _no_traceback(done)
    assert done.returncode == 2 and "SEQ:HASH" in done.stderr
    done = ledger_cli("show", "--ledger", str(ledger), text)
    assert done.returncode == 2 and "whole number" in done.stderr


def test_expect_head_with_a_short_hash_says_how_long(tmp_path: Path) -> None:
    ledger = _note_ledger(tmp_path / "ledger")
    done = ledger_cli("verify", "--ledger", str(ledger), "--expect-head", "1:" + "a" * 63)
    assert done.returncode == 2 and "64 hex digits" in done.stderr


def test_verify_from_past_the_end_is_a_usage_error(tmp_path: Path) -> None:
    ledger = _note_ledger(tmp_path / "ledger", 3)
    done = ledger_cli("verify", "--ledger", str(ledger), "--from", "50", "--json")
    assert done.returncode == 2, done.stdout
    assert "ends at event 2" in json.loads(done.stdout)["error"]["message"]


def test_a_foreign_lmdb_store_is_not_turned_into_a_ledger(tmp_path: Path) -> None:
    store = tmp_path / "other"
    env = lmdb.open(str(store))
    with env.begin(write=True) as txn:
        txn.put(b"their-key", b"their-value")
    env.close()
    before = (store / "data.mdb").read_bytes()
    done = ledger_cli("append", "--ledger", str(store), "--kind", "note.x", "--data", "1")
    assert done.returncode == 2 and "not a bvisor ledger" in done.stderr
    assert (store / "data.mdb").read_bytes() == before


@pytest.mark.parametrize("damage", ["cut", "garbage", "foreign"])
def test_an_append_onto_a_store_it_refuses_leaves_no_lock_file(tmp_path: Path, damage: str) -> None:
    """The writer's LMDB open made lock.mdb before the store was judged, so a ledger
    copied without its lock file and cut short, or no LMDB file at all, gained one."""
    store = tmp_path / "store"
    if damage == "foreign":
        env = lmdb.open(str(store))
        with env.begin(write=True) as txn:
            txn.put(b"their-key", b"their-value")
        env.close()
    else:
        _note_ledger(store, 400)
        data = (store / "data.mdb").read_bytes()
        cut = data[: len(data) // 2] if damage == "cut" else random.randbytes(len(data))
        (store / "data.mdb").write_bytes(cut)
    (store / "lock.mdb").unlink()
    before = (store / "data.mdb").read_bytes()
    for argv in (["--data", "1"], ["--batch"]):
        done = ledger_cli(
            "append", "--ledger", str(store), "--kind", "note.x", *argv, input='{"data": 1}\n'
        )
        _no_traceback(done)
        assert done.returncode in (1, 2), (damage, done.returncode, done.stderr)
        assert sorted(os.listdir(store)) == ["data.mdb"], damage
        assert (store / "data.mdb").read_bytes() == before


def test_an_empty_data_file_is_named(tmp_path: Path) -> None:
    store = tmp_path / "l"
    store.mkdir()
    (store / "data.mdb").write_bytes(b"")
    done = ledger_cli("head", "--ledger", str(store))
    assert done.returncode == 2 and "data.mdb is empty" in done.stderr


@pytest.mark.parametrize(
    ("kind", "make"),
    [
        ("a FIFO", os.mkfifo),
        ("a directory", os.mkdir),
        ("a device", lambda path: os.symlink("/dev/zero", path)),
    ],
)
def test_a_data_file_that_is_no_file_is_named(
    tmp_path: Path, kind: str, make: Callable[[Path], None]
) -> None:
    """A FIFO or a device at data.mdb was called empty, a directory was a bare LMDB error;
    each is named for what it is, and nothing is opened through it."""
    store = tmp_path / "l"
    store.mkdir()
    make(store / "data.mdb")
    for argv in (["head"], ["verify"], ["append", "--kind", "note.x", "--data", "1"]):
        done = ledger_cli(*argv, "--ledger", str(store), timeout=20)
        assert done.returncode == 2 and f"data.mdb is {kind}" in done.stderr, done.stderr


def test_a_damaged_store_is_reported_without_a_traceback(tmp_path: Path) -> None:
    """Flipped bits in data.mdb make LMDB itself fail; every reader must say so plainly."""
    source = _note_ledger(tmp_path / "source", 400)
    damaged_somewhere = False
    for seed in range(40):
        copy = tmp_path / f"c{seed}"
        shutil.copytree(source, copy)
        data = bytearray((copy / "data.mdb").read_bytes())
        rng = random.Random(seed)
        for _ in range(30):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        (copy / "data.mdb").write_bytes(bytes(data))
        for argv in (["verify"], ["runs"], ["log"], ["export"]):
            done = ledger_cli(*argv, "--ledger", str(copy))
            _no_traceback(done)
            assert done.returncode in (0, 1, 2), done.stderr
            damaged_somewhere |= "LMDB store is damaged" in done.stderr
        done = replay_cli("--ledger", str(copy))
        _no_traceback(done)
        assert done.returncode in (0, 1, 2), done.stderr
        if damaged_somewhere:
            break
    assert damaged_somewhere, "no seed damaged the B-tree itself; pick other seeds"


def test_a_store_cut_short_is_named_by_every_command_and_left_alone(tmp_path: Path) -> None:
    """A data.mdb shorter than the pages its meta page names (a partial copy, a full disk)
    was a SIGBUS in every command that read past the end: each died without a word (exit
    -7), and a run could die halfway through being recorded. Now each says so, changes
    nothing, and a run does not start."""
    store = _note_ledger(tmp_path / "ledger", 400)
    data = (store / "data.mdb").read_bytes()
    cut = data[: len(data) // 2]
    (store / "data.mdb").write_bytes(cut)
    for argv in (["verify"], ["runs"], ["log"], ["export"], ["head"]):
        done = ledger_cli(*argv, "--ledger", str(store))
        _no_traceback(done)
        assert done.returncode in (1, 2), (argv, done.returncode, done.stderr)
        assert "the file was cut short" in done.stderr, (argv, done.stderr)
    done = ledger_cli("verify", "--ledger", str(store))
    assert done.returncode == 1, "a cut store is a finding of verify"
    done = replay_cli("--ledger", str(store))
    _no_traceback(done)
    assert done.returncode == 2 and "the file was cut short" in done.stderr, done.stderr
    work = tmp_path / "work"
    work.mkdir()
    marker = work / "ran"
    command = ["run", "--ledger", str(store), "--", "/bin/touch", str(marker)]
    done = subprocess.run(
        [sys.executable, "-m", "bvisor.front.cli.main", *command],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=120,
    )
    _no_traceback(done)
    assert done.returncode == 125 and "the file was cut short" in done.stderr, done.stderr
    assert not marker.exists(), "the workload ran though its run could not be recorded"
    assert (store / "data.mdb").read_bytes() == cut


def test_a_run_the_host_denied_says_why_and_still_replays(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    spec = tmp_path / "missing.toml"
    spec.write_text(
        '[workload]\nexe = "/nonexistent/tool"\n[[control]]\ntype = "launch_workload"\n'
    )
    done = bvisor("run", "--ledger", str(ledger), "--spec", str(spec))
    _no_traceback(done)
    assert done.returncode == 125
    assert "bvisor: not run: workload executable /nonexistent/tool" in done.stderr
    replayed = replay_cli("--ledger", str(ledger))
    assert replayed.returncode == 0, replayed.stdout


def test_an_inherited_fd_bvisor_was_not_started_with_is_a_usage_error(tmp_path: Path) -> None:
    """fd 3 unopened by the shell would be one of bvisor's own (the ledger's lock.mdb)."""
    work = tmp_path / "work"
    work.mkdir()
    spec = work / "spec.toml"
    spec.write_text(
        '[workload]\nexe = "/bin/true"\n'
        '[[capability]]\ntype = "inherited_fds"\nonly = [3]\n'
        '[[control]]\ntype = "launch_workload"\n'
    )
    ledger = tmp_path / "ledger"
    done = bvisor("run", "--ledger", str(ledger), "--spec", str(spec))
    _no_traceback(done)
    assert done.returncode == 2, done.stderr
    assert "was not open when bvisor started" in done.stderr
    assert not ledger.exists(), "a refused run must leave no ledger behind"


def _peak_kib(command: list[str]) -> tuple[int, int, str]:
    """(exit status, the child's peak resident KiB as the kernel counted it, stderr)."""

    def bounded() -> None:  # an unbounded read fails, instead of taking the machine
        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))

    child = subprocess.Popen(
        command,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=bounded,
    )
    assert child.stderr is not None
    err = child.stderr.read()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    return child.returncode, usage.ru_maxrss, err


def test_an_input_file_is_bounded_while_it_is_read(tmp_path: Path) -> None:
    """Found by attack: ``--bundle`` (made to come from untrusted parties) was read whole
    before its 512 MiB bound was checked, so ``/dev/zero`` grew the process past 8 GB and
    a 2 GiB file of holes took 2 GiB; ``append --file /dev/zero`` hung. Every file
    argument is now read by one bounded reader: a regular file past the bound is refused
    before a byte is read, a device never read. Oracle: the kernel's peak RSS of the
    command (wait4), and its exit status."""
    keys = tmp_path / "keys"
    done = ledger_cli("keygen", "--out", str(keys))
    assert done.returncode == 0, done.stderr
    pub = str(keys / "checkpoint.pub")
    big = tmp_path / "big.bundle"
    with open(big, "wb") as file:
        file.truncate(1 << 30)
    replay = [sys.executable, "-m", "bvisor.front.cli.replay_cmd", "--bundle"]
    for source, said in ((str(big), "larger than"), ("/dev/zero", "not a regular file")):
        status, peak, err = _peak_kib([*replay, source, "--pub", pub])
        assert status == 2 and said in err, err
        assert peak < 200 * 1024, f"{source}: peak RSS {peak} KiB"
    done = ledger_cli(
        "--ledger", str(tmp_path / "l"), "append", "--kind", "note.external", "--file",
        "/dev/zero", timeout=20,
    )  # fmt: skip
    assert done.returncode == 2 and "not a regular file" in done.stderr, done.stderr
    assert not (tmp_path / "l").exists()


def test_a_ledgers_strings_reach_the_terminal_escaped(tmp_path: Path) -> None:
    """Found by attack: ``bvisor-ledger runs`` printed a run's recorded outcome as the
    ledger held it, so an outcome holding ``ESC [2J`` and an OSC title cleared the
    caller's screen and retitled it. Whoever could write the ledger chose those bytes;
    every line the command writes now escapes what a terminal could obey."""
    path = tmp_path / "ledger"
    run_id = bytes(range(32))
    forged = "completed\x1b[2J\x1b]0;owned\x07\u202e"
    with Ledger.open(path, create=True) as ledger:
        ledger.append("run.terminal", {"outcome": forged}, run_id=run_id)
    done = ledger_cli("--ledger", str(path), "runs")
    assert done.returncode == 0, done.stderr
    assert "\x1b" not in done.stdout and "\x07" not in done.stdout, repr(done.stdout)
    assert "\u202e" not in done.stdout and "\\x1b[2J" in done.stdout, repr(done.stdout)
