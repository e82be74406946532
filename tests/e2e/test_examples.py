"""Every example spec does what its comment says, on this kernel, for real."""

from __future__ import annotations

from pathlib import Path

import pytest

from bvisor.contract import Outcome
from bvisor.front.api import run_confined
from bvisor.front.specfile import load_spec
from bvisor.planner.errors import PlanRefusal
from tests.features import feature_missing, require_feature

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

EXPECTED: dict[str, tuple[Outcome, bytes]] = {
    "allow-descendants-atomic-kill.toml": (Outcome.COMPLETED, b"spawned=descendant"),
    "budgeted-timeout.toml": (Outcome.TIMEOUT, b""),
    "deny-new-tasks.toml": (Outcome.COMPLETED, b"fork=REFUSED errno=1"),
    "no-network.toml": (Outcome.COMPLETED, b"lo:"),
    "read-data-write-output.toml": (Outcome.COMPLETED, b"copied\ndata=READ_ONLY"),
    "network-allow-list.toml": (Outcome.COMPLETED, b"unlisted=403\ndirect=no-route"),
}


def test_every_example_is_covered() -> None:
    names = {path.name for path in EXAMPLES.glob("*.toml")}
    assert names == {*EXPECTED, "refused-network-allow-list.toml"}


# Examples that need a cgroup the caller may write: a normal user without a delegated one
# gets a refusal that says how to get it, which is what their comment promises.
NEEDS_CGROUP = {"allow-descendants-atomic-kill.toml": ("cgroup2-kill", "cgroup1-pids")}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs_as_its_comment_says(name: str, tmp_path: Path) -> None:
    for feature in ("seccomp", "landlock", "netns", "pidns"):
        require_feature(feature)
    if name == "network-allow-list.toml":
        require_feature("netns-loopback")
    if name in NEEDS_CGROUP and any(feature_missing(f) for f in NEEDS_CGROUP[name]):
        with pytest.raises(PlanRefusal) as refused:
            run_confined(load_spec(EXAMPLES / name), ledger=tmp_path / "ledger")
        assert "Delegate=yes" in refused.value.detail, refused.value
        return
    if name == "read-data-write-output.toml":
        demo = Path("/tmp/bvisor-demo")
        (demo / "data").mkdir(parents=True, exist_ok=True)
        (demo / "out").mkdir(parents=True, exist_ok=True)
        (demo / "data" / "in.txt").write_text("hello\n")
    captured = bytearray()
    report = run_confined(
        load_spec(EXAMPLES / name), ledger=tmp_path / "ledger", on_stdout=captured.extend
    )
    outcome, needle = EXPECTED[name]
    assert report.body.outcome is outcome, report.body.observed
    assert needle in captured
    if name == "read-data-write-output.toml":
        assert Path("/tmp/bvisor-demo/out/copy.txt").read_text() == "hello\n"
        assert not Path("/tmp/bvisor-demo/data/nope").exists()
    if name == "no-network.toml":
        interfaces = [line.split(":")[0].strip() for line in captured.decode().splitlines()[2:]]
        assert interfaces == ["lo"]


def test_the_refused_example_is_refused_and_never_runs(tmp_path: Path) -> None:
    with pytest.raises(PlanRefusal) as refused:
        run_confined(load_spec(EXAMPLES / "refused-network-allow-list.toml"), ledger=tmp_path / "l")
    assert refused.value.code == "unsupported"
    assert "dns.example.org:53/udp" in refused.value.detail
