"""Load the compiled child window (``bvisor.launcher._child_window``), building it if missing.

An installed bvisor (``pip install .`` or ``pip install -e .``) has the module compiled by
setuptools through ``setup.py``'s ``cffi_modules``. A plain source checkout does not, so
:func:`ensure_built` compiles it into the package directory once, under an exclusive file
lock so concurrent first uses do not race, writing to a temporary directory and renaming
the finished shared object into place. The host calls :func:`ensure_built` before it
spawns a launcher; the launcher itself only loads (:func:`load`) and never compiles —
a launcher that had to build its own C would be running code nobody hashed.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import io
import os
import shutil
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = ["ChildWindowUnavailable", "ensure_built", "load", "module_file"]

_PACKAGE_DIR = Path(__file__).resolve().parent.parent
_MODULE = "bvisor.launcher._child_window"


class ChildWindowUnavailable(RuntimeError):
    """The compiled child window is missing and could not be built."""


def _import() -> ModuleType | None:
    try:
        return importlib.import_module(_MODULE)
    except ImportError:
        return None


def load() -> Any:
    """The compiled module (``.ffi`` and ``.lib``); raises if it was never built."""
    module = _import()
    if module is None:
        raise ChildWindowUnavailable(
            f"{_MODULE} is not compiled; install bvisor (pip install -e .) or let the host "
            "build it (launcher.basement.window.ensure_built())"
        )
    return module


def module_file() -> str:
    """Path of the compiled shared object (hashed into the launcher's code identity)."""
    path = getattr(load(), "__file__", None)
    if not isinstance(path, str):
        raise ChildWindowUnavailable(f"{_MODULE} has no file")
    return path


def ensure_built() -> None:
    """Make sure the compiled module exists, building it in the package dir if needed."""
    if _import() is not None:
        return
    lock_path = _PACKAGE_DIR / ".child_window.build.lock"
    try:
        lock_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise ChildWindowUnavailable(f"cannot lock {lock_path} to build {_MODULE}: {exc}") from exc
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        importlib.invalidate_caches()
        if _import() is not None:
            return
        _build()
        importlib.invalidate_caches()
        if _import() is None:
            raise ChildWindowUnavailable(f"built {_MODULE} but it does not import")
    finally:
        os.close(lock_fd)


def _build() -> None:
    import tempfile  # only a checkout's first use builds: not imported by every process

    from bvisor.launcher.basement._build_child import ffibuilder

    with tempfile.TemporaryDirectory(prefix="bvisor-cw-") as tmp:
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                built = Path(ffibuilder.compile(tmpdir=tmp, verbose=False))
        except Exception as exc:  # cffi raises VerificationError / CompileError
            raise ChildWindowUnavailable(f"cannot compile {_MODULE}: {exc}") from exc
        staged = _PACKAGE_DIR / (built.name + ".tmp")
        shutil.copyfile(built, staged)
        os.chmod(staged, 0o755)
        os.replace(staged, _PACKAGE_DIR / built.name)
