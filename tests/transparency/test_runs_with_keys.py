"""Real runs with a signing key: a checkpoint with every run's record, the key out of the
workload's reach, a refused checkpoint that leaves the record whole, and a run whose
record cannot be finished on a full disk said as such."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bvisor.contract import Filesystem, ProcessWorkload
from bvisor.front.api import run_confined
from bvisor.front.defaults import default_spec
from bvisor.launcher.host.reach import KeyReachable
from bvisor.ledger import Ledger, verify
from bvisor.ledger.keys import load_verifier, remembered
from bvisor.replay import audit
from tests.replay.helpers import backend, base_spec
from tests.transparency.kit import keypair


def test_every_run_is_recorded_with_a_signed_checkpoint(tmp_path: Path) -> None:
    _signer, key, pub = keypair(tmp_path / "keys")
    path = tmp_path / "ledger"
    heard: list[tuple[object, str | None]] = []
    for _ in range(2):
        report = run_confined(
            base_spec(), ledger=path, key=key, backend=backend(),
            on_checkpoint=lambda signed, problem: heard.append((signed, problem)),
        )  # fmt: skip
    assert [problem for _, problem in heard] == [None, None]
    with Ledger.open(path, readonly=True) as ledger:
        stored = ledger.checkpoints()
        head = ledger.head()
        run = ledger.run_events(report.body.attempt_id)
    assert head is not None and stored[-1].checkpoint.size == head.seq + 1 == run[-1].seq + 1
    assert len(stored) == 2  # one per run, each in the transaction of the run's last record
    memory = remembered(key, stored[-1].checkpoint.ledger_id() or b"", path, new_log=False)
    assert memory is not None and memory.text == stored[-1].text
    result = verify(path, verifiers=[load_verifier(pub)])
    assert result.ok and result.checkpoint is not None and result.checkpoint.uncovered is None


def test_a_plan_whose_roots_reach_the_key_is_refused_before_anything_is_recorded(
    tmp_path: Path,
) -> None:
    work = tmp_path / "work"
    (work / "keys").mkdir(parents=True)
    _signer, key, _pub = keypair(work / "keys" / "inner")
    path = tmp_path / "ledger"
    with pytest.raises(KeyReachable, match="signing key"):
        run_confined(
            default_spec(["/bin/true"], cwd=str(work)), ledger=path, key=key, backend=backend()
        )
    assert not path.exists()


def test_a_hard_link_to_the_key_beside_a_root_is_refused(tmp_path: Path) -> None:
    """A hard link to the key inside the working directory is the key: the workload could
    read it and sign a rewritten ledger. Before the fix only directories were compared."""
    work = tmp_path / "work"
    work.mkdir()
    _signer, key, _pub = keypair(tmp_path / "keys")
    os.link(key, work / "innocent")
    code = "import sys; sys.stdout.write(open('innocent').read())"
    spec = default_spec(["/usr/bin/python3", "-c", code], cwd=str(work))
    out = bytearray()
    with pytest.raises(KeyReachable, match="hard links"):
        run_confined(spec, ledger=tmp_path / "ledger", key=key, on_stdout=out.extend)
    assert not out and not (tmp_path / "ledger").exists()


def test_a_spec_that_confines_no_file_is_never_run_with_a_key(tmp_path: Path) -> None:
    """Found by attack: a spec without a filesystem capability has no roots, so no root
    covered the key, and its workload printed the key (into the ledger's captured output
    too) while the run was signed. Such a workload reaches every file its uid may."""
    _signer, key, _pub = keypair(tmp_path / "keys")
    spec = dataclasses.replace(
        base_spec(),
        workload=ProcessWorkload(exe="/bin/cat", args=(str(key),)),
        capabilities=tuple(c for c in base_spec().capabilities if not isinstance(c, Filesystem)),
    )
    out = bytearray()
    with pytest.raises(KeyReachable, match="no filesystem capability"):
        run_confined(spec, ledger=tmp_path / "ledger", key=key, on_stdout=out.extend)
    assert not out and not (tmp_path / "ledger").exists()
    report = run_confined(spec, ledger=tmp_path / "ledger", on_stdout=out.extend)
    assert bytes(out) == Path(key).read_bytes()  # the oracle: it could, without the key's run
    assert report.body.outcome.value == "completed"


def test_a_refused_checkpoint_leaves_the_runs_record_whole(tmp_path: Path) -> None:
    first, first_key, _ = keypair(tmp_path / "a", "a.example/key")
    _second, second_key, _ = keypair(tmp_path / "b", "b.example/key")
    path = tmp_path / "ledger"
    with Ledger.open(path, create=True) as ledger:
        ledger.checkpoint(first)
    heard: list[str | None] = []
    report = run_confined(
        base_spec(), ledger=path, key=second_key, backend=backend(),
        on_checkpoint=lambda _signed, problem: heard.append(problem),
    )  # fmt: skip
    assert heard and heard[0] is not None and "--rotate" in heard[0]
    with Ledger.open(path, readonly=True) as ledger:
        (run,) = audit(ledger).runs
        assert len(ledger.checkpoints()) == 1  # nothing signed by the second key
    assert run.run_id == report.body.attempt_id and run.verdict == "verified"
    assert first_key.exists()


def test_a_ledger_replaced_under_a_fresh_id_is_recorded_but_not_signed(tmp_path: Path) -> None:
    """The key signs one log at a place: a run into a ledger that replaced it (a fresh
    id, no checkpoints: a forged history, to the key, looks like a new log) is recorded
    and said unsigned until the caller gives ``new_log``. And a ledger this process
    already opened, then moved away, is not written on by later runs at its old path.
    Oracles: the checkpoints and runs each ledger directory holds on disk."""
    _signer, key, _pub = keypair(tmp_path / "keys")
    path = tmp_path / "ledger"
    heard: list[str | None] = []

    def run(**extra: bool) -> None:
        run_confined(
            base_spec(), ledger=path, key=key, backend=backend(),
            on_checkpoint=lambda _signed, problem: heard.append(problem), **extra,
        )  # fmt: skip

    run()
    moved = tmp_path / "the-first-ledger"
    os.rename(path, moved)
    run()
    assert _runs_and_checkpoints(moved) == (1, 1)  # the second run went to the new one
    assert heard[0] is None and heard[1] is not None, heard
    assert "rewritten under a fresh id" in heard[1] and "--new-log" in heard[1]
    with Ledger.open(path, readonly=True) as ledger:
        assert ledger.checkpoints() == [] and len(audit(ledger).runs) == 1
    run(new_log=True)
    run()
    # The first signature of the new log also covers the run recorded unsigned before
    # it, and says so (a signer names what it vouches for that it did not record).
    assert heard[2] is not None and "also covers 1 run(s)" in heard[2] and heard[3] is None
    with Ledger.open(path, readonly=True) as ledger:
        assert len(ledger.checkpoints()) == 2


def test_a_link_re_pointed_at_another_ledger_is_not_signed(tmp_path: Path) -> None:
    """Found by attack: the key bound the path with its links resolved only (the ledger
    reports its real path), so a link the holder records through, re-pointed at a forged
    ledger, was a new place and its history was signed. The path as given is bound too.
    Oracle: the checkpoints the forged ledger stores."""
    _signer, key, _pub = keypair(tmp_path / "keys")
    honest, forged, link = tmp_path / "honest", tmp_path / "forged", tmp_path / "ledger"
    heard: list[str | None] = []
    with Ledger.open(forged, create=True) as ledger:  # the forger's history, a fresh id
        ledger.append("note.forged", {"n": 1})
    Ledger.open(honest, create=True).close()
    link.symlink_to(honest)
    for _ in range(2):
        run_confined(
            base_spec(), ledger=str(link), key=key, backend=backend(),
            on_checkpoint=lambda _signed, problem: heard.append(problem),
        )  # fmt: skip
        link.unlink()
        link.symlink_to(forged)
    assert heard[0] is None and heard[1] is not None and "fresh id" in heard[1], heard
    assert _runs_and_checkpoints(forged) == (1, 0)


def _runs_and_checkpoints(path: Path) -> tuple[int, int]:
    """Counted by a process of its own: this one still holds the moved ledger open, and
    LMDB does not open one environment twice in a process."""
    code = (
        "import sys; from bvisor.ledger import Ledger; from bvisor.replay import audit\n"
        "with Ledger.open(sys.argv[1], readonly=True) as ledger:\n"
        "    print(len(audit(ledger).runs), len(ledger.checkpoints()))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60
    )
    runs, checkpoints = done.stdout.split()
    return int(runs), int(checkpoints)


def test_the_run_command_says_a_run_whose_record_could_not_be_finished(tmp_path: Path) -> None:
    small = tmp_path / "small"
    small.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(small)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip()}")
    try:
        (small / "work").mkdir()
        done = subprocess.run(
            [sys.executable, "-m", "bvisor.front.cli.main", "run", "--ledger", str(small / "l"),
             "--", "/bin/sh", "-c", "head -c 8000000 /dev/zero > fill; echo done"],
            capture_output=True, text=True, timeout=120, cwd=small / "work",
            env={k: v for k, v in os.environ.items() if k != "BVISOR_KEY"}, check=False,
        )  # fmt: skip
        assert done.returncode == 125, done.stderr
        assert "the workload ran (outcome completed) but its record is incomplete" in done.stderr
        assert "the disk is full" in done.stderr and "Traceback" not in done.stderr
        (small / "work" / "fill").unlink()
        with Ledger.open(small / "l", readonly=True) as ledger:
            (run,) = audit(ledger).runs
        assert run.verdict == "incomplete"  # its plan is there; the rest never was
    finally:
        subprocess.run(["umount", "-l", str(small)], check=False)


def test_a_signer_names_the_runs_it_covers_that_it_did_not_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Found by attack: a run appended by someone who could write the ledger but holds no
    key was "not yet covered" only until the owner's next signed run, whose checkpoint
    then covered it with nothing said. A signature says the ledger held the runs, not who
    wrote them; so the signer now names each run it is the first to cover that its own
    command did not record (``bvisor run``), or every one (``bvisor-ledger checkpoint``)."""
    from bvisor.front.cli.ledger_cmd import main as ledger_main
    from tests.replay.helpers import FakeRun, record_synthetic
    from tests.transparency.kit import call

    _signer, key, _pub = keypair(tmp_path / "keys")
    path = tmp_path / "ledger"
    heard: list[tuple[object, str | None]] = []

    def run() -> bytes:
        report = run_confined(
            base_spec(), ledger=path, key=key, backend=backend(),
            on_checkpoint=lambda signed, problem: heard.append((signed, problem)),
        )  # fmt: skip
        return report.body.attempt_id

    run()
    with Ledger.open(path) as handle:  # a writer without the key
        forged = record_synthetic(handle, fake=FakeRun())
    own = run()
    (first, quiet), (second, said) = heard
    assert first is not None and quiet is None
    assert second is not None and said is not None and forged.hex()[:16] in said, said
    assert own.hex()[:16] not in said
    with Ledger.open(path) as handle:
        another = record_synthetic(handle, fake=FakeRun())
    code, _out, err = call(
        capsys, ledger_main, "checkpoint", "--ledger", str(path), "--key", str(key)
    )
    assert code == 0 and "first to cover 1 run(s)" in err and another.hex()[:16] in err, err


