"""The probed profile and the plan are kept between runs only while they would not change."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from bvisor.front.defaults import default_spec
from bvisor.launcher.host.locate import default_launcher_path
from bvisor.launcher.host.probe import linux_profile
from bvisor.launcher.host.profile_cache import cached_linux_profile, forget_profiles
from bvisor.planner.planning import plan_boundary


def test_the_cached_profile_is_what_a_probe_records(tmp_path: Path) -> None:
    path = default_launcher_path()
    forget_profiles()
    first = cached_linux_profile(path)
    assert cached_linux_profile(path) is first
    assert first.to_value() == linux_profile(path).to_value()


def test_a_changed_launcher_file_is_probed_again(tmp_path: Path) -> None:
    copy = tmp_path / "bvisor-linux-launcher"
    shutil.copy2(default_launcher_path(), copy)
    before = cached_linux_profile(str(copy))
    copy.write_text(copy.read_text() + "\n# changed\n")
    after = cached_linux_profile(str(copy))
    assert after is not before
    assert after.facts.launcher_identity != before.facts.launcher_identity


def test_a_touched_launcher_file_is_probed_again(tmp_path: Path) -> None:
    copy = tmp_path / "bvisor-linux-launcher"
    shutil.copy2(default_launcher_path(), copy)
    before = cached_linux_profile(str(copy))
    stat = copy.stat()
    os.utime(copy, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert cached_linux_profile(str(copy)) is not before


def test_forgetting_probes_again() -> None:
    path = default_launcher_path()
    before = cached_linux_profile(path)
    forget_profiles()
    assert cached_linux_profile(path) is not before


def test_a_plan_is_made_once_per_spec_and_snapshot() -> None:
    snapshot = linux_profile(default_launcher_path())
    spec = default_spec(["/bin/true"])
    plan = plan_boundary(spec, snapshot)
    assert plan_boundary(default_spec(["/bin/true"]), snapshot) is plan
    other = plan_boundary(default_spec(["/bin/false"]), snapshot)
    assert other is not plan and other.plan_id != plan.plan_id
    # An equal snapshot that is another object is planned afresh, to the same plan.
    again = plan_boundary(spec, linux_profile(default_launcher_path()))
    assert again is not plan and again.plan_id == plan.plan_id
