"""The oracles are evidence only if they fail when the launcher lies.

Each test sets one test hook (the launcher skips the mechanism but still reports it as
installed) and asserts the same oracle the honest test uses now does NOT see the
confinement, and that the launcher marked the run with a DANGER note.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bvisor.contract import mechanisms as mech
from bvisor.launcher.host.launch import LaunchObservation, run_launcher
from bvisor.launcher.host.resident import RESIDENT_ENV
from tests.features import require_feature
from tests.launcher.conftest import (
    GatedRun,
    Leaf,
    build_plan,
    open_sentinel,
    private_root,
    proc_fds,
    proc_status_field,
)
from tests.launcher.test_mechanisms import SYSTEM_ROOTS, network_deny_run


def _lied(obs: LaunchObservation, hook: str, claim: str) -> None:
    assert obs.test_hooks == frozenset({hook}) or hook in obs.test_hooks
    assert f"DANGER test hook active: {hook}" in obs.notes
    danger = obs.notes.index(f"DANGER test hook active: {hook}")
    claims = [i for i, n in enumerate(obs.notes) if n.startswith(claim)]
    assert claims and danger < claims[0], "the DANGER note must come before the false claim"
    assert obs.exec_succeeded()


def test_skip_seccomp_turns_the_seccomp_oracle_red(launcher_path: str) -> None:
    require_feature("seccomp")
    script = "read x; /bin/echo after_fork=ok"
    plan, auth = build_plan(
        "/bin/sh",
        ["sh", "-c", script],
        seccomp=mech.Seccomp(True, False, False),
        hooks=frozenset({"skip_seccomp"}),
    )
    run = GatedRun(launcher_path, plan, auth)
    pid = run.wait_exec()
    mode = proc_status_field(pid, "Seccomp")
    obs = run.finish()
    auth.close()
    _lied(obs, "skip_seccomp", "seccomp denylist installed")
    assert mode == "0", "oracle still sees a filter although the launcher skipped it"
    assert b"after_fork=ok" in obs.captured_stdout


def _filesystem_lie(
    launcher_path: str, tmp_path: Path, hooks: frozenset[str], *, private: bool = False
) -> tuple[LaunchObservation, Path]:
    """Read a secret outside the roots, write beside it, and chmod it; report what stuck."""
    out, outside = tmp_path / "out", tmp_path / "outside"
    out.mkdir()
    outside.mkdir()
    secret = outside / "secret.txt"
    secret.write_text("SECRET-OUTSIDE\n")
    secret.chmod(0o600)
    roots = [(str(out), "read_write")] + [(p, "read") for p in SYSTEM_ROOTS]
    script = f"cat {secret}; echo leak > {outside}/leak.txt; chmod 666 {secret}; :"
    rootfs = private_root(roots) if private else None
    plan, auth = build_plan(
        "/bin/sh", ["sh", "-c", script], landlock=roots, rootfs=rootfs, hooks=hooks
    )
    obs = run_launcher(launcher_path, plan, auth.fds)
    auth.close()
    return obs, outside


def test_skip_landlock_turns_the_filesystem_oracle_red(launcher_path: str, tmp_path: Path) -> None:
    """Landlock as a layer of its own (a plan with no private root): skipped, the read and
    the write outside the roots both happen."""
    require_feature("landlock")
    obs, outside = _filesystem_lie(launcher_path, tmp_path, frozenset({"skip_landlock"}))
    _lied(obs, "skip_landlock", "landlock abi=")
    assert b"SECRET-OUTSIDE" in obs.captured_stdout, "oracle did not see the unconfined read"
    assert (outside / "leak.txt").exists(), "oracle did not see the unconfined write"


def test_skip_rootfs_turns_the_metadata_oracle_red(launcher_path: str, tmp_path: Path) -> None:
    """Landlock does not see chmod: with the private root skipped, the workload stands on
    the host's tree and the host sees the mode change (Landlock still stops the read)."""
    require_feature("landlock")
    obs, outside = _filesystem_lie(
        launcher_path, tmp_path, frozenset({"skip_rootfs"}), private=True
    )
    _lied(obs, "skip_rootfs", "private root skipped")
    assert b"SECRET-OUTSIDE" not in obs.captured_stdout  # Landlock still holds reads
    assert (outside / "secret.txt").stat().st_mode & 0o777 == 0o666, "chmod did not leak"


@pytest.mark.parametrize("private", [False, True], ids=["landlock", "private-root"])
def test_with_every_layer_the_filesystem_oracles_stay_green(
    launcher_path: str, tmp_path: Path, private: bool
) -> None:
    """Control for the two lies above: the same workload, nothing skipped. Landlock alone
    stops the read and the write; only the private root also keeps chmod out (Landlock
    does not see metadata calls, which is why a filesystem plan always has a root)."""
    require_feature("landlock")
    obs, outside = _filesystem_lie(launcher_path, tmp_path, frozenset(), private=private)
    assert obs.exec_succeeded(), obs.notes
    assert b"SECRET-OUTSIDE" not in obs.captured_stdout
    assert not (outside / "leak.txt").exists()
    if private:
        assert (outside / "secret.txt").stat().st_mode & 0o777 == 0o600


