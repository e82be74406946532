"""`bvisor-ledger` through main([...]) and once as a real process."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bvisor.front.cli.ledger_cmd import main
from bvisor.ledger import Ledger
from tests.ledger.testkit import REPO, RUN_A, build, get_record, put_record


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    code, out, _ = run(capsys, *argv, "--json")
    return code, json.loads(out)


def feed(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(text.encode())))


def test_append_and_read_back(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ledger = str(tmp_path / "l")
    code, out, _ = run(
        capsys,
        "append",
        "--ledger",
        ledger,
        "--kind",
        "note.external",
        "--data",
        '{"msg": "hi", "n": 3}',
    )
    assert code == 0
    seq, _, digest = out.strip().partition(":")
    assert seq == "0" and len(digest) == 64
    code, doc = run_json(
        capsys,
        "--ledger",
        ledger,
        "append",
        "--kind",
        "note.external",
        "--run",
        RUN_A.hex(),
        "--data",
        "[1, 2]",
    )
    assert code == 0 and doc["seq"] == 1
    payload_file = tmp_path / "p.json"
    payload_file.write_text('{"from": "file"}')
    assert (
        run(capsys, "append", "--ledger", ledger, "--kind", "note.f", "--file", str(payload_file))[
            0
        ]
        == 0
    )
    code, out, _ = run(capsys, "head", "--ledger", ledger)
    assert code == 0 and out.startswith("2:")
    code, shown = run_json(capsys, "show", "2", "--ledger", ledger)
    assert shown["payload"] == {"from": "file"} and shown["seq"] == 2
    assert f"{shown['seq']}:{shown['hash']}" == out.strip()
    code, logged = run_json(capsys, "log", "--ledger", ledger, "--kind", "note.*", "--limit", "2")
    assert [e["seq"] for e in logged] == [1, 2]
    code, logged = run_json(capsys, "log", "--ledger", ledger, "--run", RUN_A.hex())
    assert [e["seq"] for e in logged] == [1]
    code, out, _ = run(capsys, "log", "--ledger", ledger)
    assert code == 0 and len(out.splitlines()) == 3 and "note.external" in out
    code, runs = run_json(capsys, "runs", "--ledger", ledger)
    assert runs[0]["run"] == RUN_A.hex() and runs[0]["outcome"] is None
    code, out, _ = run(capsys, "export", "--ledger", ledger)
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["seq"] for line in lines] == [0, 1, 2]
    assert lines[1]["run"] == RUN_A.hex() and lines[0]["payload"] == {"msg": "hi", "n": 3}
    with Ledger.open(ledger, readonly=True) as handle:
        assert bytes.fromhex(lines[2]["record"]) == handle.get(2).raw


def test_append_from_stdin_and_default_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BVISOR_LEDGER", str(tmp_path / "env-ledger"))
    feed(monkeypatch, '{"a": [true, null]}')
    assert run(capsys, "append", "--kind", "note.stdin", "-")[0] == 0
    with Ledger.open(tmp_path / "env-ledger", readonly=True) as handle:
        assert handle.get(0).payload == {"a": [True, None]}


def test_batch_stops_at_the_first_bad_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = str(tmp_path / "l")
    lines = [
        '{"kind": "note.a", "data": 1}',
        '{"data": 2}',
        "",
        '{"kind": "note.c", "run": "' + RUN_A.hex() + '", "data": {"x": "y"}}',
        '{"kind": "note.d", "data": 1.5}',
        '{"kind": "note.e", "data": 5}',
    ]
    feed(monkeypatch, "\n".join(lines) + "\n")
    code, out, err = run(
        capsys,
        "append",
        "--batch",
        "--kind",
        "note.default",
        "--group",
        "2",
        "--ledger",
        ledger,
        "--json",
    )
    assert code == 2
    doc = json.loads(out)
    assert doc["appended"] == 3 and doc["error"]["line"] == 5
    assert "line 5" in err and "not an integer" in err
    with Ledger.open(ledger, readonly=True) as handle:
        kinds = [event.kind for event in handle.events()]
        assert kinds == ["note.a", "note.default", "note.c"]  # nothing after line 5
        assert handle.run_events(RUN_A)[0].payload == {"x": "y"}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "not valid JSON"),
        ('{"kind": "Bad", "data": 1}', "dotted lower-case"),
        ('{"kind": "note.a"}', "missing field 'data'"),
        ('{"kind": "note.a", "data": 1, "extra": 2}', "unknown field 'extra'"),
        ('{"kind": "note.a", "run": "zz", "data": 1}', "hexadecimal"),
        ('{"kind": "note.a", "data": 1, "data": 2}', "duplicate key"),
        ('{"kind": "note.a", "data": 18446744073709551616}', "64-bit"),
        ("[1]", "JSON object"),
    ],
)
def test_batch_bad_line_messages(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    line: str,
    message: str,
) -> None:
    feed(monkeypatch, '{"kind": "note.ok", "data": 0}\n' + line + "\n")
    code, _out, err = run(capsys, "append", "--batch", "--ledger", str(tmp_path / "l"))
    assert code == 2 and "line 2" in err and message in err, err
    assert "Traceback" not in err
    with Ledger.open(tmp_path / "l", readonly=True) as handle:
        assert [e.kind for e in handle.events()] == ["note.ok"]


def test_verify_exit_codes_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "l"
    build(path, 10)
    code, doc = run_json(capsys, "verify", "--ledger", str(path))
    assert code == 0
    assert set(doc) == {"ok", "events", "head", "first_bad_seq", "findings"}
    assert doc["ok"] is True and doc["events"] == 10 and doc["head"]["seq"] == 9
    head = f"{doc['head']['seq']}:{doc['head']['hash']}"
    code, out, _ = run(capsys, "verify", "--ledger", str(path), "--expect-head", head)
    assert code == 0 and out.startswith("ok: 10 events")
    code, doc = run_json(capsys, "verify", "--ledger", str(path), "--from", "2", "--to", "4")
    assert code == 0 and doc["events"] == 3
    record = bytearray(get_record(path, 5))
    record[-1] ^= 0x01
    put_record(path, 5, bytes(record))
    code, doc = run_json(capsys, "verify", "--ledger", str(path))
    assert code == 1 and doc["ok"] is False and doc["first_bad_seq"] == 5
    assert doc["findings"] == [
        {"seq": 5, "code": "payload-hash-mismatch", "detail": doc["findings"][0]["detail"]}
    ]
    code, out, _ = run(capsys, "verify", "--ledger", str(path))
    assert code == 1 and "payload-hash-mismatch" in out and "seq 5" in out
    code, out, _ = run(capsys, "show", "5", "--ledger", str(path))
    assert code == 1  # a damaged event is refused on read, not shown as if intact


@pytest.mark.parametrize(
    "argv",
    [
        ["verify", "--expect-head", "nonsense"],
        ["verify", "--expect-head", "3:abcd"],
        ["verify", "--from", "-1"],
        ["verify", "--from", "5", "--to", "2"],
        ["show", "x"],
        ["append", "--kind", "note.a"],
        ["append", "--kind", "note.a", "--data", "1", "--file", "f"],
        ["append", "--kind", "note.a", "--data", "{bad"],
        ["append", "--kind", "note.a", "--data", "1.25"],
        ["append", "--kind", "note.a", "--data", "NaN"],
        ["append", "--kind", "NOTE", "--data", "1"],
        ["append", "--kind", "note.a", "--run", "xyz", "--data", "1"],
        ["append", "--kind", "note.a", "--file", "/nonexistent/file"],
        ["log", "--run", "not-hex"],
        ["frobnicate"],
    ],
)
def test_usage_errors_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    build(tmp_path / "l", 3)
    code, out, err = run(capsys, *argv, "--ledger", str(tmp_path / "l"))
    assert code == 2, (out, err)
    assert err.startswith("bvisor-ledger: ") and "Traceback" not in err
    with Ledger.open(tmp_path / "l", readonly=True) as handle:
        head = handle.head()
        assert head is not None and head.seq == 2  # nothing was written


def test_not_found_and_not_a_ledger(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    build(tmp_path / "l", 3)
    ledger = str(tmp_path / "l")
    assert run(capsys, "show", "99", "--ledger", ledger)[0] == 1
    assert run(capsys, "log", "--run", "00ff", "--ledger", ledger)[0] == 1
    assert run(capsys, "export", "--run", "00ff", "--ledger", ledger)[0] == 1
    (tmp_path / "plain").mkdir()
    for command in ("verify", "log", "head", "runs", "export"):
        code, doc = run_json(capsys, command, "--ledger", str(tmp_path / "plain"))
        assert code == 2 and "no ledger" in doc["error"]["message"]
    code, _out, err = run(capsys, "verify", "--ledger", str(tmp_path / "missing"))
    assert code == 2 and "does not exist" in err
    assert not (tmp_path / "missing").exists()  # reading never creates a ledger


def test_head_of_an_empty_ledger(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    Ledger.open(tmp_path / "l", create=True).close()
    code, out, err = run(capsys, "head", "--ledger", str(tmp_path / "l"))
    assert code == 1 and out == "" and "empty" in err
    code, doc = run_json(capsys, "verify", "--ledger", str(tmp_path / "l"))
    assert code == 0 and doc["events"] == 0 and doc["head"] is None


def test_as_a_process(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO), BVISOR_LEDGER=str(tmp_path / "l"))
    command = [sys.executable, "-m", "bvisor.front.cli.ledger_cmd"]
    lines = "".join(f'{{"kind": "note.batch", "data": {i}}}\n' for i in range(1000))
    done = subprocess.run(
        [*command, "append", "--batch", "--json"],
        input=lines.encode(),
        capture_output=True,
        env=env,
        cwd=REPO,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["appended"] == 1000
    head = subprocess.run([*command, "head"], capture_output=True, env=env, cwd=REPO, check=True)
    done = subprocess.run(
        [*command, "verify", "--expect-head", head.stdout.decode().strip()],
        capture_output=True,
        env=env,
        cwd=REPO,
        check=False,
    )
    assert done.returncode == 0 and done.stdout.startswith(b"ok: 1000 events"), done
    bad = subprocess.run([*command, "show", "nope"], capture_output=True, env=env, cwd=REPO)
    assert bad.returncode == 2 and b"Traceback" not in bad.stderr


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_only_on_a_terminal_and_for_large_ranges() -> None:
    from bvisor.front.cli.ledger_cmd import _progress_printer

    assert _progress_printer(io.StringIO()) is None
    terminal = _Terminal()
    show = _progress_printer(terminal)
    assert show is not None
    show(100, 100)  # small: silent
    show(4096, 50_000)
    show(50_000, 50_000)
    assert terminal.getvalue() == "\rverifying: 4096/50000 events\rverifying: 50000/50000 events\n"


def test_verify_reports_progress(tmp_path: Path) -> None:
    from bvisor.ledger import verify

    build(tmp_path / "l", 5000)
    calls: list[tuple[int, int]] = []
    assert verify(tmp_path / "l", progress=lambda done, total: calls.append((done, total))).ok
    assert calls == [(4096, 5000), (5000, 5000)]


def test_log_and_export_take_a_unique_run_prefix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with Ledger.open(tmp_path / "l", create=True) as store:
        store.append("note.external", {"n": 1}, bytes.fromhex("aa11"))
        store.append("note.external", {"n": 2}, bytes.fromhex("aa22"))
    ledger = str(tmp_path / "l")
    code, out, _ = run(capsys, "log", "--run", "aa1", "--ledger", ledger)
    assert code == 0 and "aa11" in out and "aa22" not in out
    code, out, _ = run(capsys, "export", "--run", "AA2", "--ledger", ledger)
    assert code == 0 and len(out.splitlines()) == 1 and '"run": "aa22"' in out
    code, _, err = run(capsys, "log", "--run", "aa", "--ledger", ledger)
    assert code == 2 and "ambiguous" in err


def test_runs_says_refused_for_a_plan_refused_at_admission(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A refusal is recorded alone (no run.terminal): ``runs`` says ``refused``, as replay
    does, and a run cut short after its plan still says ``incomplete``."""
    ledger = tmp_path / "l"
    refused, cut_short = b"\x01" * 32, b"\x02" * 32
    with Ledger.open(ledger, create=True) as handle:
        handle.append("plan.refused", {"any": "payload"}, run_id=refused)
        handle.append("plan.admitted", {"any": "payload"}, run_id=cut_short)
    code, runs = run_json(capsys, "runs", "--ledger", str(ledger))
    assert code == 0
    assert {r["run"]: r["outcome"] for r in runs} == {
        refused.hex(): "refused",
        cut_short.hex(): None,
    }
    code, out, _ = run(capsys, "runs", "--ledger", str(ledger))
    assert code == 0 and f"{refused.hex()}  refused " in out
    assert f"{cut_short.hex()}  incomplete " in out


