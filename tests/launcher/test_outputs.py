"""The outputs walk (linux.outputs.v1) at the launcher: what it lists, what it refuses to
touch, where it stops — each checked against what the test itself wrote and recomputed,
with the planted lies that turn the oracles red.

The workload is a shell in a private root with a temp root (/tmp) and a write root (a
directory of the test's). Oracles: the files on the host (the staging directory the test
passes, the write root), the digests the test computes with hashlib and blake3, and the
launcher's notes parsed with the report grammar.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import blake3
import pytest

from bvisor.contract import mechanisms as mech
from bvisor.contract import outputs as g
from bvisor.launcher.host.launch import LaunchObservation, LaunchOptions, run_launcher
from bvisor.launcher.process.verify import Refusal, verify_body
from bvisor.launcher.wire.protocol import DescriptorRole, DescriptorShape, LaunchBody
from tests.features import require_feature
from tests.launcher.conftest import Auth, build_plan, private_root
from tests.launcher.test_mechanisms import SYSTEM_ROOTS

BIG = 1 << 30


@pytest.fixture(autouse=True)
def _needs_a_private_root() -> None:
    for feature in ("pidns", "landlock"):
        require_feature(feature)


@pytest.fixture
def out(tmp_path: Path) -> Path:
    directory = tmp_path / "out"
    directory.mkdir()
    return directory


@pytest.fixture
def staging(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    directory = tmp_path / "staging"
    directory.mkdir()
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    yield directory, fd
    os.close(fd)


def _outputs(
    out: Path,
    *,
    files: int = 100,
    size: int = BIG,
    depth: int = 8,
    entries: int = 1000,
    paths: int = 1 << 20,
    commit: str | None = None,
) -> mech.Outputs:
    roots = (mech.OutputRoot("/tmp", "temp"), mech.OutputRoot(str(out), "write"))
    return mech.Outputs(roots, files, size, depth, entries, paths, commit)


def _run(
    launcher_path: str,
    out: Path,
    script: str,
    outputs: mech.Outputs,
    staging: int | None = None,
    hooks: frozenset[str] = frozenset(),
    extra_roots: tuple[tuple[str, str], ...] = (),
    options: LaunchOptions | None = None,
) -> tuple[LaunchObservation, g.OutputsReport]:
    roots = [(str(out), "read_write"), *extra_roots] + [(p, "read") for p in SYSTEM_ROOTS]
    plan, auth = build_plan(
        "/bin/sh",
        ["sh", "-c", script],
        rootfs=private_root(roots, str(out), tmp=True),
        outputs=outputs,
        staging=staging,
        hooks=hooks,
    )
    try:
        obs = run_launcher(launcher_path, plan, auth.fds, options=options)
    finally:
        auth.close()
    assert obs.exec_succeeded(), obs.notes
    return obs, g.report_items(obs.notes)


def _of(report: g.OutputsReport, kind: str) -> list[g.OutputItem]:
    return [item for item in report.items if item.kind == kind]


def _paths(
    report: g.OutputsReport, kind: str, root: str | None = None
) -> dict[bytes, g.OutputItem]:
    return {
        g.unescape_path(item.get("path")): item
        for item in _of(report, kind)
        if root is None or item.get("root") == root
    }


def _digests(data: bytes) -> tuple[str, str]:
    return hashlib.sha256(data).hexdigest(), blake3.blake3(data).hexdigest()


def _summary(report: g.OutputsReport) -> g.OutputItem:
    (summary,) = _of(report, g.SUMMARY)
    return summary


def test_files_are_listed_with_the_digests_of_their_bytes(launcher_path: str, out: Path) -> None:
    script = (
        "printf 'alpha' > /tmp/a.txt; mkdir -p /tmp/home/sub; printf 'beta\\n' > /tmp/home/sub/b;"
        " printf 'gamma' > new.txt"
    )
    _, report = _run(launcher_path, out, script, _outputs(out))
    temp = _paths(report, g.LISTED, "/tmp")
    assert set(temp) == {b"a.txt", b"home/sub/b"}, temp
    for path, data in ((b"a.txt", b"alpha"), (b"home/sub/b", b"beta\n")):
        sha, b3 = _digests(data)
        item = temp[path]
        assert (item.get("sha256"), item.get("blake3"), item.number("size")) == (sha, b3, len(data))
    written = _paths(report, g.LISTED, g.escape_path(str(out).encode()))
    assert set(written) == {b"new.txt"}
    host = (out / "new.txt").read_bytes()  # the write root is the host's own directory
    assert written[b"new.txt"].get("sha256") == _digests(host)[0]
    summary = _summary(report)
    assert summary.get("listed") == "3" and summary.get("truncated") == "no"
    assert summary.get("commit") == "none" and not _of(report, g.ARTIFACT)


def test_a_write_root_reports_only_what_changed_during_the_run(
    launcher_path: str, out: Path
) -> None:
    (out / "before.txt").write_text("was here")
    (out / "touched.txt").write_text("was here too")
    time.sleep(1.05 - time.time() % 1)  # the delta is to the second: start in a later one
    script = "printf 'x' >> touched.txt; printf 'y' > after.txt; touch -d 2001-01-01 after.txt"
    _, report = _run(launcher_path, out, script, _outputs(out))
    written = _paths(report, g.LISTED, g.escape_path(str(out).encode()))
    # touch -d sets the mtime back, but not the ctime: the file still counts as changed.
    assert set(written) == {b"touched.txt", b"after.txt"}, written
    assert written[b"touched.txt"].get("sha256") == _digests(b"was here toox")[0]


def test_links_fifos_and_sockets_are_reported_never_followed(
    launcher_path: str, out: Path, tmp_path: Path, staging: tuple[Path, int]
) -> None:
    secret = tmp_path / "host-secret.txt"
    secret.write_text("HOST-SECRET-BYTES\n")
    script = (
        f"ln -s {secret} /tmp/abs-link; ln -s ../../{secret} /tmp/rel-link; mkfifo /tmp/fifo;"
        " python3 -c 'import socket; socket.socket(socket.AF_UNIX).bind(\"/tmp/sock\")'"
        " 2>/dev/null; printf ok > /tmp/plain"
    )
    directory, fd = staging
    _, report = _run(launcher_path, out, script, _outputs(out, commit="best_effort"), fd)
    skipped = {path: item.get("kind") for path, item in _paths(report, g.SKIPPED, "/tmp").items()}
    assert skipped.get(b"abs-link") == "symlink" and skipped.get(b"rel-link") == "symlink"
    assert skipped.get(b"fifo") == "fifo", skipped
    if b"sock" in skipped:
        assert skipped[b"sock"] == "socket"
    copied = {p.relative_to(directory).as_posix(): p.read_bytes() for p in directory.rglob("*")}
    assert copied == {"plain": b"ok"}, copied
    assert all(b"HOST-SECRET" not in data for data in copied.values())


def test_following_links_is_the_lie_that_copies_a_host_secret(
    launcher_path: str, out: Path, tmp_path: Path, staging: tuple[Path, int]
) -> None:
    secret = tmp_path / "host-secret.txt"
    secret.write_text("HOST-SECRET-BYTES\n")
    directory, fd = staging
    obs, _report = _run(
        launcher_path,
        out,
        f"ln -s {secret} /tmp/abs-link; mkfifo /tmp/fifo",
        _outputs(out, commit="best_effort"),
        fd,
        hooks=frozenset({"outputs_follow_links"}),
    )
    assert "DANGER test hook active: outputs_follow_links" in obs.notes
    assert (directory / "abs-link").read_bytes() == b"HOST-SECRET-BYTES\n", "the lie must leak"
    assert (directory / "fifo").is_file(), "the lie copies a FIFO as a file"


def test_names_with_control_bytes_and_no_utf8_are_recorded_exactly(
    launcher_path: str, out: Path, staging: tuple[Path, int]
) -> None:
    directory, fd = staging
    script = "printf data > \"/tmp/$(printf 'a\\001b\\377 c%%\\nd')\"; printf two > '/tmp/-x:y'"
    obs, report = _run(launcher_path, out, script, _outputs(out, commit="synced"), fd)
    names = set(_paths(report, g.LISTED, "/tmp"))
    assert names == {b"a\x01b\xff c%\nd", b"-x:y"}, names
    assert {os.fsencode(p.name) for p in directory.iterdir()} == names
    for note in obs.notes:
        assert note.isascii() and note.isprintable(), note


def test_a_commit_copies_the_temp_root_as_hashed(
    launcher_path: str, out: Path, staging: tuple[Path, int]
) -> None:
    directory, fd = staging
    script = (
        "mkdir -p /tmp/home/d; head -c 300000 /dev/urandom > /tmp/home/d/r.bin;"
        " printf run > /tmp/x.sh; chmod +x /tmp/x.sh; printf w > w.txt"
    )
    _, report = _run(launcher_path, out, script, _outputs(out, commit="synced"), fd)
    artifacts = _paths(report, g.ARTIFACT)
    assert set(artifacts) == {b"home/d/r.bin", b"x.sh"}, "a write root is never copied"
    for path, item in artifacts.items():
        data = (directory / os.fsdecode(path)).read_bytes()
        assert (item.get("sha256"), item.get("blake3")) == _digests(data)
        assert item.number("size") == len(data)
    assert os.access(directory / "x.sh", os.X_OK) and not os.access(
        directory / "home/d/r.bin", os.X_OK
    )
    assert _summary(report).get("commit") == "complete"


@pytest.mark.parametrize(
    "bound, script, limit",
    [
        ({"files": 3}, "for i in 1 2 3 4 5; do : > /tmp/f$i; done", "files"),
        ({"size": 10}, "printf 12345 > /tmp/a; printf 1234567890 > /tmp/b", "bytes"),
        ({"entries": 4}, "for i in 1 2 3 4 5 6; do : > /tmp/f$i; done", "entries"),
        ({"depth": 2}, "mkdir -p /tmp/a/b/c; : > /tmp/a/b/c/deep; : > /tmp/a/ok", "depth"),
        ({"paths": 12}, ": > /tmp/aaaaa; : > /tmp/bbbbb; : > /tmp/ccccc", "paths"),
    ],
)
def test_every_bound_is_reported_and_abandons_the_commit(
    launcher_path: str,
    out: Path,
    staging: tuple[Path, int],
    bound: dict[str, int],
    script: str,
    limit: str,
) -> None:
    _, fd = staging
    _, report = _run(launcher_path, out, script, _outputs(out, commit="best_effort", **bound), fd)
    truncated = _of(report, g.TRUNCATED)
    # (A depth bound may also cut the directories that lead to the write root, which the
    # private root makes inside /tmp when the test's directory lies there.)
    assert {item.get("limit") for item in truncated} == {limit}, report.items
    if limit != "depth":
        assert len(truncated) == 1, "a stopping bound ends the walk"
    summary = _summary(report)
    assert summary.get("truncated") == "yes" and summary.get("commit") == "abandoned"
    listed = _paths(report, g.LISTED)
    if limit == "files":
        assert len(listed) == 3
    if limit == "paths":
        assert set(listed) == {b"aaaaa", b"bbbbb"}, "10 bytes of paths fit, 15 do not"
    if limit == "bytes":
        assert set(listed) == {b"a"} and truncated[0].get("path") == "b"
    if limit == "depth":
        assert b"a/ok" in listed and b"a/b/c/deep" not in listed
        assert "a/b/c" in [item.get("path") for item in truncated]


def test_a_walk_that_begins_past_the_deadline_lists_and_copies_nothing(
    launcher_path: str, out: Path, staging: tuple[Path, int]
) -> None:
    """The deadline the host sends with the gate's opening binds the launcher's walk.

    The host's deadline action here does nothing (the backend's kills the run tree), so
    the workload exits on its own half a second after the deadline and the walk begins
    late. Oracles: the staging directory on the host, read by the test (empty: not even a
    partial copy), the notes parsed with the report grammar, and the moment the host saw
    the launcher gone against the deadline. Before the fix the launcher ignored the
    deadline and listed and copied everything.
    """
    directory, fd = staging
    deadline = time.monotonic() + 1.0
    options = LaunchOptions(deadline=deadline, on_deadline=lambda: None, drain_grace=20.0)
    script = "head -c 3000000 /dev/urandom > /tmp/late.bin; sleep 1.5"
    obs, report = _run(
        launcher_path, out, script, _outputs(out, commit="synced"), fd, options=options
    )
    (stop,) = _of(report, g.TRUNCATED)
    assert stop.get("limit") == g.DEADLINE, report.items
    assert not _of(report, g.LISTED) and not _of(report, g.ARTIFACT), report.items
    summary = _summary(report)
    assert summary.get("truncated") == "yes" and summary.get("commit") == "abandoned"
    assert list(directory.iterdir()) == [], "nothing reaches the staging directory"
    assert obs.workload_exit_code == 0, obs.notes  # the workload's status is still reported
    assert obs.launcher_exited_at is not None
    assert obs.launcher_exited_at - deadline < 2.0, "the walk did not stop at the deadline"


def test_a_mount_inside_a_root_is_not_crossed(
    launcher_path: str, out: Path, tmp_path: Path
) -> None:
    inner = out / "ro"
    inner.mkdir()
    (inner / "old.txt").write_text("host file")
    time.sleep(1.05 - time.time() % 1)
    _, report = _run(
        launcher_path,
        out,
        "printf x > /tmp/x; touch ro/old.txt 2>/dev/null; printf y > y",
        _outputs(out),
        extra_roots=((str(inner), "read"),),
    )
    listed = _paths(report, g.LISTED)
    assert b"y" in listed and not any(path.startswith(b"ro/") for path in listed), listed


def test_a_run_without_its_private_root_lists_nothing(launcher_path: str, out: Path) -> None:
    """The lie skips the private root: the init's root is then the host's, which the walk
    must refuse to list (it is not the run's tmpfs) rather than report the host's /tmp."""
    _obs, report = _run(
        launcher_path,
        out,
        "true",
        _outputs(out),
        hooks=frozenset({"skip_rootfs", "skip_landlock"}),
    )
    (item,) = _of(report, g.UNAVAILABLE)
    assert item.get("reason") == "not-private" and not _of(report, g.LISTED)


def test_without_an_init_the_mounts_are_gone_and_nothing_is_listed(
    launcher_path: str, out: Path
) -> None:
    _, report = _run(
        launcher_path,
        out,
        "printf x > /tmp/x",
        _outputs(out),
        hooks=frozenset({"skip_pidns", "skip_rootfs", "skip_landlock"}),
    )
    (item,) = _of(report, g.UNAVAILABLE)
    assert item.get("reason") == "init-gone"


def test_skipping_the_walk_is_the_lie_that_hides_the_outputs(
    launcher_path: str, out: Path, staging: tuple[Path, int]
) -> None:
    directory, fd = staging
    obs, report = _run(
        launcher_path,
        out,
        "printf secret-output > /tmp/result",
        _outputs(out, commit="best_effort"),
        fd,
        hooks=frozenset({"skip_outputs"}),
    )
    assert "DANGER test hook active: skip_outputs" in obs.notes
    assert _summary(report).get("commit") == "complete", "the lie claims a complete listing"
    assert not _of(report, g.LISTED) and not list(directory.iterdir())


# -- the staging slot, checked before anything is created (pure) ------------------------------


def _body(out: Path, commit: str | None, staging: int | None) -> tuple[LaunchBody, Auth]:
    plan, auth = build_plan(
        "/bin/sh",
        ["sh", "-c", "true"],
        rootfs=private_root([(str(out), "read_write")], tmp=True),
        outputs=_outputs(out, commit=commit),
        staging=staging,
    )
    return plan.body, auth


def _refused(body: LaunchBody) -> Refusal:
    with pytest.raises(Refusal) as info:
        verify_body(body)
    assert info.value.code == "descriptor-table-invalid", info.value
    return info.value


def test_a_commit_needs_exactly_its_staging_directory(out: Path, staging: tuple[Path, int]) -> None:
    _, fd = staging
    body, auth = _body(out, "synced", fd)
    try:
        assert verify_body(body).staging_slot is not None
        slots = body.descriptor_table
        without = dataclasses.replace(
            body,
            descriptor_table=tuple(
                s for s in slots if s.role is not DescriptorRole.ARTIFACT_STAGING
            ),
        )
        assert "one is needed" in _refused(without).detail
        writable = tuple(
            dataclasses.replace(s, expected=DescriptorShape(s.expected.kind, True))
            if s.role is DescriptorRole.ARTIFACT_STAGING
            else s
            for s in slots
        )
        _refused(dataclasses.replace(body, descriptor_table=writable))
    finally:
        auth.close()


def test_a_staging_directory_without_a_commit_is_refused(
    out: Path, staging: tuple[Path, int]
) -> None:
    body, auth = _body(out, None, staging[1])
    try:
        assert "commits nothing" in _refused(body).detail
    finally:
        auth.close()


def test_what_the_workload_made_unreadable_is_reported_not_dropped(
    launcher_path: str, out: Path
) -> None:
    """Without CAP_DAC_OVERRIDE (a normal user) the launcher cannot open a mode-000 file or
    directory of the run, even its own; it says so. Root reads them."""
    script = "printf x > /tmp/locked; chmod 000 /tmp/locked; mkdir /tmp/shut; chmod 000 /tmp/shut"
    _, report = _run(launcher_path, out, script, _outputs(out))
    listed, skipped = _paths(report, g.LISTED, "/tmp"), _paths(report, g.SKIPPED, "/tmp")
    if os.geteuid() == 0:
        assert b"locked" in listed and b"shut" not in skipped
    else:
        assert skipped[b"locked"].get("kind") == "unreadable"
        assert skipped[b"shut"].get("kind") == "unreadable"
