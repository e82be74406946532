"""`bvisor-replay`: table and JSON output, run id prefixes, exit codes 0 / 1 / 2."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bvisor.front.cli.replay_cmd import main
from bvisor.ledger import Ledger
from bvisor.replay import CHECK_NAMES
from tests.replay.helpers import record_refusal, record_synthetic

REPO = Path(__file__).resolve().parents[2]
FIRST = bytes.fromhex("ab00") + bytes(30)
SECOND = bytes.fromhex("ab01") + bytes(30)


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Two verified runs whose ids share the prefix ``ab0``, and a refusal."""
    path = tmp_path_factory.mktemp("good") / "ledger"
    with Ledger.open(path, create=True) as ledger:
        record_synthetic(ledger, attempt_id=FIRST)
        record_synthetic(ledger, attempt_id=SECOND)
        record_refusal(ledger)
    yield path


@pytest.fixture(scope="module")
def crashed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One verified run and one that stopped after plan.admitted."""
    path = tmp_path_factory.mktemp("crashed") / "ledger"
    with Ledger.open(path, create=True) as ledger:
        record_synthetic(ledger, attempt_id=FIRST)
        record_synthetic(ledger, attempt_id=SECOND, stop_after_admission=True)
    yield path


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_table_lists_every_run_and_exits_0(good: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "--ledger", str(good))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["RUN", "VERDICT", "OUTCOME", "TIME", "(UTC)"]
    assert lines[1].startswith(FIRST.hex()[:16]) and "verified" in lines[1] and "failed" in lines[1]
    assert lines[2].startswith(SECOND.hex()[:16])
    assert "refused" in lines[3]
    assert "3 runs: 3 verified" in out


def test_json_has_the_documented_keys(good: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "--ledger", str(good), "--json")
    assert code == 0
    document = json.loads(out)
    assert set(document) == {"ok", "ledger", "runs"} and document["ok"] is True
    assert document["ledger"]["ok"] is True and document["ledger"]["findings"] == []
    assert document["ledger"]["first_bad_seq"] is None
    run = document["runs"][0]
    assert set(run) == {"run_id", "verdict", "checks"}
    assert run["run_id"] == FIRST.hex() and run["verdict"] == "verified"
    assert [c["name"] for c in run["checks"]] == list(CHECK_NAMES)
    assert CHECK_NAMES == (
        "chain", "grammar", "h_p", "h_a", "h_l", "plan_id", "transcript", "streams", "report",
        "seal",
    )  # fmt: skip
    assert all(set(c) == {"name", "ok", "detail"} and c["ok"] is True for c in run["checks"])
    assert [c["name"] for c in document["runs"][2]["checks"]] == ["chain", "grammar", "h_p", "h_a"]


def test_a_unique_prefix_selects_one_run(good: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "--ledger", str(good), "--json", "AB01")
    assert code == 0
    assert [r["run_id"] for r in json.loads(out)["runs"]] == [SECOND.hex()]


@pytest.mark.parametrize(
    ("argument", "message"),
    [("ab0", "ambiguous"), ("ffff", "no run"), ("xyz", "hexadecimal")],
)
def test_bad_prefixes_exit_2_with_a_message(
    good: Path, capsys: pytest.CaptureFixture[str], argument: str, message: str
) -> None:
    code, out, err = _run(capsys, "--ledger", str(good), argument)
    assert code == 2 and out == ""
    assert message in err and "Traceback" not in err


def test_last_audits_only_the_most_recent_run(
    crashed: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _run(capsys, "--ledger", str(crashed), "--json", "--last")
    assert code == 1  # the most recent run is the one that stopped after admission
    assert [r["run_id"] for r in json.loads(out)["runs"]] == [SECOND.hex()]
    code, _, err = _run(capsys, "--ledger", str(crashed), "--last", "ab00")
    assert code == 2 and "either --last or run ids" in err


def test_last_on_a_ledger_without_runs_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "ledger"
    with Ledger.open(path, create=True) as ledger:
        ledger.append("note.test", {"i": 1})
    code, _, err = _run(capsys, "--ledger", str(path), "--last")
    assert code == 2 and "no runs are recorded yet" in err


def test_not_a_ledger_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "--ledger", str(tmp_path))
    assert code == 2 and "not a ledger" in err
    code, _, err = _run(capsys, "--ledger", str(tmp_path / "missing"))
    assert code == 2 and "no ledger" in err


def test_an_incomplete_run_exits_1_and_says_why(
    crashed: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _run(capsys, "--ledger", str(crashed))
    assert code == 1
    assert "incomplete" in out.splitlines()[2]
    assert f"{SECOND.hex()} incomplete:" in out
    assert "grammar: incomplete: the run has no run.terminal" in out
    code, out, _ = _run(capsys, "--ledger", str(crashed), FIRST.hex()[:6])
    assert code == 0, "naming only the verified run exits 0"


def test_default_ledger_comes_from_the_environment(
    good: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BVISOR_LEDGER", str(good))
    code, out, _ = _run(capsys, "--json")
    assert code == 0 and len(json.loads(out)["runs"]) == 3


def test_the_module_runs_as_a_command(crashed: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bvisor.front.cli.replay_cmd", "--ledger", str(crashed), "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    verdicts = [r["verdict"] for r in json.loads(done.stdout)["runs"]]
    assert verdicts == ["verified", "incomplete"]