def test_the_command_refuses_a_spec_confining_no_file_while_a_key_is_configured(
    tmp_path: Path,
) -> None:
    """The key configured by the environment counts as one given: the spec is refused
    naming --no-key, which runs it unsigned; --no-key with --key is a usage error."""
    _signer, key, _pub = keypair(tmp_path / "keys")
    spec = tmp_path / "spec.toml"
    spec.write_text('[workload]\nexe = "/bin/true"\n\n[[control]]\ntype = "launch_workload"\n')
    env = {**os.environ, "BVISOR_KEY": str(key), "BVISOR_SERVE": "0"}
    base = [sys.executable, "-m", "bvisor.front.cli.main", "run", "--ledger", str(tmp_path / "l")]

    def bvisor(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*base, *extra, "--spec", str(spec)],
            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
        )  # fmt: skip

    refused = bvisor()
    assert refused.returncode == 2 and "--no-key" in refused.stderr, refused.stderr  # as a reach
    assert not (tmp_path / "l").exists()
    unsigned = bvisor("--no-key")
    assert unsigned.returncode == 0, unsigned.stderr
    with Ledger.open(tmp_path / "l", readonly=True) as ledger:
        assert ledger.checkpoints() == [] and len(audit(ledger).runs) == 1
    both = bvisor("--no-key", "--key", str(key))
    assert both.returncode == 2 and "--no-key" in both.stderr, both.stderr


