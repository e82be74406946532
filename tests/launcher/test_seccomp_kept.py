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


def test_every_filter_says_what_its_flags_deny_and_replay_reads_it_back() -> None:
    """The note's denied list is what replay holds a filter of those flags to (the
    contract's labels): every buildable set of flags must produce exactly that list,
    and the note written from it must pass replay's reading."""
    require_feature("seccomp")
    from bvisor.contract import notes
    from bvisor.contract import seccomp as labels

    names = ("deny_new_tasks", "deny_sockets", "threads_only", "notify_denials")
    names += ("inet_sockets_only",)
    for flags in seccomp._FLAG_SETS:
        named = dict(zip(names, flags, strict=True))
        built = seccomp._build(*flags)
        assert built.denied == labels.expected_denials(named), named
        note = notes.seccomp_note(
            tuple(named.items()), built.arch, built.instructions, built.denied
        )
        assert labels.denial_problem(named, notes.seccomp_denied(note)) is None, note
        assert notes.seccomp_arch(note) == built.arch
        others = {**named, "deny_sockets": not named["deny_sockets"]}
        assert labels.denial_problem(others, notes.seccomp_denied(note)) is not None, note


def test_the_baselines_released_launchers_wrote_still_replay() -> None:
    """Runs recorded before the baseline grew (the short group label, the rest without the
    core dump limit or without what came after it) must keep replaying; a list missing
    anything else still fails."""
    from bvisor.contract import seccomp as labels

    flags = {"deny_new_tasks": True}
    groups = (
        "namespaces, keyrings, io_uring, mounts",
        "namespaces, keyrings, io_uring, mounts, inotify/fanotify watches",
        "namespaces, keyrings, io_uring, mounts, inotify/fanotify watches, "
        "perf events, bpf, userfaultfd, the kernel log",
        labels.BASELINE_GROUP,
    )  # every group label a ledger on main holds (found replaying this machine's ledgers)
    for group in groups:
        for rest in (labels.BASELINE[:4], labels.BASELINE[:5], labels.BASELINE):
            listed = ",".join([group, *rest, *labels.NEW_TASKS])
            assert labels.denial_problem(flags, listed) is None, listed
    short = ",".join([labels.BASELINE_GROUP, *labels.BASELINE[:3], *labels.NEW_TASKS])
    assert labels.denial_problem(flags, short) is not None


def test_a_syscall_libseccomp_does_not_know_refuses_the_filter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Found by attack (reading the builder against libseccomp's answers): a name the
    library does not know (``__NR_SCMP_ERROR``) was skipped like a syscall the architecture
    lacks, so with a libseccomp older than the kernel (fchmodat2 is unknown to libseccomp
    before 2.5.5, and in every kernel bvisor supports) the setuid rule for fchmodat2 was
    missing while the note said the filter denies it. The filter is now refused, naming
    the call; a syscall the architecture lacks still needs no rule. Oracle: the library's
    own answers for the names."""
    require_feature("seccomp")
    unknown = "no_such_syscall_of_bvisor"
    lib = seccomp._library()
    assert int(lib.seccomp_syscall_resolve_name(unknown.encode())) == -1  # __NR_SCMP_ERROR
    monkeypatch.setattr(seccomp, "_built", {})
    monkeypatch.setattr(seccomp, "BASELINE_DENIED", (*seccomp.BASELINE_DENIED, unknown))
    with pytest.raises(seccomp.SeccompError, match=f"does not know the syscall {unknown}"):
        seccomp.build_filter(deny_new_tasks=False, deny_sockets=True)
    monkeypatch.undo()
    lacking = "socketcall"  # in libseccomp's table, absent on x86_64 and aarch64
    if int(lib.seccomp_syscall_resolve_name(lacking.encode())) >= 0:
        pytest.skip(f"LOUD SKIP: this architecture has {lacking}")
    plain = seccomp._build(False, True, False, False, False)
    monkeypatch.setattr(seccomp, "BASELINE_DENIED", (*seccomp.BASELINE_DENIED, lacking))
    assert seccomp._build(False, True, False, False, False) == plain
