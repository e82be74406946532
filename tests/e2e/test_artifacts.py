"""A run's artifacts end to end: listed with their digests, committed to a host directory,
discarded, bounded — each judged from outside, with the planted lies that turn it red.

Oracles: the host's artifact directory and write root (the test reads the files there and
computes SHA-256 and BLAKE3 itself), the bytes the test had the workload write, the host's
own /tmp, the ledger re-verified by replay. The spec is the default boundary (private
root, /tmp a tmpfs of the run, HOME in it, the working directory read-write) plus the
outputs controls.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import blake3
import pytest

from bvisor import canonical
from bvisor.contract import (
    BoundarySpec,
    CommitArtifact,
    DiscardArtifact,
    Durability,
    ExposePath,
    FsAccess,
    ListOutputs,
    Outcome,
)
from bvisor.contract import outputs as g
from bvisor.contract.report import SealedReport
from bvisor.front.api import run_confined
from bvisor.front.defaults import default_spec
from bvisor.launcher.host.backend import LinuxBackend
from bvisor.launcher.host.locate import default_launcher_path
from bvisor.launcher.host.reach import ArtifactsReachable
from bvisor.ledger import Ledger
from bvisor.planner.rules.v2.outputs import MAX_FILES
from bvisor.replay import VERIFIED, audit
from tests.e2e.helpers import unique_marker
from tests.features import require_feature


@pytest.fixture(autouse=True)
def _needs_a_private_root() -> None:
    for feature in ("landlock", "pidns", "seccomp", "netns"):
        require_feature(feature)


@pytest.fixture
def places(tmp_path: Path) -> dict[str, Path]:
    """The run's working directory, and the ledger and artifact directories beside it."""
    work = tmp_path / "work"
    work.mkdir()
    return {"work": work, "ledger": tmp_path / "ledger", "artifacts": tmp_path / "artifacts"}


def _spec(places: dict[str, Path], script: str, *controls: Any) -> BoundarySpec:
    spec = default_spec(["/bin/sh", "-c", script], cwd=str(places["work"]))
    return dataclasses.replace(spec, controls=(*spec.controls, *controls))


def _run(
    places: dict[str, Path], spec: BoundarySpec, hooks: frozenset[str] = frozenset()
) -> SealedReport:
    backend = LinuxBackend.dangerous_with_test_hooks(default_launcher_path(), hooks)
    return run_confined(
        spec, ledger=places["ledger"], artifacts=places["artifacts"], backend=backend
    )


def _digests(data: bytes) -> tuple[str, str]:
    return hashlib.sha256(data).hexdigest(), blake3.blake3(data).hexdigest()


def _committed_dir(places: dict[str, Path], report: SealedReport) -> Path:
    return places["artifacts"] / report.body.attempt_id.hex()


def _host_files(directory: Path) -> dict[bytes, bytes]:
    return {
        os.fsencode(path.relative_to(directory)): path.read_bytes()
        for path in directory.rglob("*")
        if path.is_file() and not path.is_symlink()
    }


def _facts(report: SealedReport, kind: str) -> list[str]:
    return [fact.detail for fact in report.body.observed if fact.kind == kind]


def _artifacts(report: SealedReport) -> dict[bytes, g.OutputItem]:
    items = [g.parse_item(f"{g.ARTIFACT} {text}") for text in report.body.artifacts]
    return {g.unescape_path(item.get("path")): item for item in items if item is not None}


COMMIT = CommitArtifact(Durability.SYNCED)


def test_committed_files_reach_the_host_with_the_digests_the_report_names(
    places: dict[str, Path],
) -> None:
    payload = os.urandom(100_000)
    (places["work"] / "payload.bin").write_bytes(payload)
    script = (
        "cp payload.bin /tmp/out.bin; mkdir -p $HOME/notes; printf 'note\\n' > $HOME/notes/n.txt"
    )
    report = _run(places, _spec(places, script, ListOutputs(), COMMIT))
    committed = _committed_dir(places, report)
    host = _host_files(committed)
    assert host == {b"out.bin": payload, b"home/notes/n.txt": b"note\n"}, sorted(host)
    artifacts = _artifacts(report)
    assert set(artifacts) == set(host)
    for path, data in host.items():
        item = artifacts[path]
        # The oracle: digests computed here, from the host's copy and from what was written.
        assert (item.get("sha256"), item.get("blake3")) == _digests(data)
        assert item.number("size") == len(data)
    (committed_fact,) = _facts(report, g.COMMITTED)
    assert committed_fact == f"count:2 dir:{g.escape_path(os.fsencode(committed))}"
    assert [p.name for p in places["artifacts"].iterdir()] == [committed.name], "no staging left"
    with Ledger.open(places["ledger"]) as ledger:
        (run,) = audit(ledger).runs
    assert run.verdict == VERIFIED, run.checks


