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
    "denied-attempts.toml": (Outcome.COMPLETED, b"mount=REFUSED\nunshare=REFUSED"),
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
    spec_path = EXAMPLES / name
    demo = Path("/tmp/bvisor-demo")
    if name == "read-data-write-output.toml":
        # The example's shared /tmp path is for a person trying it; a test (and another
        # user on the same machine) must not share it: the same spec under our own dir.
        demo = tmp_path / "bvisor-demo"
        (demo / "data").mkdir(parents=True)
        (demo / "out").mkdir(parents=True)
        (demo / "data" / "in.txt").write_text("hello\n")
        spec_path = tmp_path / name
        spec_path.write_text((EXAMPLES / name).read_text().replace("/tmp/bvisor-demo", str(demo)))
    captured = bytearray()
    report = run_confined(
        load_spec(spec_path), ledger=tmp_path / "ledger", on_stdout=captured.extend
    )
    outcome, needle = EXPECTED[name]
    assert report.body.outcome is outcome, report.body.observed
    assert needle in captured
    if name == "read-data-write-output.toml":
        assert (demo / "out" / "copy.txt").read_text() == "hello\n"
        assert not (demo / "data" / "nope").exists()
    if name == "no-network.toml":
        interfaces = [line.split(":")[0].strip() for line in captured.decode().splitlines()[2:]]
        assert interfaces == ["lo"]
    if name == "denied-attempts.toml":
        denied = {(d.syscall, d.answer, d.count) for d in report.body.denied_attempts}
        assert {("mount", "EPERM", 1), ("unshare", "EPERM", 1)} <= denied, denied


def test_the_refused_example_is_refused_and_never_runs(tmp_path: Path) -> None:
    with pytest.raises(PlanRefusal) as refused:
        run_confined(load_spec(EXAMPLES / "refused-network-allow-list.toml"), ledger=tmp_path / "l")
    assert refused.value.code == "unsupported"
    assert "dns.example.org:53/udp" in refused.value.detail
