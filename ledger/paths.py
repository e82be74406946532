"""Where the ledger and its signing key live when nobody says: one rule for every command.

The data directory is ``$XDG_DATA_HOME/bvisor``, with the XDG Base Directory default
``~/.local/share`` when ``XDG_DATA_HOME`` is unset, empty or not an absolute path (the XDG
spec says relative values must be ignored). The ledger is ``$BVISOR_LEDGER`` if set and
non-empty, else ``<data>/ledger``; the checkpoint signing key is ``$BVISOR_KEY`` if set and
non-empty, else ``<data>/keys/checkpoint.key`` (its public half beside it as
``checkpoint.pub``). ``bvisor run``, ``bvisor-ledger`` and ``bvisor-replay`` all call these,
so a run and a later ``verify`` look in the same place.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

__all__ = [
    "default_data_dir",
    "default_key_path",
    "default_ledger_path",
    "explicit_key_path",
    "resolve_key_path",
]

KEY_FILE = "checkpoint.key"


def default_data_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$XDG_DATA_HOME/bvisor`` (or ``~/.local/share/bvisor``)."""
    env = os.environ if environ is None else environ
    xdg = env.get("XDG_DATA_HOME", "")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else _home(env) / ".local" / "share"
    return base / "bvisor"


def default_ledger_path(environ: Mapping[str, str] | None = None) -> Path:
    """The default ledger directory for ``environ`` (default: this process's environment)."""
    env = os.environ if environ is None else environ
    explicit = env.get("BVISOR_LEDGER", "")
    if explicit:
        return Path(explicit)
    return default_data_dir(env) / "ledger"


def explicit_key_path(environ: Mapping[str, str] | None = None) -> Path | None:
    """``$BVISOR_KEY`` when set and non-empty."""
    env = os.environ if environ is None else environ
    value = env.get("BVISOR_KEY", "")
    return Path(value) if value else None


def default_key_path(environ: Mapping[str, str] | None = None) -> Path:
    """``$BVISOR_KEY``, else the default private key file under the data directory."""
    env = os.environ if environ is None else environ
    return explicit_key_path(env) or default_data_dir(env) / "keys" / KEY_FILE


def resolve_key_path(
    explicit: str | os.PathLike[str] | None,
    environ: Mapping[str, str] | None = None,
    *,
    must_exist: bool = True,
) -> Path | None:
    """The key to sign with: ``explicit``, else ``$BVISOR_KEY``, else the default key.

    None when nothing is configured and the default key does not exist (with
    ``must_exist``); a configured key that does not exist is an error there, not None.
    (Here, not in ``keys``: every ``bvisor run`` asks, and most find no key, so the key
    file's reader and its signature code are loaded only when there is one.)
    """
    if explicit is not None:
        return Path(explicit)
    configured = explicit_key_path(environ)
    if configured is not None:
        return configured
    default = default_key_path(environ)
    if must_exist and not default.exists():
        return None
    return default


def _home(env: Mapping[str, str]) -> Path:
    home = env.get("HOME", "")
    return Path(home) if home else Path.home()