def test_a_key_or_memory_another_user_may_replace_is_not_used(tmp_path: Path) -> None:
    """Found by attack: the key's directory at mode 0777, and its memory directory made
    writable by others (or, as root, owned by another user), were used as they were: a
    user who moved the memory away got a rolled-back ledger signed. Each is refused now,
    naming the path; keygen into such a directory makes nothing."""
    from bvisor.ledger.keys import KeyFileError, load_signer, remembered, write_keypair

    _signer, key, _pub = keypair(tmp_path / "keys")
    path = tmp_path / "ledger"
    run_confined(base_spec(), ledger=path, key=key, backend=backend())
    memory = key.parent / "checkpoint.signed"
    assert memory.is_dir()
    with Ledger.open(path, readonly=True) as ledger:
        ledger_id = ledger.ledger_id
    os.chmod(memory, 0o777)
    with pytest.raises(KeyFileError, match="writable by every user"):
        remembered(key, ledger_id, path, new_log=False)
    os.chmod(memory, 0o700)
    if os.geteuid() == 0:
        os.chown(memory, 65534, 65534)
        with pytest.raises(KeyFileError, match="owned by uid 65534"):
            remembered(key, ledger_id, path, new_log=False)
        os.chown(memory, 0, 0)
    assert remembered(key, ledger_id, path, new_log=False) is not None
    os.chmod(key.parent, 0o777)
    with pytest.raises(KeyFileError, match="writable by every user"):
        load_signer(key)
    open_dir = tmp_path / "open"
    open_dir.mkdir(mode=0o777)
    os.chmod(open_dir, 0o777)
    with pytest.raises(KeyFileError, match="writable by every user"):
        write_keypair(open_dir / "sub" / "k.key", "test.example/k")
    assert list(open_dir.iterdir()) == []
    # A new directory of its own in a sticky /tmp is fine: no other user may replace it.
    fresh = Path("/tmp") / f"bvisor-key-test-{os.getpid()}-{os.urandom(4).hex()}"
    try:
        write_keypair(fresh / "k.key", "test.example/k")
        assert load_signer(fresh / "k.key") is not None
    finally:
        shutil.rmtree(fresh, ignore_errors=True)
