"""The allow list's resolv.conf (rules v3) where the host's is a symlink.

Hosts running a local resolver make ``/etc/resolv.conf`` a link (``-> ../run/systemd/
resolve/stub-resolv.conf``) whose target the workload's root does not hold. The file mount
goes onto the link itself: the workload reads bvisor's file at ``/etc/resolv.conf``, and
the link's target directory does not appear in its root. The host here is made in a mount
namespace of the test's own (``unshare --mount``, with ``--user --map-root-user`` for a
normal user): a copy of ``/etc`` with the link, bound over ``/etc``. The host's plain-file
case is in ``test_network_names`` (``resolv=ours``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.features import require_feature

SPEC = """
[workload]
exe = "/bin/sh"
args = ["-c", "cat /etc/resolv.conf; test -e /run/bv-test && echo seen || echo target=absent"]

[[capability]]
type = "filesystem"
access = "read"
roots = ["/usr"]

[[capability]]
type = "network"
allow_list = ["pypi.org:443"]

[[capability]]
type = "environment"
exact = { PATH = "/usr/bin:/bin" }

[[control]]
type = "launch_workload"

[[control]]
type = "capture_streams"
stdout = true
stderr = true
"""


def _run_with_etc(tmp_path: Path, resolv: str | None) -> subprocess.CompletedProcess[str]:
    """A run of SPEC on a host whose /etc has ``resolv`` as its resolv.conf link target
    (None: no resolv.conf at all)."""
    for feature in ("seccomp", "landlock", "userns", "netns", "pidns", "netns-loopback"):
        require_feature(feature)
    etc = tmp_path / "etc"
    etc.mkdir()
    for entry in Path("/etc").iterdir():  # enough of /etc for the host side to start
        if entry.name in ("passwd", "group", "hosts", "nsswitch.conf", "ld.so.cache"):
            shutil.copy2(entry, etc / entry.name)
    if resolv is not None:
        (etc / "resolv.conf").symlink_to(resolv)
    (tmp_path / "spec.toml").write_text(SPEC)
    bvisor = Path(sys.executable).with_name("bvisor")
    userns = [] if os.geteuid() == 0 else ["--user", "--map-root-user"]
    spec = tmp_path / "spec.toml"
    script = f'mount --bind "{etc}" /etc && exec "{bvisor}" run --no-record --spec "{spec}"'
    return subprocess.run(
        ["unshare", *userns, "--mount", "sh", "-c", script],
        cwd=tmp_path,
        env={**os.environ, "BVISOR_SERVE": "0"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_resolver_s_file_covers_a_symlinked_resolv_conf(tmp_path: Path) -> None:
    done = _run_with_etc(tmp_path, "../run/bv-test/stub-resolv.conf")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "nameserver 127.0.0.1" in done.stdout, done.stdout
    assert "target=absent" in done.stdout, done.stdout


def test_a_host_without_resolv_conf_runs_without_one(tmp_path: Path) -> None:
    """Nowhere to put it inside the host's read-only /etc: skipped (the C library's default
    server is 127.0.0.1:53, the resolver), and the launcher says so."""
    done = _run_with_etc(tmp_path, None)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "nameserver" not in done.stdout and "No such file" in done.stdout + done.stderr
