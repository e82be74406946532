"""`bvisor probe` and `bvisor plan`: text and JSON output, exit codes, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bvisor.contract import mechanisms as mech
from bvisor.contract.profile import HostFacts
from bvisor.front.cli.main import main
from bvisor.planner.rules.v2.network import netproxy_missing
from tests.features import require_feature

DENY_TASKS = """
[workload]
exe = "/bin/sh"
args = ["-c", "echo hi"]

[[capability]]
type = "child_spawn"
policy = "deny_new_tasks"

[[control]]
type = "launch_workload"
[[control]]
type = "capture_streams"
stdout = true
stderr = true
"""

# A spec the current rules refuse: an allow list entry the proxy cannot relay (UDP).
ALLOW_LIST = (
    DENY_TASKS
    + """
[[capability]]
type = "network"
allow_list = ["example.org:53/udp"]
"""
)


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def spec_file(tmp_path: Path, text: str, name: str = "spec.toml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_probe_json(capsys: pytest.CaptureFixture[str], live_facts: HostFacts) -> None:
    status, out, _ = run_cli(capsys, "probe", "--json")
    assert status == 0
    doc = json.loads(out)
    assert set(doc) == {"backend", "facts", "ceiling", "h_p"}
    for key in ("landlock_abi", "seccomp_actions", "userns", "netns", "cgroup"):
        assert key in doc["facts"]
    assert doc["facts"]["landlock_abi"] == live_facts.landlock_abi
    cell = doc["ceiling"]["child_spawn_deny_new_tasks"]
    assert set(cell) == {"enforcement", "mechanism", "evidence", "reason"}
    proxy = netproxy_missing(live_facts) is None
    assert doc["ceiling"]["network_allow_list"]["enforcement"] == (
        "Enforced" if proxy else "Unsupported"
    )
    assert len(bytes.fromhex(doc["h_p"])) == 32


def test_probe_text(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run_cli(capsys, "probe")
    assert status == 0
    for heading in ("Facts", "Ceiling", "How the facts were established", "h_p "):
        assert heading in out
    assert "linux:seccomp_thread_clones:Enforced" in out


def test_plan_json_admitted(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    require_feature("seccomp")
    status, out, _ = run_cli(capsys, "plan", spec_file(tmp_path, DENY_TASKS), "--json")
    assert status == 0
    doc = json.loads(out)
    assert doc["admitted"] is True
    for key in ("plan_id", "h_a", "h_p", "h_l"):
        assert len(bytes.fromhex(doc[key])) == 32
    ids = [e["id"] for e in doc["lowering"]]
    assert mech.SECCOMP.id in ids and mech.STREAMS.id in ids
    assert set(doc["lowering"][0]) == {"id", "version", "phase_code", "param_digest", "decl_digest"}
    keys = {r["key"]: r for r in doc["requirements"]}
    assert keys["child_spawn_deny_new_tasks"]["mechanism"] == "linux:seccomp_deny_tasks:Enforced"
    # Planning twice on the same host gives the same plan id.
    status, again, _ = run_cli(capsys, "plan", spec_file(tmp_path, DENY_TASKS), "--json")
    assert json.loads(again)["plan_id"] == doc["plan_id"]


def test_plan_text_admitted(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    require_feature("seccomp")
    status, out, _ = run_cli(capsys, "plan", spec_file(tmp_path, DENY_TASKS))
    assert status == 0
    assert "admitted" in out and "plan_id" in out and "Lowering" in out
    assert mech.SECCOMP.id in out


def test_plan_names_the_families_a_spec_leaves_unconfined(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A spec confines what it names: one without a filesystem or network capability
    leaves the workload the host's. The plan says so in both forms, and says nothing of
    a family the spec names."""
    require_feature("seccomp")
    status, out, _ = run_cli(capsys, "plan", spec_file(tmp_path, DENY_TASKS), "--json")
    assert status == 0 and json.loads(out)["not_confined"] == ["filesystem", "network"]
    status, out, _ = run_cli(capsys, "plan", spec_file(tmp_path, DENY_TASKS))
    assert "Not confined" in out and "abstract socket names" in out
    named = DENY_TASKS + '[[capability]]\ntype = "network"\npolicy = "deny_all"\n'
    status, out, _ = run_cli(capsys, "plan", spec_file(tmp_path, named), "--json")
    assert status == 0 and json.loads(out)["not_confined"] == ["filesystem"]


def test_plan_refused_exits_125(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = spec_file(tmp_path, ALLOW_LIST)
    status, out, _ = run_cli(capsys, "plan", path, "--json")
    assert status == 125
    doc = json.loads(out)
    assert doc["admitted"] is False
    assert (doc["code"], doc["requirement"]) == ("unsupported", "network_allow_list")
    assert "relays TCP only" in doc["detail"]
    status, out, _ = run_cli(capsys, "plan", path)
    assert status == 125
    assert "refused [unsupported] (network_allow_list)" in out


def test_plan_bad_spec_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = DENY_TASKS.replace('policy = "deny_new_tasks"', 'policy = "sometimes"')
    status, out, err = run_cli(capsys, "plan", spec_file(tmp_path, bad), "--json")
    assert status == 2
    # With --json, stdout is still one document: the error, naming the key path.
    assert json.loads(out)["error"]["path"] == "capability[0].policy"
    assert "capability[0].policy" in err and "Traceback" not in err
    status, _, err = run_cli(capsys, "plan", str(tmp_path / "missing.toml"))
    assert status == 2 and "cannot read spec file" in err


def test_plan_shows_the_allow_list_s_proxy(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, live_facts: HostFacts
) -> None:
    if netproxy_missing(live_facts) is not None:
        pytest.skip(f"LOUD SKIP: no allow list here ({netproxy_missing(live_facts)})")
    spec = DENY_TASKS + '[[capability]]\ntype = "network"\nallow_list = ["pypi.org:443"]\n'
    path = spec_file(tmp_path, spec)
    status, out, _ = run_cli(capsys, "plan", path, "--json")
    assert status == 0, out
    network = json.loads(out)["network"]
    assert network["listener"] == "127.0.0.1:3128" and network["allow"] == ["pypi.org:443"]
    assert network["environment"]["HTTPS_PROXY"] == "http://127.0.0.1:3128"
    status, out, _ = run_cli(capsys, "plan", path)
    assert "allow     pypi.org:443" in out and "env       ALL_PROXY=socks5h://" in out
