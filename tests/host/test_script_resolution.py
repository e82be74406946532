"""Commands resolved as the kernel's script loader would, with one-line reasons otherwise.

Oracle: the kernel itself — each resolved command is compared with what a real ``execve``
of the script prints (argv as the interpreter sees it), run directly on the host.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from bvisor.launcher.host.script import (
    EXIT_CANNOT_INVOKE,
    EXIT_NOT_FOUND,
    MAX_DEPTH,
    CommandUnrunnable,
    resolve_command,
)

PATH = "/usr/local/bin:/usr/bin:/bin"
SHOW_ARGV = '#!/bin/sh\nfor a in "$0" "$@"; do printf "%s|" "$a"; done\n'


def _script(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o755)
    return path


def _kernel_argv(tmp_path: Path, command: list[str]) -> str:
    return subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, check=True).stdout


def _resolved_argv(tmp_path: Path, command: list[str]) -> str:
    resolved = resolve_command(command, path=PATH, cwd=str(tmp_path))
    # Run what was resolved (exe with the resolved argv0 and args) and compare.
    done = subprocess.run(
        [resolved.argv0, *resolved.args],
        executable=resolved.exe,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


@pytest.mark.parametrize("shebang", ["", " --flag", "   spaced   arg  ", "\t-a\tb \t"])
def test_resolution_matches_the_kernel(tmp_path: Path, shebang: str) -> None:
    inner = _script(tmp_path / "inner", SHOW_ARGV)
    _script(tmp_path / "outer", f"#!{inner}{shebang}\n")
    for command in (["./outer", "a b", "c"], ["./inner", "x"]):
        assert _resolved_argv(tmp_path, command) == _kernel_argv(tmp_path, command)


def test_a_loop_of_interpreters_is_refused(tmp_path: Path) -> None:
    _script(tmp_path / "a", f"#!{tmp_path / 'b'}\n")
    _script(tmp_path / "b", f"#!{tmp_path / 'a'}\n")
    with pytest.raises(CommandUnrunnable, match=f"more than {MAX_DEPTH} levels") as caught:
        resolve_command(["./a"], path=PATH, cwd=str(tmp_path))
    assert caught.value.status == EXIT_CANNOT_INVOKE


def test_a_shebang_line_longer_than_the_kernel_reads_is_refused(tmp_path: Path) -> None:
    _script(tmp_path / "long", "#!/bin/" + "x" * 300)
    with pytest.raises(CommandUnrunnable, match="longer than 255"):
        resolve_command(["./long"], path=PATH, cwd=str(tmp_path))


def test_a_missing_name_is_127_and_a_binary_runs_as_is(tmp_path: Path) -> None:
    with pytest.raises(CommandUnrunnable) as caught:
        resolve_command(["surely-not-a-command"], path=PATH, cwd=str(tmp_path))
    assert caught.value.status == EXIT_NOT_FOUND
    resolved = resolve_command(["true", "x"], path=PATH, cwd=str(tmp_path))
    assert resolved.argv0 == "true" and resolved.args == ("x",) and resolved.scripts == ()
