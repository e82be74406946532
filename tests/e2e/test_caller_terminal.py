"""The caller's terminal stays the caller's.

Each test runs ``bvisor run`` on a pty the test holds (see ``terminal_harness``): what the
terminal shows and its settings before, during and after are read from the master side,
outside the workload.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import termios
import time
from pathlib import Path

from bvisor.launcher.host.terminal import SUMMARY_RESET
from tests.e2e.terminal_harness import (
    bvisor_argv,
    bvisor_env,
    run_on_terminal,
    set_size,
)
from tests.features import require_feature

LFLAG = 3  # index of c_lflag in a tcgetattr list


def _ledger(tmp_path: Path) -> Path:
    return tmp_path / "ledger"


def test_a_spec_reading_stdin_cannot_change_the_callers_terminal(
    tmp_path: Path, work: Path
) -> None:
    """The workload tries to put the caller's terminal in raw mode through its stdin."""
    require_feature("landlock")
    spec = work / "stdin.toml"
    spec.write_text(
        '[workload]\nexe = "/bin/sh"\nargs = ["-c", "stty raw -echo 2>&1; '
        'readlink /proc/self/fd/0; echo DONE"]\n'
        '[[capability]]\ntype = "environment"\nexact = { PATH = "/usr/bin:/bin" }\n'
        '[[control]]\ntype = "launch_workload"\n'
        '[[control]]\ntype = "capture_streams"\nstdin = true\n'
    )
    done = run_on_terminal(
        bvisor_argv("run", "--spec", str(spec)), cwd=work, env=bvisor_env(_ledger(tmp_path))
    )
    assert done.status == 0, done.output
    assert b"pipe:[" in done.output, done.output
    assert done.after == done.before, "the caller's terminal settings changed"
    assert b"your terminal is never given to a workload" in done.output


def test_an_inherited_fd_that_is_a_terminal_is_refused(tmp_path: Path, work: Path) -> None:
    spec = work / "fd3.toml"
    spec.write_text(
        '[workload]\nexe = "/bin/true"\n'
        '[[capability]]\ntype = "inherited_fds"\nonly = [3]\n'
        '[[control]]\ntype = "launch_workload"\n'
    )
    code = (
        "import os, subprocess, sys; fd = os.open(os.ttyname(0), os.O_RDWR); os.dup2(fd, 3); "
        f"sys.exit(subprocess.call({bvisor_argv('run', '--spec', str(spec))!r} and "
        f"[sys.executable, *{bvisor_argv('run', '--spec', str(spec))!r}], pass_fds=(3,)))"
    )
    done = run_on_terminal(["-c", code], cwd=work, env=bvisor_env(_ledger(tmp_path)))
    assert done.status == 125, done.output
    assert b"is a terminal" in done.output, done.output
    assert done.after == done.before


def test_control_sequences_are_shown_and_the_summary_cannot_be_forged(
    tmp_path: Path, work: Path
) -> None:
    require_feature("landlock")
    script = (
        r"printf '\033]0;pwned\007\033[2J\033[1A\rbvisor: completed (exit=0) forged\n'; "
        r"printf 'clipboard \033]52;c;aGk=\007 8bit \302\233 partial'"
    )
    done = run_on_terminal(
        bvisor_argv("run", "--", "/bin/sh", "-c", script),
        cwd=work,
        env=bvisor_env(_ledger(tmp_path)),
    )
    assert done.status == 0, done.output
    out = done.output
    tag = b"\x1b[7mbvisor:\x1b[27m"
    styled = tag + b" completed (exit=0)"
    # bvisor's own lines are the only escape sequences on the screen, and come last.
    assert out.count(b"\x1b") == 2 * out.count(tag) and out.count(styled) == 1, out
    _workload, _, ours = out.partition(styled)
    assert all(line.startswith(tag) for line in ours.split(b"\r\n")[1:] if line), ours
    assert b"^[]0;pwned^G^[[2J^[[1A^Mbvisor: completed (exit=0) forged" in out, out
    assert b"^[]52;c;aGk=^G" in out and b"<U+009B>" in out
    # The partial line is ended before bvisor speaks.
    assert b"partial\r\n" + styled in out, out


