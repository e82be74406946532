"""What the run path loads, checked from ``sys.modules`` of a fresh interpreter.

Not timings (those are in benchmarks/targets.py, rows b and g): the structure that keeps
them. The service's client is what a served ``bvisor run`` runs, so it loads only the C
halves of the standard library it needs; ``bvisor run`` never loads OpenSSL (3.7 MiB of
its memory target) unless it signs; a command parses with only its own subcommand's
module loaded.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# What a normal start-up (site, no -S) has imported before any bvisor code runs.
_STARTUP = {"os", "os.path", "posixpath", "genericpath", "stat", "_stat", "_collections_abc"}
# What the client may add: C modules, the ``__future__`` import, ``struct``'s one line.
_CLIENT = {"__future__", "_json", "_socket", "_struct", "struct"}


def _new_modules(code: str, *flags: str) -> list[str]:
    """The modules ``code`` imports in a fresh interpreter (with ``flags``), as a list."""
    script = (
        f"import sys; sys.path.insert(0, {str(REPO)!r}); before = set(sys.modules)\n"
        f"{code}\n"
        "print(sorted(set(sys.modules) - before))"
    )
    done = subprocess.run(
        [sys.executable, *flags, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return list(ast.literal_eval(done.stdout.splitlines()[-1]))


def test_the_served_path_imports_only_the_standard_librarys_c_halves() -> None:
    loaded = _new_modules("import bvisor.front.cli.main, bvisor.front.service.client", "-S", "-I")
    foreign = [m for m in loaded if not m.startswith("bvisor") and m not in _STARTUP | _CLIENT]
    assert foreign == [], f"the thin client imports {foreign}"


def test_a_command_line_builds_only_its_own_subcommand() -> None:
    loaded = _new_modules("from bvisor.front.cli.main import build_parser; build_parser('serve')")
    assert "bvisor.front.cli.serve_cmd" in loaded
    assert not {"bvisor.front.cli.run_cmd", "bvisor.front.cli.plan_cmd"} & set(loaded)


def test_a_recorded_run_never_loads_openssl(tmp_path: Path) -> None:
    """hashlib (and hmac) load libcrypto; a run hashes its few Merkle leaves with the
    interpreter's own SHA-256 (bvisor.sha256). Verifying a ledger may use OpenSSL."""
    work = tmp_path / "work"
    work.mkdir()
    loaded = _new_modules(
        "from bvisor.front.api import run_confined\n"
        "from bvisor.front.defaults import default_spec\n"
        f"report = run_confined(default_spec(['/bin/true'], cwd={str(work)!r}), "
        f"ledger={str(tmp_path / 'ledger')!r}, key=False)\n"
        "assert report.body.outcome.value == 'completed', report.body.observed"
    )
    assert "bvisor.ledger.store" in loaded  # it recorded
    assert not {"_hashlib", "hashlib", "hmac"} & set(loaded)
