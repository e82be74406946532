"""One definition per wire fact, checked from the code (ast), not from memory.

The event kinds of a run, their payload keys and their order are written once, in
:mod:`bvisor.contract.events`; the runner, the API's recording sink, ``bvisor-ledger``, replay
and the benchmarks import them. A string constant spelling one of those kinds anywhere else
in the product is a second definition waiting to drift, so it fails here (tests may keep
literals: they assert the wire value itself). The C window's op codes have their own
agreement test (``test_window_agreement.py``).
"""

from __future__ import annotations

import ast
from pathlib import Path

from bvisor.contract import events, notes
from bvisor.contract import facts as fact_kinds
from bvisor.contract.events import RUN_KINDS, SHAPES
from tests.house.test_layers import _imports

ROOT = Path(__file__).resolve().parents[2]
HOME = ROOT / "bvisor" / "contract" / "events.py"
PRODUCT = ("bvisor", "front", "planner", "launcher", "ledger", "replay", "benchmarks")
WIRE_KINDS = frozenset({*RUN_KINDS, events.NOTE_EXTERNAL, events.NOTE_KIND_PREFIX})


def _sources() -> list[Path]:
    files: list[Path] = []
    for folder in PRODUCT:
        for path in sorted((ROOT / folder).rglob("*.py")):
            inside = path.relative_to(ROOT / folder).parts
            if folder == "bvisor" and inside[0] in PRODUCT:
                continue  # the source checkout's links to the other folders
            if "__pycache__" not in path.parts and not path.name.startswith("_seccomp_abi"):
                files.append(path)
    return files


def _kind_literals(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and node.value in WIRE_KINDS
    ]


def test_event_kinds_are_spelled_only_in_their_home() -> None:
    found = [hit for path in _sources() if path != HOME for hit in _kind_literals(path)]
    assert not found, "event kinds spelled outside bvisor/contract/events.py:\n" + "\n".join(found)


def test_the_home_defines_each_kind_once() -> None:
    spelled = [hit.rsplit(": ", 1)[1] for hit in _kind_literals(HOME)]
    assert sorted(spelled) == sorted(repr(kind) for kind in WIRE_KINDS), spelled


def test_every_kind_a_run_writes_has_a_payload_shape() -> None:
    assert set(SHAPES) == set(RUN_KINDS)
    assert set(events.AFTER_ADMITTED) | events.OPENING_KINDS | {events.NETWORK_DECISION} == set(
        RUN_KINDS
    )
    assert set(events.AFTER_ADMITTED) >= events.REPEATABLE
    assert set(RUN_KINDS) >= events.CLOSING_KINDS


def test_a_builder_cannot_make_a_payload_its_shape_refuses() -> None:
    shape = SHAPES[events.LAUNCHER_PHASE]
    shape.check(events.LAUNCHER_PHASE, {"index": 0, "line": "LauncherStarted"})
    for wrong in ({"index": 0}, {"index": 0, "line": "x", "extra": 1}):
        try:
            shape.check(events.LAUNCHER_PHASE, wrong)
        except AssertionError:
            continue
        raise AssertionError(f"{wrong} passed the shape")


def test_the_ledger_does_not_know_run_kinds() -> None:
    # The ledger knows events, not runs: nothing under ledger/ imports the run grammar.
    wrong = [
        f"{path.relative_to(ROOT)}: {module}"
        for path in (ROOT / "ledger").rglob("*.py")
        for module in _imports(path)
        # (``from bvisor.contract import events`` reads as ``bvisor.contract.events`` too)
        if module.startswith("bvisor.contract.events")
    ]
    assert not wrong, wrong


# -- the launcher's notes and the report's facts -------------------------------------------

NOTES_HOME = ROOT / "bvisor" / "contract" / "notes.py"
FACTS_HOME = ROOT / "bvisor" / "contract" / "facts.py"
# The opening words of every note another process parses.
NOTE_WORDS = (
    "workload exit ", "workload pid=", "init pid=", "workload rusage ", "refused code=",
    "DANGER test hook", "identity code=", "fault mechanism=",
    # what a mechanism applied (replay requires them of a run that reached exec)
    "userns uid_map=", "netns created", "ipc namespace created", "uts namespace ", "pid namespace ",
    "cgroup placed ", "cgroupfs hidden", "user limits (", "user limits skipped",
    "netproxy: ", "netdns: ", "private root: ", "private root skipped", "pivot_root: ",
    "oom_score_adj=",
    "capabilities dropped", "no_new_privs set", "fds kept ", "new session: ",
    "controlling terminal: ", "environment exact: ", "landlock abi=", "seccomp denylist",
)  # fmt: skip


def _constants(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    ]


def test_parsed_notes_are_worded_only_in_their_home() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{line}: {text[:60]!r}"
        for path in _sources()
        if path != NOTES_HOME
        for line, text in _constants(path)
        if any(text.startswith(word) for word in NOTE_WORDS)
    ]
    assert not found, "launcher notes worded outside bvisor/contract/notes.py:\n" + "\n".join(found)


def test_read_fact_kinds_are_spelled_only_in_their_home() -> None:
    kinds = {getattr(fact_kinds, name) for name in fact_kinds.__all__ if name != "NOT_RUN"}
    found = [
        f"{path.relative_to(ROOT)}:{line}: {text!r}"
        for path in _sources()
        # The profile's ``launcher_identity`` is a field of the profile that shares the name.
        if path not in (FACTS_HOME, ROOT / "bvisor" / "contract" / "profile.py")
        for line, text in _constants(path)
        if text in kinds
    ]
    assert not found, "fact kinds spelled outside bvisor/contract/facts.py:\n" + "\n".join(found)


