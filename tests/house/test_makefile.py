"""The Makefile's recipes see no variable the caller gave make on its command line.

make exports a command-line variable to every recipe: with ``make demo
PYTHON=/usr/bin/python3`` (as a normal user without a venv-capable default python does),
the run inside ``make demo`` started the per-user service with ``PYTHON`` in its
environment. Its install identity counts every ``PYTHON*`` variable, so it refused each of
the user's later commands as another install's, and they ran unserved until it idled out.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_a_command_line_python_does_not_reach_the_recipes(tmp_path: Path) -> None:
    probe = tmp_path / "probe.mk"
    probe.write_text(
        f"include {ROOT / 'Makefile'}\n.PHONY: env-of-recipes\nenv-of-recipes:\n\t@env\n",
        encoding="utf-8",
    )
    shown = subprocess.run(
        [
            "make",
            "-s",
            "-C",
            str(ROOT),
            "-f",
            str(probe),
            "env-of-recipes",
            "PYTHON=/usr/bin/python3",
            "VENV=.venv",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.splitlines()
    assert [line for line in shown if line.startswith(("PYTHON=", "VENV="))] == []