def test_skip_netns_turns_the_network_oracle_red(launcher_path: str) -> None:
    for feature in ("userns", "netns", "seccomp"):
        require_feature(feature)
    host_interfaces = sorted(
        line.split(":", 1)[0].strip() for line in Path("/proc/net/dev").read_text().splitlines()[2:]
    )
    interfaces, mode, _accepted, _ = network_deny_run(launcher_path, frozenset({"skip_netns"}))
    assert interfaces == host_interfaces
    assert mode == 2  # only the namespace was skipped


def test_skip_netns_and_seccomp_let_the_host_see_a_connection(launcher_path: str) -> None:
    for feature in ("userns", "netns", "seccomp"):
        require_feature(feature)
    _interfaces, mode, accepted, stdout = network_deny_run(
        launcher_path, frozenset({"skip_netns", "skip_seccomp"})
    )
    assert accepted, f"the host listener saw no connection: {stdout!r}"
    assert mode == 0
    assert "connect ok" in stdout


def test_skip_fd_scrub_turns_the_fd_oracle_red(
    launcher_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A launcher spawned for the run inherits the host's leaked fd; only the scrub stops it.
    monkeypatch.setenv(RESIDENT_ENV, "0")
    sentinel = open_sentinel()
    plan, auth = build_plan(
        "/bin/sh", ["sh", "-c", "echo ready; read x"], hooks=frozenset({"skip_fd_scrub"})
    )
    try:
        run = GatedRun(launcher_path, plan, auth, ready=b"ready\n")
        pid = run.wait_exec()
        fds = proc_fds(pid)
        obs = run.finish()
    finally:
        os.close(sentinel)
        auth.close()
    _lied(obs, "skip_fd_scrub", "fds kept")
    assert sentinel in fds, f"oracle did not see the leaked sentinel {sentinel}: {fds}"


def test_skip_cgroup_placement_turns_the_cgroup_oracle_red(
    launcher_path: str, v2_leaf: Leaf
) -> None:
    plan, auth = build_plan(
        "/bin/cat", ["cat"], cgroup_v2=v2_leaf.fd, hooks=frozenset({"skip_cgroup_placement"})
    )
    run = GatedRun(launcher_path, plan, auth)
    pid = run.wait_exec()
    procs = v2_leaf.procs()
    obs = run.finish()
    auth.close()
    _lied(obs, "skip_cgroup_placement", "cgroup placed v2")
    assert pid not in procs


def test_skip_cgroup_placement_v1_turns_the_cgroup_oracle_red(
    launcher_path: str, v1_pids_leaf: Leaf
) -> None:
    plan, auth = build_plan(
        "/bin/cat", ["cat"], cgroup_v1=[v1_pids_leaf.fd], hooks=frozenset({"skip_cgroup_placement"})
    )
    run = GatedRun(launcher_path, plan, auth)
    pid = run.wait_exec()
    procs = v1_pids_leaf.procs()
    obs = run.finish()
    auth.close()
    _lied(obs, "skip_cgroup_placement", "cgroup placed v1")
    assert pid not in procs


def test_skip_env_scrub_turns_the_environment_oracle_red(launcher_path: str) -> None:
    table = (("PATH", "/usr/bin:/bin"),)
    plan, auth = build_plan(
        "/bin/sh",
        ["sh", "-c", "echo ready; read x"],
        envp=table,
        hooks=frozenset({"skip_env_scrub"}),
    )
    run = GatedRun(launcher_path, plan, auth, ready=b"ready\n")
    pid = run.wait_exec()
    environ = Path(f"/proc/{pid}/environ").read_bytes()
    obs = run.finish()
    auth.close()
    assert environ != b"PATH=/usr/bin:/bin\0", "oracle stayed green although the env leaked"
    assert b"BVISOR_" in environ
    _lied(obs, "skip_env_scrub", "environment exact")


def test_skip_userns_turns_the_uid_map_oracle_red(launcher_path: str) -> None:
    require_feature("userns")
    plan, auth = build_plan("/bin/cat", ["cat"], userns=True, hooks=frozenset({"skip_userns"}))
    run = GatedRun(launcher_path, plan, auth)
    pid = run.wait_exec()
    user_ns = os.readlink(f"/proc/{pid}/ns/user")
    uid_map = Path(f"/proc/{pid}/uid_map").read_text().split()
    obs = run.finish()
    auth.close()
    assert user_ns == os.readlink("/proc/self/ns/user"), "the workload got a user namespace"
    assert uid_map != ["0", str(os.getuid()), "1"]
    _lied(obs, "skip_userns", "userns uid_map=")


def test_a_resident_launchers_run_never_holds_the_hosts_fds_even_without_the_scrub(
    launcher_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Through a resident launcher only the placed fds travel (SCM_RIGHTS), and the run's
    # launcher closes everything else it inherited from the resident before it reads the
    # plan: the same leak has no route, with the scrub skipped.
    monkeypatch.setenv(RESIDENT_ENV, "1")
    sentinel = open_sentinel()
    plan, auth = build_plan(
        "/bin/sh", ["sh", "-c", "echo ready; read x"], hooks=frozenset({"skip_fd_scrub"})
    )
    try:
        run = GatedRun(launcher_path, plan, auth, ready=b"ready\n")
        pid = run.wait_exec()
        fds = proc_fds(pid)
        launcher_fds = proc_fds(
            int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        )
        obs = run.finish()
    finally:
        os.close(sentinel)
        auth.close()
    _lied(obs, "skip_fd_scrub", "fds kept")
    assert sentinel not in fds and sentinel not in launcher_fds, (fds, launcher_fds)
