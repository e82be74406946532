"""A ledger directory that another user can change is never a place this process writes.

LMDB opens ``lock.mdb`` (and ``data.mdb``) by name, following symlinks, and a locked
open — a writer's, or a reader's when the lock file looks usable — writes the lock file
(truncates and initialises it when it is the first user). Found by attack: another user
who can replace the entries of a ledger directory (it is theirs, or writable by them, or
one of its parents is) puts ``lock.mdb -> /some/victim`` there, and the next
``bvisor run`` or ``bvisor-ledger verify`` by root overwrote the victim with a lock table.
The oracle is the victim file's bytes, outside the ledger.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bvisor.ledger import Ledger, LedgerError, verify
from tests.ledger.testkit import build

PRECIOUS = b"precious bytes of a file the attacker may not write\n"


def _plant(ledger: Path, victim: Path) -> None:
    victim.write_bytes(PRECIOUS)
    (ledger / "lock.mdb").unlink()
    (ledger / "lock.mdb").symlink_to(victim)


def _others_may_write(tmp_path: Path) -> tuple[Path, Path]:
    ledger = tmp_path / "l"
    build(ledger, 5)
    os.chmod(ledger, 0o777)  # anyone may now swap its entries
    victim = tmp_path / "victim"
    _plant(ledger, victim)
    return ledger, victim


def test_a_reader_does_not_write_through_a_planted_lock_file(tmp_path: Path) -> None:
    ledger, victim = _others_may_write(tmp_path)
    result = verify(ledger)
    assert result.ok, result.findings
    assert victim.read_bytes() == PRECIOUS
    with Ledger.open(ledger, readonly=True) as opened:
        assert opened.unlocked and "another user" in opened.unlocked


def test_a_writer_refuses_a_directory_others_may_change(tmp_path: Path) -> None:
    ledger, victim = _others_may_write(tmp_path)
    with pytest.raises(LedgerError, match="another user"):
        Ledger.open(ledger, create=True)
    assert victim.read_bytes() == PRECIOUS


def test_a_writer_refuses_a_parent_others_may_change(tmp_path: Path) -> None:
    parent = tmp_path / "shared"
    parent.mkdir()
    os.chmod(parent, 0o777)  # not sticky: anyone may rename the ledger directory away
    with pytest.raises(LedgerError, match="another user"):
        Ledger.open(parent / "l", create=True)
    assert list(parent.iterdir()) == [], "refused only after making the directory"
    os.chmod(parent, 0o1777)  # sticky, like /tmp: only the owner renames its entries
    with Ledger.open(parent / "l", create=True) as opened:
        opened.append("note.x", {"n": 1})


def test_no_directory_is_made_where_another_user_could_change_it(tmp_path: Path) -> None:
    """append --ledger /home/otheruser/L made L (and its missing parents) first, root's
    directories in that user's home, and only then refused the ledger."""
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    with pytest.raises(LedgerError, match="another user"):
        Ledger.open(shared / "a" / "b" / "l", create=True)
    assert list(shared.iterdir()) == []
    link = tmp_path / "link"  # named through a link of this user's: the real path counts
    link.symlink_to(shared)
    with pytest.raises(LedgerError, match="another user"):
        Ledger.open(link / "l", create=True)
    assert list(shared.iterdir()) == []
    if os.geteuid() != 0:
        pytest.skip("needs root: making a directory another user owns")
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    os.chown(home, 65534, 65534)
    with pytest.raises(LedgerError, match="owned by uid 65534"):
        Ledger.open(home / "l", create=True)
    assert list(home.iterdir()) == []


def test_a_directory_of_another_user_is_read_unlocked_and_never_written(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: making a directory another user owns")
    ledger = tmp_path / "l"
    build(ledger, 5)
    victim = tmp_path / "victim"
    _plant(ledger, victim)
    os.chown(ledger, 65534, 65534)
    os.lchown(ledger / "lock.mdb", 65534, 65534)
    assert verify(ledger).ok
    assert victim.read_bytes() == PRECIOUS
    with pytest.raises(LedgerError, match="another user"):
        Ledger.open(ledger)
    assert victim.read_bytes() == PRECIOUS


def test_a_ledger_opens_inside_a_user_namespace_where_root_is_unmapped(tmp_path: Path) -> None:
    """A rootless container: the caller is root of a user namespace that maps only its own
    uid, so ``/`` and ``/tmp`` (the host root's) show as the overflow uid. Those owners
    cannot be told from root there; refusing them refused every ledger (found by the
    netns test harness as a normal user)."""
    import shutil
    import subprocess
    import sys

    if shutil.which("unshare") is None:
        pytest.skip("LOUD SKIP: needs unshare(1)")
    code = "import sys; from bvisor.ledger import Ledger; Ledger.open(sys.argv[1], create=True)"
    done = subprocess.run(
        ["unshare", "--user", "--map-root-user", sys.executable, "-c", code, str(tmp_path / "l")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if "unshare failed" in done.stderr:
        pytest.skip(f"LOUD SKIP: no user namespace here: {done.stderr.strip()[:200]}")
    assert done.returncode == 0, done.stderr
