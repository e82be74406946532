"""A resident launcher builds every seccomp filter a run can ask for while it is idle, and
a run is handed the kept one: it must be the very program a fresh build makes, for every
set of flags, and a refused set of flags stays refused."""

from __future__ import annotations

import pytest

from bvisor.launcher.basement import seccomp
from tests.features import require_feature


def test_every_kept_filter_is_what_a_fresh_build_makes(monkeypatch: pytest.MonkeyPatch) -> None:
    require_feature("seccomp")
    monkeypatch.setattr(seccomp, "_built", {})
    while seccomp.prebuild_one():
        pass
    assert set(seccomp._built) == set(seccomp._FLAG_SETS)
    names = ("deny_new_tasks", "deny_sockets", "threads_only", "notify_denials")
    names += ("inet_sockets_only",)
    for flags in seccomp._FLAG_SETS:
        kept = seccomp.build_filter(**dict(zip(names, flags, strict=True)))
        assert kept is seccomp._built[flags]
        assert kept == seccomp._build(*flags), flags


def test_flags_that_exclude_each_other_are_still_refused() -> None:
    require_feature("seccomp")
    with pytest.raises(seccomp.SeccompError):
        seccomp.build_filter(deny_new_tasks=True, deny_sockets=False, threads_only=True)
    with pytest.raises(seccomp.SeccompError):
        seccomp.build_filter(deny_new_tasks=False, deny_sockets=True, inet_sockets_only=True)
