"""The probe against this machine's kernel, checked by independent oracles.

Each fact the probe reports is re-established here by a different route (a different
syscall use, a different file, a different tool), and every feature the CI machine has
is required through ``BVISOR_REQUIRE_FEATURES`` so a regression cannot hide as a skip.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path

import blake3
import pytest

from bvisor import canonical
from bvisor.contract import ContractError
from bvisor.contract.profile import HostFacts
from bvisor.launcher.basement.namespaces import probe_namespaces
from bvisor.launcher.host.probe import (
    file_identity,
    linux_profile,
    parse_mountinfo,
    parse_proc_cgroup,
    probe_host,
)
from tests.features import require_feature
from tests.planner.helpers import FIXED_FACTS

# A child that creates a Landlock ruleset handling FS_TRUNCATE (ABI >= 3, bit 14): the
# kernel rejects unknown access bits, so success proves the floor independently of the
# VERSION query the probe uses.
_LANDLOCK_ORACLE = """
import ctypes, struct, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
attr = ctypes.create_string_buffer(struct.pack("Q", (1 << 15) - 1), 8)
fd = libc.syscall(ctypes.c_long(444), attr, ctypes.c_size_t(8), ctypes.c_uint32(0))
sys.exit(0 if fd >= 0 else 1)
"""


def _own_cgroup_procs(base: str) -> set[int]:
    return {int(x) for x in Path(base, "cgroup.procs").read_text().split()}


def test_probe_finds_landlock_at_or_above_the_floor(live_facts: HostFacts) -> None:
    require_feature("landlock")
    assert live_facts.landlock_abi >= 3
    done = subprocess.run([sys.executable, "-c", _LANDLOCK_ORACLE], check=False)
    assert done.returncode == 0, "kernel refused an ABI-3 ruleset the probe says it supports"
    assert any("landlock_create_ruleset" in n for n in live_facts.probe_notes)


def test_probe_reads_seccomp_actions_from_the_kernel(live_facts: HostFacts) -> None:
    require_feature("seccomp")
    path = Path("/proc/sys/kernel/seccomp/actions_avail")
    assert live_facts.seccomp_filter is True
    assert live_facts.seccomp_actions == tuple(path.read_text().split())
    assert "errno" in live_facts.seccomp_actions


def test_probe_finds_user_and_network_namespaces(live_facts: HostFacts) -> None:
    require_feature("userns")
    require_feature("netns")
    assert live_facts.userns and live_facts.netns
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("SKIP oracle: util-linux unshare(1) not installed")
    done = subprocess.run([unshare, "--user", "--net", "true"], check=False)
    assert done.returncode == 0, "unshare(1) could not create user+net namespaces"
    assert live_facts.max_user_namespaces > 0


def test_probe_cgroup_v2_base_is_our_own_cgroup_with_kill(live_facts: HostFacts) -> None:
    require_feature("cgroup2-kill")
    assert live_facts.cgroup_v2_kill
    base = live_facts.cgroup_v2_base
    assert base is not None
    membership = parse_proc_cgroup(Path("/proc/self/cgroup").read_text())
    mount = live_facts.cgroup_v2_mount
    assert mount is not None
    assert os.path.normpath(mount + membership[""]) == os.path.normpath(base)
    assert os.getpid() in _own_cgroup_procs(base), "the base must be our own cgroup"
    leaf = Path(base, f"bvisor-test-oracle-{os.getpid()}")
    leaf.mkdir()
    try:
        assert (leaf / "cgroup.kill").exists()
    finally:
        leaf.rmdir()


@pytest.mark.parametrize(
    ("controller", "limit_file"), [("pids", "pids.max"), ("memory", "memory.limit_in_bytes")]
)
def test_probe_v1_bases_are_our_own_writable_cgroups(
    live_facts: HostFacts, controller: str, limit_file: str
) -> None:
    base = live_facts.v1_base(controller)
    if controller in live_facts.cgroup_v2_controllers:
        pytest.skip(f"{controller} is delegated on cgroup v2 here; no v1 base is used")
    require_feature(f"cgroup1-{controller}")
    assert base is not None
    assert os.getpid() in _own_cgroup_procs(base), "never a base above our own cgroup"
    leaf = Path(base, f"bvisor-test-oracle-{os.getpid()}")
    leaf.mkdir()
    try:
        assert (leaf / limit_file).exists()
    finally:
        leaf.rmdir()


def test_probe_leaves_no_probe_directories(live_facts: HostFacts) -> None:
    probe_host(None)
    bases = [b for _, b in live_facts.cgroup_v1_bases]
    if live_facts.cgroup_v2_base:
        bases.append(live_facts.cgroup_v2_base)
    for base in bases:
        leftovers = [n for n in os.listdir(base) if n.startswith(f"bvisor-probe-{os.getpid()}-")]
        assert leftovers == [], f"probe left {leftovers} in {base}"


def test_probe_records_kernel_identity_and_notes(live_facts: HostFacts) -> None:
    assert live_facts.kernel_release == os.uname().release
    assert live_facts.arch == os.uname().machine
    assert (live_facts.host_uid, live_facts.host_gid) == (os.getuid(), os.getgid())
    assert live_facts.launcher_path is None and live_facts.launcher_identity is None
    assert len(live_facts.probe_notes) >= 5


def test_launcher_identity_is_blake3_of_the_file(tmp_path: Path) -> None:
    exe = tmp_path / "launcher"
    exe.write_bytes(b"#!/bin/sh\nexit 0\n" * 1000)
    assert file_identity(str(exe)) == blake3.blake3(exe.read_bytes()).hexdigest()
    assert file_identity(str(tmp_path / "missing")) is None
    facts = probe_host(str(exe))
    assert facts.launcher_path == str(exe)
    assert facts.launcher_identity == blake3.blake3(exe.read_bytes()).hexdigest()


def test_linux_profile_is_probe_plus_ceiling() -> None:
    snapshot = linux_profile(None)
    assert snapshot.backend == "linux"
    assert {c.key for c in snapshot.ceiling} >= {"filesystem", "kill:atomic", "budget:wall_micros"}


def test_parse_proc_cgroup_splits_v1_controller_lists() -> None:
    text = "12:cpu,cpuacct:/a\n4:memory:/process_api/x\n1:name=systemd:/\n0::/user.slice\n"
    parsed = parse_proc_cgroup(text)
    assert parsed == {
        "cpu": "/a",
        "cpuacct": "/a",
        "memory": "/process_api/x",
        "name=systemd": "/",
        "": "/user.slice",
    }


def test_parse_mountinfo_finds_cgroup_mounts_and_unescapes() -> None:
    text = (
        "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"
        "35 31 0:32 /job /sys/fs/cgroup/mem\\040ory rw,relatime shared:9 - cgroup cgroup "
        "rw,memory\n"
        "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
        "23 1 0:21 / /sys rw - sysfs sysfs rw\n"
    )
    mounts = parse_mountinfo(text)
    assert [(m.mount_point, m.root, m.version, m.controllers) for m in mounts] == [
        ("/sys/fs/cgroup/unified", "/", 2, ()),
        ("/sys/fs/cgroup/mem ory", "/job", 1, ("memory",)),
        ("/sys/fs/cgroup/cpu,cpuacct", "/", 1, ("cpu", "cpuacct")),
    ]


def test_probe_finds_a_uts_namespace_whose_hostname_it_may_set(live_facts: HostFacts) -> None:
    # the oracle (unshare(1) and hostname(1) in tests.features) is not the product's probe
    require_feature("utsns")
    assert live_facts.utsns is True
    assert any(
        "utsns (a UTS namespace whose hostname it set): true" in n for n in live_facts.probe_notes
    )
    # the probe's child sets a hostname in its own namespace only: never the host's, also
    # when it runs as root without a user namespace
    host = Path("/proc/sys/kernel/hostname")
    before = host.read_text()
    assert probe_namespaces(as_root=os.getuid() == 0).utsns
    assert host.read_text() == before != "bvisor-probe\n"


def test_the_utsns_fact_is_optional_and_strict() -> None:
    value = canonical.decode(canonical.encode(FIXED_FACTS.to_value()))
    assert "utsns" not in value  # a profile from before the fact keeps its bytes (and h_p)
    probed = dataclasses.replace(FIXED_FACTS, utsns=True)
    assert HostFacts.from_value(canonical.decode(canonical.encode(probed.to_value()))) == probed
    bad = {**value, "utsns": 1}  # type: ignore[dict-item]
    with pytest.raises(ContractError, match=r"facts\.utsns"):
        HostFacts.from_value(bad)


def test_host_facts_round_trip_and_strict_decode() -> None:
    value = canonical.decode(canonical.encode(FIXED_FACTS.to_value()))
    assert HostFacts.from_value(value) == FIXED_FACTS
    bad = dict(value)  # type: ignore[arg-type]
    bad["landlock_abi"] = True
    with pytest.raises(ContractError, match=r"facts\.landlock_abi"):
        HostFacts.from_value(bad)
    bad = dict(value)  # type: ignore[arg-type]
    bad["surprise"] = 1
    with pytest.raises(ContractError, match=r"facts\.surprise"):
        HostFacts.from_value(bad)


def test_concurrent_probes_agree(live_facts: HostFacts) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: probe_host(None), range(4)))
    for facts in results:
        assert facts.cgroup_v2_base == live_facts.cgroup_v2_base
        assert facts.cgroup_v2_kill == live_facts.cgroup_v2_kill
        assert facts.cgroup_v1_bases == live_facts.cgroup_v1_bases