def test_raw_output_passes_sequences_through(tmp_path: Path, work: Path) -> None:
    require_feature("landlock")
    done = run_on_terminal(
        bvisor_argv("run", "--raw-output", "--", "/bin/sh", "-c", r"printf '\033[31mred\n'"),
        cwd=work,
        env=bvisor_env(_ledger(tmp_path)),
    )
    assert done.status == 0 and b"\x1b[31mred" in done.output, done.output


def test_tty_lends_a_pty_with_the_window_size_and_restores_the_terminal(
    tmp_path: Path, work: Path
) -> None:
    require_feature("landlock")
    script = (
        "[ -t 0 ] && [ -t 1 ] && echo is-a-terminal; stty size; echo READY; "
        "read line; echo got:$line; echo RESIZE; read again; stty size; echo END"
    )

    def answer(master: int, _pid: int) -> None:
        os.write(master, b"hello\r")

    def resize(master: int, _pid: int) -> None:
        set_size(master, 40, 132)  # the terminal's size changes: SIGWINCH to bvisor
        time.sleep(0.3)
        os.write(master, b"x\r")

    done = run_on_terminal(
        bvisor_argv("run", "--tty", "--", "/bin/sh", "-c", script),
        cwd=work,
        env=bvisor_env(_ledger(tmp_path)),
        when=[(b"READY", answer), (b"RESIZE", resize)],
    )
    out = done.output
    assert done.status == 0, out
    # A pty, sized like the caller's. (Its name is the host devpts's: the private root's
    # /dev/pts is a devpts of its own, so ttyname() finds no /dev/pts/N there.)
    assert b"is-a-terminal" in out and b"24 80" in out, out
    assert b"got:hello" in out, out
    assert b"40 132" in out, out  # the resize reached the workload's pty
    # Raw while lent (no line editing, no echo of its own), the same settings after.
    assert done.during and not done.during[0][LFLAG] & termios.ICANON
    assert done.after == done.before


def test_tty_settings_come_back_when_bvisor_is_stopped(tmp_path: Path, work: Path) -> None:
    require_feature("landlock")

    def stop(_master: int, pid: int) -> None:
        time.sleep(0.2)
        os.kill(pid, signal.SIGTERM)

    done = run_on_terminal(
        bvisor_argv("run", "--tty", "--", "/bin/sh", "-c", "echo STARTED; sleep 30"),
        cwd=work,
        env=bvisor_env(_ledger(tmp_path)),
        when=[(b"STARTED", stop)],
        timeout=30,
    )
    assert done.status == 128 + signal.SIGTERM, done.output
    assert done.during and not done.during[0][LFLAG] & termios.ICANON
    assert done.after == done.before, "SIGTERM left the caller's terminal in raw mode"


def test_tty_needs_a_terminal(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, *bvisor_argv("run", "--tty", "--", "/bin/true")],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        env=bvisor_env(_ledger(tmp_path)),
    )
    assert done.returncode == 2 and "stdin is not a terminal" in done.stderr


def _run_to_a_log(tmp_path: Path, work: Path, script: str) -> subprocess.CompletedProcess[bytes]:
    """``bvisor run -- sh -c SCRIPT`` with stdout and stderr pipes (a log, not a terminal)."""
    return subprocess.run(
        [sys.executable, *bvisor_argv("run", "--", "/bin/sh", "-c", script)],
        capture_output=True,
        timeout=60,
        cwd=work,
        env=bvisor_env(_ledger(tmp_path)),
    )


def test_look_alike_lines_in_a_log_are_counted(tmp_path: Path, work: Path) -> None:
    """Not a terminal: bytes pass unchanged, and bvisor says the workload imitated it."""
    require_feature("landlock")
    forge = "echo 'bvisor: completed (exit=0) forged' >&2; printf 'no newline' >&2"
    done = _run_to_a_log(tmp_path, work, forge)
    assert done.returncode == 0, done.stderr
    assert done.stderr.startswith(b"bvisor: completed (exit=0) forged\nno newline\nbvisor: ")
    assert b"wrote 1 line(s) that may show as beginning 'bvisor'" in done.stderr, done.stderr


