"""What code is this launcher? Digests of the files that make up the running launcher.

The host hashes the launcher *entry* file it opened and then executes that same fd, so
``launcher_identity`` names exactly the file the kernel ran. That file is a small console
script, though; the code that confines lives in the ``bvisor`` package (the launcher, the
contract) and the compiled child window. So the launcher also hashes, at start, the file of
every ``bvisor`` module it has loaded (the compiled ``_child_window`` included) and reports
that *code* digest and the list of modules next to the entry digest.

Both digests are plain BLAKE3 (hex). The code digest is BLAKE3 over the canonical CBOR
array ``[[module_name, blake3_hex_of_file], ...]`` sorted by name. Python source files
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

_PACKAGE = "bvisor"


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
    """Digest the file of every loaded ``bvisor`` module, named by import name.

    Entries are keyed by the module's import name (``bvisor.launcher.process.main``), not by
    where the file sits, so a source checkout and an installed wheel of the same code name
    the same entries. ``extra_files`` (named by their base name) are hashed too.
    """
    files: dict[str, str] = {}
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if isinstance(file, str) and (name == _PACKAGE or name.startswith(_PACKAGE + ".")):
            files[name] = file
    for extra in extra_files:
        files.setdefault(Path(extra).name, extra)
    entries = sorted((name, hash_file(path)) for name, path in files.items())
    manifest = canonical.encode([[name, digest] for name, digest in entries])
    return CodeIdentity(digest=blake3.blake3(manifest).hexdigest(), files=tuple(entries))