def test_runs_marks_a_run_made_with_a_test_hook(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run made with a mechanism skipped on purpose replays 'verified (test hook)' and
    attest refuses it; ``runs`` listed it as a plain 'completed'. A real skip_seccomp run
    is marked beside an honest one, in the text and in ``--json``."""
    from bvisor.front.api import run_confined
    from bvisor.launcher.host.backend import LinuxBackend
    from bvisor.launcher.host.locate import default_launcher_path
    from tests.replay.helpers import base_spec

    ledger = tmp_path / "ledger"
    hooked = LinuxBackend.dangerous_with_test_hooks(default_launcher_path(), {"skip_seccomp"})
    dangerous, honest = (
        run_confined(base_spec(["-c", "true"]), ledger=ledger, backend=backend).body.attempt_id
        for backend in (hooked, LinuxBackend())
    )
    code, runs = run_json(capsys, "runs", "--ledger", str(ledger))
    assert code == 0
    assert {r["run"]: r["test_hooks"] for r in runs} == {
        dangerous.hex(): ["skip_seccomp"],
        honest.hex(): [],
    }
    code, out, _ = run(capsys, "runs", "--ledger", str(ledger))
    lines = {line.split()[0]: line for line in out.splitlines()}
    assert code == 0 and lines[dangerous.hex()].endswith("test hook skip_seccomp: not evidence")
    assert "test hook" not in lines[honest.hex()]


def test_an_interrupted_json_command_still_prints_a_document(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by attack: Ctrl-C during ``bvisor-ledger --json verify`` or ``bvisor-replay
    --json`` left stdout empty; a script reading it now gets an error document (130)."""
    import bvisor.front.cli.ledger_cmd as ledger_cmd
    import bvisor.front.cli.replay_cmd as replay_cmd

    ledger = str(tmp_path / "l")
    assert run(capsys, "append", "--ledger", ledger, "--kind", "note.a", "--data", "1")[0] == 0

    def interrupted(*_args: Any, **_kwargs: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(ledger_cmd, "verify", interrupted)
    code, out, _ = run(capsys, "verify", "--ledger", ledger, "--json")
    assert code == 130 and json.loads(out)["error"]["code"] == "interrupted", out
    monkeypatch.setattr(replay_cmd, "audit", interrupted)
    code = replay_cmd.main(["--ledger", ledger, "--json"])
    out = capsys.readouterr().out
    assert code == 130 and json.loads(out)["error"]["code"] == "interrupted", out
