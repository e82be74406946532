"""Resolve a command as a shell would, ``#!`` interpreters included, before planning.

The launcher executes the workload from an fd the host opened (``fexecve``), which the
kernel cannot hand to a ``#!`` interpreter (the fd closes at exec). So the host does what
the kernel's script loader would, before anything is planned: it reads the ``#!`` line
and makes the *interpreter* the workload's executable, with the optional interpreter
argument and the script's path in front of the user's arguments. The interpreter is then
opened, hashed into the plan and confined like any executable, and the script is a file
it reads inside the boundary. Interpreters that are scripts themselves are followed, at
most :data:`MAX_DEPTH` levels deep (the kernel allows a handful too).

``argv0`` is what the program sees as ``argv[0]``: the name the user typed for a program
(a venv's ``bin/python`` run by its path must see that path, or it cannot find its venv),
the interpreter path as the ``#!`` line writes it for a script.

A command that cannot run is refused here with one line saying why
(:class:`CommandUnrunnable`): not found, a directory, not executable, a missing or
unreadable interpreter, a ``#!`` line too long or empty, too many levels.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "EXIT_CANNOT_INVOKE",
    "EXIT_NOT_FOUND",
    "MAX_DEPTH",
    "MAX_SHEBANG",
    "CommandUnrunnable",
    "ResolvedCommand",
    "resolve_command",
]

MAX_DEPTH = 4
MAX_SHEBANG = 255  # the kernel reads at most this much of a #! line


EXIT_CANNOT_INVOKE = 126  # found but cannot be run (as timeout(1) and shells say)
EXIT_NOT_FOUND = 127


class CommandUnrunnable(ValueError):
    """The command cannot be started; the message says why in one line.

    ``status`` is what a shell (and ``timeout``) would exit with: 127 when the command
    is not there, 126 when it is there but cannot be run.
    """

    def __init__(self, message: str, status: int = EXIT_CANNOT_INVOKE) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class ResolvedCommand:
    """What to execute: an absolute ``exe``, its ``argv0`` and the arguments after it.

    ``scripts`` lists the ``#!`` files passed through on the way (outermost first).
    """

    exe: str
    argv0: str
    args: tuple[str, ...]
    scripts: tuple[str, ...] = ()


def _find(program: str, path: str, cwd: str) -> str:
    """The file a shell would run for ``program`` (a name with a slash is taken as is)."""
    if "/" in program:
        candidate = os.path.normpath(os.path.join(cwd, program))
        _check_runnable(candidate, program)
        return candidate
    found: str | None = None
    for directory in path.split(os.pathsep):
        if not directory:
            continue
        candidate = os.path.join(directory, program)
        try:
            info = os.stat(candidate)
        except OSError:
            continue
        if stat.S_ISREG(info.st_mode):
            if os.access(candidate, os.X_OK):
                return candidate
            found = found or candidate
    if found is not None:
        _check_runnable(found, program)
    raise CommandUnrunnable(f"{program}: command not found on {path}", EXIT_NOT_FOUND)


def _check_runnable(candidate: str, shown: str) -> None:
    try:
        info = os.stat(candidate)
    except FileNotFoundError:
        raise CommandUnrunnable(f"{shown}: no such file", EXIT_NOT_FOUND) from None
    except OSError as exc:
        raise CommandUnrunnable(f"{shown}: {exc.strerror}") from None
    if stat.S_ISDIR(info.st_mode):
        raise CommandUnrunnable(f"{shown}: is a directory")
    if not stat.S_ISREG(info.st_mode):
        raise CommandUnrunnable(f"{shown}: not a regular file")
    if not os.access(candidate, os.X_OK):
        raise CommandUnrunnable(
            f"{shown}: not executable (mode {stat.S_IMODE(info.st_mode):04o}; chmod +x it, "
            "or name its interpreter)"
        )


def _shebang(path: str, shown: str) -> tuple[str, str | None] | None:
    """(interpreter, optional argument) from a ``#!`` line, or None for a binary."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(MAX_SHEBANG + 1)
    except OSError as exc:
        raise CommandUnrunnable(f"{shown}: cannot be read: {exc.strerror}") from None
    if not head.startswith(b"#!"):
        return None
    line, newline, _ = head[2:].partition(b"\n")
    if not newline and len(head) > MAX_SHEBANG:
        raise CommandUnrunnable(f"{shown}: its #! line is longer than {MAX_SHEBANG} bytes")
    text = line.decode("utf-8", "surrogateescape").strip(" \t\r")
    if not text:
        raise CommandUnrunnable(f"{shown}: its #! line names no interpreter")
    if "\0" in text:
        raise CommandUnrunnable(f"{shown}: its #! line holds a NUL byte")
    # As the kernel: the interpreter ends at the first blank; the rest, blanks trimmed at
    # both ends, is one argument (tabs inside it kept).
    cut = next((i for i, char in enumerate(text) if char in " \t"), len(text))
    interpreter, argument = text[:cut], text[cut:].strip(" \t") or None
    return interpreter, argument


def resolve_command(command: Sequence[str], *, path: str, cwd: str) -> ResolvedCommand:
    """``command`` as the kernel would run it after a shell's PATH lookup."""
    if not command or not command[0]:
        raise CommandUnrunnable("empty command")
    typed = command[0]
    filename = _find(typed, path, cwd)
    # What the kernel calls the script's filename: the path execve was given (the typed
    # path, or PATH's directory joined with the name).
    exec_name = typed if "/" in typed else filename
    argv0, args = typed, tuple(command[1:])
    scripts: list[str] = []
    for _ in range(MAX_DEPTH + 1):
        shebang = _shebang(filename, exec_name)
        if shebang is None:
            return ResolvedCommand(os.path.abspath(filename), argv0, args, tuple(scripts))
        interpreter, argument = shebang
        scripts.append(filename)
        args = (*((argument,) if argument is not None else ()), exec_name, *args)
        argv0 = interpreter
        target = os.path.normpath(os.path.join(cwd, interpreter))
        try:
            _check_runnable(target, interpreter)
        except CommandUnrunnable as exc:
            # A script whose interpreter is missing was found: it cannot be invoked.
            raise CommandUnrunnable(f"{exec_name}: bad interpreter {exc}") from None
        filename, exec_name = target, interpreter
    raise CommandUnrunnable(f"{typed}: more than {MAX_DEPTH} levels of #! interpreters (a loop?)")