def test_every_note_a_reader_parses_is_what_the_writer_writes() -> None:
    assert notes.parse_int_note(notes.pid_note(41, init=False)) == ("pid", 41)
    assert notes.noted_workload_pid(notes.pid_note(41, init=False)) == "41"
    assert notes.init_pid(notes.pid_note(7, init=True)) == 7
    assert notes.init_pid(notes.pid_note(7, init=False)) is None
    assert notes.parse_int_note(notes.exit_note(code=3)) == ("exit code", 3)
    assert notes.parse_int_note(notes.exit_note(signal=9)) == ("exit signal", 9)
    assert notes.noted_exit(notes.exit_note(signal=9)) == "signal=9"
    assert notes.rusage_text(notes.rusage_note(1, 2, 3)) == "utime_us=1 stime_us=2 maxrss_kb=3"
    assert notes.parse_identity(notes.identity_note("ab12", "unknown")) == ("ab12", "unknown")
    assert notes.refusal_code(notes.refused_note("plan-invalid", "x: y")) == "plan-invalid"
    assert notes.is_refusal(notes.refused_note("c", "d"))
    fault = notes.fault_note("landlock", 38, "ENOSYS", "landlock_create_ruleset")
    assert notes.parse_fault(fault) == ("landlock", 38, "ENOSYS")
    assert notes.confinement_unavailable(fault)
    assert not notes.confinement_unavailable(notes.fault_note("exec", 38, "ENOSYS", "x"))
    assert not notes.confinement_unavailable(notes.internal_fault_note(RuntimeError("x")))
    assert notes.danger_note("skip-landlock").startswith(notes.DANGER_PREFIX)


def test_every_applied_note_replay_parses_is_what_the_launcher_writes() -> None:
    from bvisor.contract import mechanisms as mech

    assert notes.parse_cgroup_placed(notes.cgroup_placed_note("v2", 17)) == ("v2", 17, None)
    placed = notes.cgroup_placed_note("v1", 19, "memory")
    assert notes.parse_cgroup_placed(placed) == ("v1", 19, "memory")
    assert notes.parse_cgroup_placed("cgroup placed v1 slot=12") == ("v1", 12, None)  # rules v1
    assert notes.user_limits_percent(notes.user_limits_note(50, "x=1 of 2")) == 50
    assert notes.parse_landlock(notes.landlock_note(7, 5, 0xFFFF, 0x3)) == (7, 5, 0xFFFF, 0x3)
    assert notes.parse_landlock_net(notes.landlock_net_note(4, (3128, 53))) == (4, (3128, 53))
    flags = (("deny_new_tasks", True), ("deny_sockets", False))
    seccomp = notes.seccomp_note(flags, "x86_64", 9, ["bpf"])
    assert notes.parse_seccomp_flags(seccomp) == {"deny_new_tasks": True, "deny_sockets": False}
    mounts = (
        mech.BindMount("/usr", "/usr", "read", False),
        mech.ProcMount("/proc"),
        mech.BindMount("/opt", "/opt", "write", False),
    )
    shown = [notes.mount_shown(mounts[0]), notes.mount_shown(mounts[1])]
    shown.append(notes.mount_shown(mounts[2], present=False))
    assert notes.private_root_fits(notes.private_root_note(shown), mounts) is True
    assert notes.private_root_fits(notes.private_root_note(shown[:2]), mounts) is False
    assert notes.private_root_fits(notes.pivot_root_note("/"), mounts) is None


def test_recorded_applied_wording_is_the_wire() -> None:
    # The words released launchers wrote (tests/compat/ledgers hold them).
    assert notes.userns_note(0, 0) == "userns uid_map='0 0 1' gid_map='0 0 1' setgroups=deny"
    assert notes.cgroup_placed_note("v1", 19, "pids") == "cgroup placed v1 slot=19 (pids)"
    assert notes.landlock_note(7, 0, 0, 3) == "landlock abi=7 rules=0 handled=0x0 scoped=0x3"
    assert (
        notes.landlock_net_note(7, (3128,)) == "landlock abi=7 net: tcp connect only to port 3128"
    )
    assert notes.pivot_root_note("/") == "pivot_root: the old root detached; cwd /"
    assert notes.fds_kept_note([0, 1, 2]) == "fds kept 0,1,2"
    assert notes.environment_note(3) == "environment exact: 3 entries"
    assert notes.seccomp_note((("deny_sockets", True),), "x86_64", 1, []) == (
        "seccomp denylist installed deny_sockets=1 arch=x86_64 badarch=kill_process "
        "instructions=1 denied=none"
    )


def test_recorded_wording_is_the_wire() -> None:
    # Ledgers hold these words; a formatter reworded would make old runs' notes unreadable.
    assert notes.exit_note(code=0) == "workload exit code=0"
    assert notes.pid_note(5, init=True) == "init pid=5"
    assert notes.refused_note("c", "d") == "refused code=c: d"
    assert notes.fault_note("m", 1, "EPERM", "d") == "fault mechanism=m errno=1 name=EPERM: d"
    assert notes.identity_note("c", "e") == "identity code=c entry=e"
    assert notes.rusage_note(1, 2, 3) == "workload rusage utime_us=1 stime_us=2 maxrss_kb=3"
    assert notes.danger_note("h") == "DANGER test hook active: h"
