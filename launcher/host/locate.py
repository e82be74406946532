"""Find the installed ``bvisor-linux-launcher`` executable.

The launcher is executed from a file the host opens and hashes, so it must be a real file:
the console script installed next to this interpreter, or the one on ``PATH``.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

__all__ = ["LauncherNotFound", "default_launcher_path"]

LAUNCHER_NAME = "bvisor-linux-launcher"


class LauncherNotFound(FileNotFoundError):
    """No launcher executable is installed; `pip install -e .` provides one."""


def default_launcher_path() -> str:
    beside = Path(sys.executable).parent / LAUNCHER_NAME
    if beside.is_file():
        return str(beside)
    found = shutil.which(LAUNCHER_NAME)
    if found:
        return found
    raise LauncherNotFound(
        f"{LAUNCHER_NAME} is not installed next to {sys.executable} nor on PATH "
        "(install bvisor with `pip install -e .` or `make demo`)"
    )
