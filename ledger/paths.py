"""Where the ledger lives when nobody says: one rule shared by every command.

``$BVISOR_LEDGER`` if set and non-empty, else ``$XDG_DATA_HOME/bvisor/ledger``, with the XDG
Base Directory default ``~/.local/share`` when ``XDG_DATA_HOME`` is unset, empty or not an
absolute path (the XDG spec says relative values must be ignored). ``bvisor run`` and
``bvisor-ledger`` both call :func:`default_ledger_path`, so a run and a later ``verify``
look in the same place.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

__all__ = ["default_ledger_path"]


def default_ledger_path(environ: Mapping[str, str] | None = None) -> Path:
    """The default ledger directory for ``environ`` (default: this process's environment)."""
    env = os.environ if environ is None else environ
    explicit = env.get("BVISOR_LEDGER", "")
    if explicit:
        return Path(explicit)
    xdg = env.get("XDG_DATA_HOME", "")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else _home(env) / ".local" / "share"
    return base / "bvisor" / "ledger"


def _home(env: Mapping[str, str]) -> Path:
    home = env.get("HOME", "")
    return Path(home) if home else Path.home()
