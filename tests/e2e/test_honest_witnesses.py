"""Budget witnesses say what the kernel measured, or that they cannot see.

Oracles from outside the report: the workload's own processes measure what they did
(CPU burnt, threads started, bytes written) and print it; the witness must be at least
that, or say ``unavailable`` with ``observed`` null — never a lower number. Before the fix
CPU came from the workload's rusage (children nobody waited for were missing), the task
count without a pids controller counted processes (threads were missing), and storage
was never witnessed.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

from bvisor.contract import Budget, BudgetDimension, MinGuarantee
from bvisor.contract.report import SealedReport
from bvisor.front.api import run_confined
from bvisor.front.defaults import default_spec
from bvisor.launcher.host.storage import sample_storage
from tests.e2e.helpers import descendants_spec, with_budgets
from tests.features import require_feature

MEDIATED = MinGuarantee.MEDIATED

# A grandchild burns CPU while its parent, the workload, never waits for it (the
# intermediate shell exits at once, so the burner is an orphan); it reports its own CPU
# through a FIFO, which the workload's `cat` reads until the burner is done.
BURNER = (
    "import time\n"
    "end = time.process_time() + 0.6\n"
    "while time.process_time() < end:\n"
    "    pass\n"
    "print('burnt_us', int(time.process_time() * 1e6), flush=True)\n"
)


def _orphan_burn(fifo: Path) -> str:
    return f'mkfifo {fifo}; ( {sys.executable} -c "$0" > {fifo} & ); cat {fifo}'


THREADS = """
import threading, time
gate = threading.Event()
threads = [threading.Thread(target=gate.wait) for _ in range(40)]
for t in threads:
    t.start()