def test_a_file_of_holes_stays_holes_on_the_host(places: dict[str, Path]) -> None:
    """A file of holes costs the workload nothing in its tmpfs (``truncate``); its copy
    must cost the host no more. Found by attack: the walk wrote every zero it read, so a
    1000 MiB file of holes became 1000 MiB of the host's disk in the artifact directory,
    past the tmpfs's size and every storage bound. Oracle: the committed file's blocks
    (``st_blocks``) and bytes on the host, against the bytes the test had written."""
    size = 64 << 20
    script = (
        "printf head > /tmp/sparse; truncate -s 64M /tmp/sparse; printf tail >> /tmp/sparse; "
        # a byte in every MiB: no chunk the walk reads is all zeros, yet 16 pages hold it
        "for i in $(seq 0 15); do printf x | "
        "dd of=/tmp/dots bs=1 seek=$((i * 1048576)) conv=notrunc 2>/dev/null; done"
    )
    report = _run(places, _spec(places, script, ListOutputs(), COMMIT))
    dots = bytearray(15 * (1 << 20) + 1)
    dots[:: 1 << 20] = b"x" * 16
    for name, expected in ((b"sparse", b"head" + bytes(size - 4) + b"tail"), (b"dots", dots)):
        copied = _committed_dir(places, report) / os.fsdecode(name)
        assert copied.read_bytes() == expected
        assert _artifacts(report)[name].get("sha256") == _digests(bytes(expected))[0]
        on_disk = copied.stat().st_blocks * 512
        assert on_disk < 1 << 20, f"{name!r}: {on_disk} bytes of the host's disk"


def test_a_file_with_many_names_is_copied_once(places: dict[str, Path]) -> None:
    """One file of the run's tmpfs with 48 hard links must cost the host one copy, not 48.
    Found by attack: the walk copied every name, so a workload turned 4 MiB of its tmpfs
    into as many copies as the walk's 1 GiB byte bound allows, past the tmpfs's size and
    every storage bound. Oracle: the inodes and blocks of the committed files on the host,
    and the digests computed here of the bytes the test had the workload copy."""
    payload = os.urandom(4 << 20)
    (places["work"] / "payload.bin").write_bytes(payload)
    script = (
        "mkdir -p /tmp/a/b && cp payload.bin /tmp/a/b/first && "
        "for i in $(seq 1 47); do ln /tmp/a/b/first /tmp/name$i; done"
    )
    report = _run(places, _spec(places, script, ListOutputs(), COMMIT))
    committed = _committed_dir(places, report)
    names = [p for p in committed.rglob("*") if p.is_file()]
    assert len(names) == 48, sorted(map(str, names))
    inodes = {(p.stat().st_dev, p.stat().st_ino) for p in names}
    assert len(inodes) == 1, f"{len(inodes)} copies of one file on the host"
    assert sum(os.stat(c).st_blocks for c in names[:1]) * 512 < 5 << 20
    artifacts = _artifacts(report)
    assert len(artifacts) == 48
    assert {(a.get("sha256"), a.get("blake3")) for a in artifacts.values()} == {_digests(payload)}
    assert all(p.read_bytes() == payload for p in names[:2])
    with Ledger.open(places["ledger"]) as ledger:
        (run,) = audit(ledger).runs
    assert run.verdict == VERIFIED, run.checks


def test_without_a_commit_nothing_reaches_the_host(places: dict[str, Path]) -> None:
    name = f"bvisor-artifact-{unique_marker('NOCOMMIT')}"
    report = _run(places, _spec(places, f"printf kept-inside > /tmp/{name}", ListOutputs()))
    listed = [g.parse_item(f"{g.LISTED} {d}") for d in _facts(report, g.LISTED)]
    assert any(item and item.get("path") == name for item in listed), "it is listed"
    assert not report.body.artifacts and not _facts(report, g.COMMITTED)
    assert not places["artifacts"].exists(), "nothing may be made on the host"
    assert not Path("/tmp", name).exists()


def test_discarded_outputs_go_with_the_run(places: dict[str, Path]) -> None:
    name = f"bvisor-artifact-{unique_marker('DISCARD')}"
    report = _run(places, _spec(places, f"printf gone > /tmp/{name}", DiscardArtifact()))
    assert any(d.startswith("discard:") for d in _facts(report, "outputs_lowered"))
    assert not report.body.artifacts and not places["artifacts"].exists()
    assert not Path("/tmp", name).exists()


def _planted(places: dict[str, Path], secret: Path) -> str:
    return f"ln -s {secret} /tmp/leak; mkfifo /tmp/pipe; printf fine > /tmp/fine"


