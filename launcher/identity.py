"""What code is this launcher? Digests of the files that make up the running launcher.

The host hashes the launcher *entry* file it opened and then executes that same fd, so
``launcher_identity`` names exactly the file the kernel ran. That file is a small console
script, though; the code that confines lives in the ``launcher`` and ``bvisor`` packages
and the compiled child window. So the launcher also hashes, at start, every module file of
those two packages that it has loaded plus the compiled ``_child_window`` shared object,
and reports that *code* digest and the list of files next to the entry digest.

Both digests are plain BLAKE3 (hex). The code digest is BLAKE3 over the canonical CBOR
array ``[[relative_path, blake3_hex_of_file], ...]`` sorted by path. Python source files
are hashed (``__file__``); CPython only runs a cached ``.pyc`` whose recorded source size
and mtime match that source. The interpreter binary itself is not hashed.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import blake3

from bvisor import canonical

__all__ = ["CodeIdentity", "code_identity", "hash_fd", "hash_file"]

_PACKAGES = ("launcher", "bvisor")


@dataclass(frozen=True, slots=True)
class CodeIdentity:
    """The code digest and the (relative path, file digest) pairs it covers."""

    digest: str
    files: tuple[tuple[str, str], ...]


def hash_fd(fd: int) -> str:
    """BLAKE3 hex of every byte readable at ``fd`` from offset 0 (pread: offset untouched)."""
    hasher = blake3.blake3()
    offset = 0
    while True:
        chunk = os.pread(fd, 1 << 20, offset)
        if not chunk:
            break
        hasher.update(chunk)
        offset += len(chunk)
    return hasher.hexdigest()


def hash_file(path: str) -> str:
    """BLAKE3 hex of a file's bytes."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return hash_fd(fd)
    finally:
        os.close(fd)


def code_identity(extra_files: tuple[str, ...] = ()) -> CodeIdentity:
    """Digest the loaded module files of the launcher/bvisor packages plus ``extra_files``."""
    roots: dict[Path, Path] = {}
    for package in _PACKAGES:
        module = sys.modules.get(package)
        init = getattr(module, "__file__", None)
        if isinstance(init, str):
            pkg_dir = Path(init).resolve().parent
            roots[pkg_dir] = pkg_dir.parent
    paths: set[Path] = set()
    for module in list(sys.modules.values()):
        file = getattr(module, "__file__", None)
        if not isinstance(file, str):
            continue
        resolved = Path(file).resolve()
        if any(resolved.is_relative_to(pkg) for pkg in roots):
            paths.add(resolved)
    paths.update(Path(f).resolve() for f in extra_files)
    entries: list[tuple[str, str]] = []
    for path in sorted(paths):
        base = next((roots[p] for p in roots if path.is_relative_to(p)), path.parent)
        entries.append((str(path.relative_to(base)), hash_file(str(path))))
    entries.sort()
    manifest = canonical.encode([[name, digest] for name, digest in entries])
    return CodeIdentity(digest=blake3.blake3(manifest).hexdigest(), files=tuple(entries))