time.sleep(0.5)
gate.set()
print("threads", len(threads) + 1, flush=True)
"""


def _witness(report: SealedReport, dimension: BudgetDimension) -> object:
    return next(w for w in report.body.budget_witnesses if w.dimension is dimension)


def test_cpu_of_a_child_nobody_waited_for_is_counted(tmp_path: Path) -> None:
    require_feature("cgroup2-kill")
    out = bytearray()
    spec = with_budgets(
        descendants_spec(["-c", _orphan_burn(tmp_path / "fifo"), BURNER]),
        cpu_micros=Budget(60_000_000, MEDIATED),
    )
    report = run_confined(spec, ledger=tmp_path / "ledger", on_stdout=out.extend)
    burnt = int(out.split(b"burnt_us ")[1].split()[0])
    witness = _witness(report, BudgetDimension.CPU_MICROS)
    assert witness.observed is not None, witness  # type: ignore[attr-defined]
    assert witness.observed >= burnt, (witness, burnt)  # type: ignore[attr-defined]
    assert "cpu.stat" in witness.source  # type: ignore[attr-defined]


def test_threads_count_as_tasks_or_the_witness_says_unavailable(tmp_path: Path) -> None:
    require_feature("cgroup2-kill")
    out = bytearray()
    spec = with_budgets(
        descendants_spec(["-c", THREADS], exe=sys.executable),
        process_count=Budget(1000, MEDIATED),  # witnessed, so no pids leaf is made
    )
    report = run_confined(spec, ledger=tmp_path / "ledger", on_stdout=out.extend)
    threads = int(out.split(b"threads ")[1].split()[0])
    witness = _witness(report, BudgetDimension.PROCESS_COUNT)
    observed = witness.observed  # type: ignore[attr-defined]
    if observed is None:
        assert witness.source.startswith("unavailable"), witness  # type: ignore[attr-defined]
        seen = int(witness.source.split("at least ")[1].split()[0])  # type: ignore[attr-defined]
        assert seen >= threads, witness  # the sampled lower bound counted every thread
    else:
        assert observed >= threads, (witness, threads)


def test_storage_growth_of_the_write_root_is_witnessed(tmp_path: Path) -> None:
    require_feature("landlock")
    work = tmp_path / "work"
    work.mkdir()
    code = f"open({str(work / 'blob')!r}, 'wb').write(b'x' * (5 << 20))"
    spec = default_spec(["/usr/bin/python3", "-c", code], cwd=str(work))
    report = run_confined(spec, ledger=tmp_path / "ledger")
    assert report.body.exit is not None and report.body.exit.code == 0, report.body
    witness = _witness(report, BudgetDimension.STORAGE_BYTES)
    assert witness.observed is not None and witness.observed >= 5 << 20, witness  # type: ignore[attr-defined]
    assert witness.guarantee == "mediated"  # type: ignore[attr-defined]


def test_a_storage_walk_that_runs_out_says_unavailable(tmp_path: Path) -> None:
    for index in range(50):
        (tmp_path / f"f{index}").write_bytes(b"x" * 4096)
    assert sample_storage([str(tmp_path)]).allocated is not None
    cut = sample_storage([str(tmp_path)], max_entries=10)
    assert cut.allocated is None and "more than 10 entries" in (cut.why_not or "")


# The workload hides what it wrote from a walk by name: a path longer than PATH_MAX
# (ENAMETOOLONG for every name-based call, root's included) and a directory it made
# unreadable (EACCES for a normal user). Written before the fix, the witness skipped both
# as "removed meanwhile" and reported a few KiB for 5 MiB.
HIDE_DEEP = (
    "import os\n"
    "for _ in range(20):\n"
    "    os.mkdir('d' * 250)\n"
    "    os.chdir('d' * 250)\n"
    "open('blob', 'wb').write(b'x' * (5 << 20))\n"
)
HIDE_UNREADABLE = (
    "import os\n"
    "os.mkdir('vault')\n"
    "open('vault/blob', 'wb').write(b'x' * (5 << 20))\n"
    "os.chmod('vault', 0)\n"
)


def _hidden_storage(tmp_path: Path, code: str) -> object:
    require_feature("landlock")
    work = tmp_path / "work"
    work.mkdir()
    spec = default_spec(["/usr/bin/python3", "-c", code], cwd=str(work))
    try:
        report = run_confined(spec, ledger=tmp_path / "ledger")
    finally:
        for directory, _dirs, _files in os.walk(work):
            os.chmod(directory, 0o700)
    assert report.body.exit is not None and report.body.exit.code == 0, report.body
    return _witness(report, BudgetDimension.STORAGE_BYTES)


def _at_least_or_unavailable(witness: object, floor: int) -> None:
    observed = witness.observed  # type: ignore[attr-defined]
    if observed is None:
        assert witness.source.startswith("unavailable"), witness  # type: ignore[attr-defined]
    else:
        assert observed >= floor, witness


def test_storage_below_a_path_longer_than_path_max_is_counted(tmp_path: Path) -> None:
    _at_least_or_unavailable(_hidden_storage(tmp_path, HIDE_DEEP), 5 << 20)


def test_storage_in_a_directory_made_unreadable_is_counted(tmp_path: Path) -> None:
    _at_least_or_unavailable(_hidden_storage(tmp_path, HIDE_UNREADABLE), 5 << 20)


# Memory the workload holds in files is in nobody's resident set: 256 MiB written to a
# memfd in 1 MiB steps, with a resident set of a few MiB. Before the fix, without a
# cgroup memory peak the witness was the workload's maxrss, called an upper bound.
HOLD_IN_FILES = (
    "import os\n"
    "fd = os.memfd_create('held')\n"
    "for _ in range(256):\n"
    "    os.write(fd, b'x' * (1 << 20))\n"
    "print('held', 256 << 20, flush=True)\n"
)


def test_memory_held_in_files_is_witnessed_or_unavailable(tmp_path: Path) -> None:
    spec = with_budgets(
        descendants_spec(["-c", HOLD_IN_FILES], exe=sys.executable),
        resident_bytes=Budget(1 << 40, MEDIATED),  # witnessed: no memory leaf is made
    )
    out = bytearray()
    report = run_confined(spec, ledger=tmp_path / "ledger", on_stdout=out.extend)
    held = int(out.split(b"held ")[1].split()[0])
    _at_least_or_unavailable(_witness(report, BudgetDimension.RESIDENT_BYTES), held)


def test_a_root_renamed_away_is_counted_where_it_went_not_where_its_path_leads(
    tmp_path: Path,
) -> None:
    """Found by attack: with a write root inside another, the workload renamed the inner
    root's parent away and put a symlink to a host directory at its path, and the host,
    reopening the roots by path after the run, counted that directory (3 MiB outside every
    root, its size leaked into the report). Both samples now go by the roots' fds, opened
    before the run. Oracle: the witness against the bytes the workload wrote (none)."""
    require_feature("landlock")
    from bvisor.contract import Filesystem, FsAccess

    work = tmp_path / "work"
    (work / "a" / "inner").mkdir(parents=True)
    outside = tmp_path / "outside"
    (outside / "inner").mkdir(parents=True)
    (outside / "inner" / "blob").write_bytes(os.urandom(3 << 20))
    code = f"import os; os.rename('a', 'c'); os.symlink({str(outside)!r}, 'a')"
    base = default_spec(["/usr/bin/python3", "-c", code], cwd=str(work))
    spec = dataclasses.replace(
        base,
        capabilities=(
            *base.capabilities,
            Filesystem(access=FsAccess.WRITE, roots=(str(work / "a" / "inner"),)),
        ),
    )
    report = run_confined(spec, ledger=tmp_path / "ledger")
    assert report.body.exit is not None and report.body.exit.code == 0, report.body
    assert (work / "a").is_symlink()  # the workload did re-point the inner root's path
    witness = _witness(report, BudgetDimension.STORAGE_BYTES)
    observed = witness.observed  # type: ignore[attr-defined]
    assert observed is not None and observed < 1 << 20, witness