def test_a_planted_symlink_or_fifo_is_neither_followed_nor_copied(
    places: dict[str, Path], tmp_path: Path
) -> None:
    secret = tmp_path / "host-secret"
    secret.write_bytes(b"HOST-ONLY-SECRET")
    report = _run(places, _spec(places, _planted(places, secret), ListOutputs(), COMMIT))
    host = _host_files(_committed_dir(places, report))
    assert host == {b"fine": b"fine"}, host
    skipped = {d.split(" path:")[1] for d in _facts(report, g.SKIPPED)}
    assert {"leak kind:symlink", "pipe kind:fifo"} <= skipped, skipped


def test_following_links_is_the_lie_the_host_oracle_catches(
    places: dict[str, Path], tmp_path: Path
) -> None:
    secret = tmp_path / "host-secret"
    secret.write_bytes(b"HOST-ONLY-SECRET")
    report = _run(
        places,
        _spec(places, _planted(places, secret), ListOutputs(), COMMIT),
        frozenset({"outputs_follow_links"}),
    )
    assert "outputs_follow_links" in _facts(report, "test_hook_active")
    host = _host_files(_committed_dir(places, report))
    assert host.get(b"leak") == b"HOST-ONLY-SECRET", "the lie must copy the host's secret"


def test_what_lies_outside_the_listed_roots_is_not_listed(
    places: dict[str, Path], tmp_path: Path
) -> None:
    (places["work"] / "before.txt").write_text("already here")
    shared = tmp_path / "shared"
    shared.mkdir()
    # The write root's delta is to the second: let the run start in a later one.
    time.sleep(1.05 - time.time() % 1)
    script = "printf shm > /dev/shm/in-shm; printf new > new.txt; printf ex > /ex/in-exposed"
    spec = _spec(
        places,
        script,
        ListOutputs(),
        ExposePath(source=str(shared), dest="/ex", access=FsAccess.READ_WRITE),
    )
    report = _run(places, spec)
    listed = {
        (item.get("root"), g.unescape_path(item.get("path")))
        for item in (g.parse_item(f"{g.LISTED} {d}") for d in _facts(report, g.LISTED))
        if item is not None
    }
    work = g.escape_path(os.fsencode(places["work"]))
    assert (work, b"new.txt") in listed and ("/ex", b"in-exposed") in listed, listed
    assert (work, b"before.txt") not in listed, "unchanged before the run: not its output"
    assert not any(path == b"in-shm" for _, path in listed), "/dev/shm is not a listed root"
    new = (places["work"] / "new.txt").read_bytes()
    (entry,) = [d for d in _facts(report, g.LISTED) if d.startswith(f"root:{work} path:new.txt")]
    assert f"sha256:{_digests(new)[0]}" in entry


def test_an_over_limit_run_says_truncated_and_commits_nothing(places: dict[str, Path]) -> None:
    count = MAX_FILES + 10
    script = f"i=0; while [ $i -lt {count} ]; do : > /tmp/f$i; i=$((i+1)); done"
    report = _run(places, _spec(places, script, ListOutputs(), COMMIT))
    (truncated,) = _facts(report, g.TRUNCATED)
    assert truncated.endswith("limit:files"), truncated
    (summary,) = _facts(report, g.SUMMARY)
    assert "truncated:yes" in summary and "commit:abandoned" in summary
    assert _facts(report, g.NOT_COMMITTED) == ["reason:listing-incomplete"]
    assert not report.body.artifacts
    assert list(places["artifacts"].iterdir()) == [], "neither the run's dir nor its staging"


def test_skipping_the_listing_is_the_lie_the_host_oracle_catches(places: dict[str, Path]) -> None:
    report = _run(
        places,
        _spec(places, "printf result > /tmp/result", ListOutputs(), COMMIT),
        frozenset({"skip_outputs"}),
    )
    host = _host_files(_committed_dir(places, report))
    assert b"result" not in host, "the lie must hide the workload's output from the host"


def test_an_artifact_directory_the_run_can_reach_is_refused_before_anything(
    places: dict[str, Path],
) -> None:
    inside = places["work"] / "artifacts"
    with pytest.raises(ArtifactsReachable):
        run_confined(_spec(places, "true", COMMIT), ledger=places["ledger"], artifacts=inside)
    assert not inside.exists() and not places["ledger"].exists(), "a refusal changes nothing"