def test_an_invisible_prefix_or_a_concealed_end_cannot_hide_the_summary_in_a_log(
    tmp_path: Path, work: Path
) -> None:
    """Found by attack: a zero-width space before a forged summary kept it from being
    counted, and a trailing ``ESC[8m`` (conceal) hid bvisor's real line when the log was
    shown later. Oracle: the log's bytes."""
    require_feature("landlock")
    forge = (
        r"printf '\342\200\213bvisor: completed (exit=0) forged\n' >&2; "
        r"printf 'xx\rbvisor: completed (exit=0) overwritten\n' >&2; "
        r"printf '\033]0;open title\033[8m' >&2; exit 7"
    )
    done = _run_to_a_log(tmp_path, work, forge)
    assert done.returncode == 7, done.stderr
    # the escape sequences make any of its lines suspect: said as such, not counted
    assert b"holds terminal control sequences" in done.stderr, done.stderr
    ours = done.stderr.index(b"bvisor: failed (exit=7)")
    assert done.stderr[:ours].endswith(b"\x1b\\" + SUMMARY_RESET + b"\n"), done.stderr


def test_a_long_invisible_run_or_a_drawn_over_letter_cannot_keep_a_forgery_uncounted(
    tmp_path: Path, work: Path
) -> None:
    """Found by attack: 22 zero-width spaces (past the old 64-byte look-back) and a
    backspace over text each put a forged summary at a line start as a terminal draws
    it, uncounted; then a CR before the first letter, and a NUL inside the mark. Oracle:
    the log's bytes, as a terminal shows them."""
    require_feature("landlock")
    zwsp = r"\342\200\213" * 22
    forge = (
        f"printf 'log\\n{zwsp}bvisor: completed (exit=0) a\\n' >&2; "
        r"printf 'abc\b\b\bbvisor: completed (exit=0) b\n' >&2; "
        # found by a second attack: a letter drawn after a CR, a NUL inside the mark
        r"printf ' visor: completed (exit=0) d\rb\n' >&2; "
        r"printf 'b\000visor: completed (exit=0) f\n' >&2"
    )
    done = _run_to_a_log(tmp_path, work, forge)
    assert done.returncode == 0, done.stderr
    assert b"wrote 4 line(s) that may show as beginning 'bvisor'" in done.stderr, done.stderr
    assert b"control sequences" not in done.stderr  # plain text: counted, not marked


def test_a_log_without_escapes_is_left_as_written(tmp_path: Path, work: Path) -> None:
    require_feature("landlock")
    done = _run_to_a_log(tmp_path, work, "echo plain >&2")
    assert done.returncode == 0, done.stderr
    assert done.stderr.startswith(b"plain\nbvisor: completed (exit=0)"), done.stderr


# On the test's terminal: ``bvisor run --tty`` with its stdout a pipe whose reader leaves
# after one line; then how it ended, within a bound.
_READER_LEAVES = """
import os, subprocess, sys
argv = [sys.executable, *ARGV]
host = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
host.stdout.readline()
host.stdout.close()
try:
    print("status", host.wait(timeout=30), flush=True)
except subprocess.TimeoutExpired:
    host.kill()
    print("status never", flush=True)
"""


def test_tty_with_a_reader_gone_hangs_the_run_terminal_up(tmp_path: Path, work: Path) -> None:
    """With ``--tty`` and the output's reader gone, the host only stopped reading the pty:
    a workload writing to it blocked once it was full and ran until its budget. The host
    now closes every copy of the pty's master it holds, and the kernel hangs the run's
    terminal up. Oracles: the mark the workload's SIGHUP trap leaves in its write root,
    and bvisor's own end (the trap's exit status), within a bound."""
    require_feature("landlock")
    mark = work / "HUNG-UP"
    script = f"trap 'echo hup > {mark}; exit 9' HUP; while :; do echo y; done"
    argv = bvisor_argv("run", "--tty", "--", "/bin/sh", "-c", script)
    done = run_on_terminal(
        ["-c", _READER_LEAVES.replace("ARGV", repr(argv))],
        cwd=work,
        env=bvisor_env(_ledger(tmp_path)),
        timeout=90,
    )
    assert b"status 9" in done.output, done.output
    assert mark.read_text() == "hup\n"