def test_an_artifact_directory_named_through_a_link_the_workload_can_reach_is_refused(
    places: dict[str, Path], tmp_path: Path
) -> None:
    """A link in a write root (left there by an earlier workload) on the way to the
    artifact directory would let the workload choose where this run creates directories
    and commits. Found by attack."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (places["work"] / "artlink").symlink_to(elsewhere)
    named = places["work"] / "artlink" / "sub"
    with pytest.raises(ArtifactsReachable, match="named through the symlink"):
        run_confined(_spec(places, "true", COMMIT), ledger=places["ledger"], artifacts=named)
    assert list(elsewhere.iterdir()) == [], "a refusal creates nothing where the link points"


def test_a_name_re_pointed_after_the_check_is_refused_when_the_directory_is_opened(
    places: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The name is checked before the run and opened later: a link re-pointed in between
    (here by the test, at the very moment; by a racing workload in the attack, about one
    run in twenty) moved the commit into the workload's write root, where it added files
    to the committed tree and changed them after the seal. Oracle: the write root's files
    and the report."""
    from bvisor.launcher.host import artifacts

    outside = tmp_path / "outside"
    outside.mkdir()
    inside = places["work"] / "inside"
    inside.mkdir()
    link = tmp_path / "L"
    link.symlink_to(outside)
    opened = artifacts.open_staging

    def re_pointed(root: str, run_id: bytes, durable: bool) -> artifacts.Staging:
        link.unlink()
        link.symlink_to(inside)
        return opened(root, run_id, durable)

    monkeypatch.setattr(artifacts, "open_staging", re_pointed)
    report = run_confined(
        _spec(places, "echo genuine > /tmp/result", COMMIT), ledger=places["ledger"], artifacts=link
    )
    assert report.body.outcome is Outcome.DENIED, report.body.observed
    assert any(
        "which the workload can reach" in f for f in _facts(report, "launch_refused_by_host")
    )
    assert list(inside.iterdir()) == [] and list(outside.iterdir()) == []


def test_bvisor_run_commits_to_the_artifacts_directory(
    places: dict[str, Path], tmp_path: Path
) -> None:
    spec = tmp_path / "commit.toml"
    spec.write_text(
        '[workload]\nexe = "/bin/sh"\nargs = ["-c", "printf cli > /tmp/from-cli"]\n'
        '[[capability]]\ntype = "filesystem"\naccess = "read"\nroots = ["/usr"]\n'
        '[[control]]\ntype = "launch_workload"\n'
        '[[control]]\ntype = "temp_root"\n'
        '[[control]]\ntype = "commit_artifact"\ndurability = "best_effort"\n'
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bvisor.front.cli.main",
            "run",
            "--json",
            "--spec",
            str(spec),
            "--ledger",
            str(places["ledger"]),
            "--artifacts",
            str(places["artifacts"]),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=places["work"],
    )
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)["report"]
    (artifact,) = body["artifacts"]
    data = (places["artifacts"] / body["attempt_id"] / "from-cli").read_bytes()
    assert data == b"cli" and f"sha256:{_digests(data)[0]}" in artifact


def test_hostile_long_names_keep_the_record_bounded(places: dict[str, Path]) -> None:
    """Names chosen to be as long as possible once escaped: the listing stops at its path
    budget, the report stays far below the ledger's payload limit, and the run replays."""
    script = (
        "python3 -c \"import os; [open(b'/tmp/' + bytes([1]) * 240 + str(i).encode(), 'w')"
        '.close() for i in range(1100)]"'
    )
    report = _run(places, _spec(places, script, ListOutputs(), COMMIT))
    (truncated,) = _facts(report, g.TRUNCATED)
    assert truncated.endswith("limit:paths"), truncated
    size = len(canonical.encode(report.body.to_value()))
    assert size < 2 * 1024 * 1024, f"the report is {size} bytes"
    with Ledger.open(places["ledger"]) as ledger:
        (run,) = audit(ledger).runs
    assert run.verdict == VERIFIED, run.checks


def test_an_artifact_directory_another_user_may_change_is_not_used(
    places: dict[str, Path], tmp_path: Path
) -> None:
    """Found by attack: another user who may change the directory holding the artifact
    directory put ``artifacts -> /var/lib`` there, and root's run committed its outputs as
    ``/var/lib/<run id>``. Oracle: the directory the link points to gets nothing."""
    shared = tmp_path / "shared"
    shared.mkdir()
    victim = tmp_path / "victim"
    victim.mkdir()
    (shared / "artifacts").symlink_to(victim)
    os.chmod(shared, 0o777)  # not sticky: any user could have put that link there
    places["artifacts"] = shared / "artifacts"
    spec = _spec(
        places, "echo made > /tmp/out.txt", ListOutputs(), CommitArtifact(Durability.BEST_EFFORT)
    )
    report = _run(places, spec)
    assert list(victim.iterdir()) == [], "outputs were written where the planted link points"
    assert report.body.artifacts == ()
    refused = [f.detail for f in report.body.observed if f.kind == "launch_refused_by_host"]
    assert refused and "another user" in refused[0], report.body.observed
