"""The checkpoint signing key on disk: making it, finding it, and refusing unsafe files.

The private key file holds one line, the signer key text (``PRIVATE+KEY+NAME+ID+DATA``,
``bvisor.ledger.note``), and is created 0600 with ``O_EXCL`` in a 0700 directory, never
overwriting a key. Its public half, the verifier key text, is written beside it with the
suffix ``.pub`` — that is the file to hand to auditors, witnesses and ``--pub``.

A private key file readable or writable by group or others is refused (fail closed: a key
anyone else could read proves nothing), as is anything that is not a regular file.

Which key signs (``resolve_key_path``, defined in ``bvisor.ledger.paths``): ``--key FILE``
if given, else ``$BVISOR_KEY``, else the default key under the data directory when it
exists. ``bvisor-ledger checkpoint`` creates the default key on first use; ``bvisor run``
never creates one.

The signer's memory: beside ``NAME.key``, the directory ``NAME.signed/`` (0700) holds, per
ledger, the last checkpoint this key signed for it (``<ledger_id hex>.checkpoint``). The
notary refuses to sign for a ledger that no longer extends it, so deleting the checkpoints
stored in a ledger does not make its key sign a rewritten history (the key's directory is
out of every run's reach, and out of the ledger writer's, by the same rule as the key).
It also holds, per place a ledger was signed at (``places/<digest of the place>.log``:
the ledger id, then the place: the path as given, the path with links resolved, and the
directory by device and inode), the log this key signs for there. A ledger at one of
those places with another id is refused until the caller says ``--new-log``: without
it, a history rewritten under a fresh random ``ledger_id`` makes the memory look empty,
and the key would sign the forgery as a new log on first use. A memory kept by a bvisor
before places existed holds checkpoints with no place: while one of those logs has none,
a log the key never signed at a place it does not know is refused the same way (it may
be one of them rewritten); signing such a log again at its place gives it one.
"""

from __future__ import annotations

import fcntl
import os
import socket
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Final

from bvisor.ledger.errors import LedgerError
from bvisor.ledger.note import (
    ALG_ED25519,
    NoteError,
    Signer,
    Verifier,
    check_key_name,
    generate_signer,
    parse_signer,
    parse_verifier,
)
from bvisor.ledger.paths import resolve_key_path
from bvisor.ownership import others_may_change, others_may_change_below

if TYPE_CHECKING:
    from bvisor.ledger.checkpoint import SignedCheckpoint

__all__ = [
    "KeyFileError",
    "LogReplacedError",
    "default_key_name",
    "load_signer",
    "load_verifier",
    "public_path",
    "remember",
    "remembered",
    "resolve_key_path",
    "write_keypair",
]

_MAX_KEY_FILE: Final = 4096


class KeyFileError(LedgerError):
    """A key file that is missing, unsafe or malformed; the message names the file."""


def default_key_name() -> str:
    """``HOSTNAME/bvisor-ledger`` with anything a key name may not hold replaced by '-'."""
    host = socket.gethostname() or "localhost"
    cleaned = "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "-" for c in host)
    return f"{cleaned or 'localhost'}/bvisor-ledger"


def public_path(key_path: Path) -> Path:
    """The verifier key file beside a private key file: ``NAME.key`` -> ``NAME.pub``, any
    other name gets ``.pub`` appended."""
    if key_path.suffix == ".key":
        return key_path.with_suffix(".pub")
    return key_path.with_name(key_path.name + ".pub")


def _read_small(path: Path, what: str, *, private: bool) -> str:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise KeyFileError(f"{what} {path}: cannot open ({exc.strerror or exc})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise KeyFileError(f"{what} {path}: not a regular file")
        if private and info.st_mode & 0o077:
            raise KeyFileError(
                f"{what} {path}: readable or writable by others (mode "
                f"{stat.S_IMODE(info.st_mode):04o}); make it private with chmod 600"
            )
        data = os.read(fd, _MAX_KEY_FILE + 1)
    finally:
        os.close(fd)
    if len(data) > _MAX_KEY_FILE:
        raise KeyFileError(f"{what} {path}: too large to be a key file")
    try:
        return data.decode("ascii")
    except UnicodeDecodeError:
        raise KeyFileError(f"{what} {path}: not a key file (not ASCII text)") from None


def _only_ours(path: Path, what: str) -> None:
    """Refuse ``path`` (and, so, what lies in it) when a user other than this one or root
    could replace it or a directory above it: the key, or the memory that keeps a signer
    from signing a rolled-back or replaced ledger, swapped by someone else is a signature
    they chose (found by attack: a key directory of mode 0777, and a memory directory
    another user owned, were used as they were)."""
    _refuse_foreign(path, what, others_may_change(os.path.abspath(path)))


def _refuse_foreign(path: Path, what: str, foreign: str | None) -> None:
    """Raise for ``foreign`` (why another user could change ``path``), if any."""
    if foreign is not None:
        raise KeyFileError(
            f"{what} {path}: {foreign}, so another user could replace it; keep the key "
            "and its memory in a directory only you (or root) can change"
        )


def _memory_ours(key_path: Path) -> None:
    """The key's memory directories, where they exist, are this user's alone."""
    for directory in (_memory_dir(key_path), _memory_dir(key_path) / "places"):
        if os.path.lexists(directory):
            _only_ours(directory, "signer memory")


def load_signer(path: Path, algs: tuple[int, ...] = (ALG_ED25519,)) -> Signer:
    """The private key in ``path`` (refused when others may read it, or may replace it
    or a directory above it)."""
    _only_ours(path, "private key")
    text = _read_small(path, "private key", private=True)
    try:
        return parse_signer(text, algs, what=f"private key {path}")
    except NoteError as exc:
        raise KeyFileError(str(exc)) from None


def load_verifier(path: str | os.PathLike[str], algs: tuple[int, ...] = (ALG_ED25519,)) -> Verifier:
    """The public (verifier) key in ``path``."""
    text = _read_small(Path(path), "public key", private=False)
    try:
        return parse_verifier(text, algs, what=f"public key {path}")
    except NoteError as exc:
        raise KeyFileError(str(exc)) from None


def write_keypair(key_path: Path, name: str, alg: int = ALG_ED25519) -> tuple[Signer, Path]:
    """Make a new key at ``key_path`` (0600, never overwriting) and its ``.pub`` (0644)."""
    try:
        check_key_name(name)
    except NoteError as exc:
        raise KeyFileError(str(exc)) from None
    signer = generate_signer(name, alg)
    directory = key_path.parent
    pub = public_path(key_path)
    # Judged before anything is made there.
    _refuse_foreign(directory, "key directory", others_may_change_below(str(directory)))
    try:
        if not directory.exists():
            directory.mkdir(mode=0o700, parents=True)
        for target in (key_path, pub):
            if os.path.lexists(target):
                raise KeyFileError(f"{target} already exists; refusing to overwrite a key")
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, (signer.text() + "\n").encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        fd = os.open(pub, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, (signer.verifier.text() + "\n").encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        raise KeyFileError(f"cannot write the key in {directory}: {exc.strerror or exc}") from None
    return signer, pub


def _memory_dir(key_path: Path) -> Path:
    return key_path.parent / f"{key_path.stem}.signed"


def _memory(key_path: Path, ledger_id: bytes) -> Path:
    return _memory_dir(key_path) / f"{ledger_id.hex()}.checkpoint"


def _places(ledger_path: str | os.PathLike[str]) -> list[str]:
    """The names a ledger's place goes by: its absolute path as the caller gave it, the
    path with every link resolved (a link swapped in later is a new real path, but the
    name the caller uses is still bound), and the directory itself by device and inode
    (a bind mount of it elsewhere is another path to the same place)."""
    given = os.path.abspath(os.fspath(ledger_path))
    real = os.path.realpath(given)
    places = [given] if real == given else [given, real]
    try:
        found = os.stat(real)
    except OSError:
        return places  # not made yet: it has no inode to bind
    return [*places, f"inode {found.st_dev}:{found.st_ino}"]


def _place_file(key_path: Path, place: str) -> Path:
    from blake3 import blake3

    name = blake3(place.encode("utf-8", "surrogateescape")).hexdigest()[:32]
    return _memory_dir(key_path) / "places" / f"{name}.log"


def _bound_log(key_path: Path, place: str) -> bytes | None:
    """The ledger id this key signs for at ``place`` (None: it never signed there)."""
    path = _place_file(key_path, place)
    if not path.exists():
        return None
    return _bound_log_file(path)


def _bound_log_file(path: Path) -> bytes:
    """The ledger id a place file names (refusing a file that names none)."""
    try:
        first = _read_small_any(path).split(b"\n", 1)[0].decode("ascii")
        bound = bytes.fromhex(first)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise _unreadable(path, exc) from None
    if len(bound) != 16:
        raise KeyFileError(f"signer memory {path}: not a ledger id; refusing to sign")
    return bound


class LogReplacedError(KeyFileError):
    """The key signs another log at this ledger's place: the ledger was replaced, or its
    history rewritten under a fresh id. Signing needs ``new_log`` (``--new-log``)."""


def remembered(
    key_path: Path, ledger_id: bytes, ledger_path: str | os.PathLike[str], *, new_log: bool
) -> SignedCheckpoint | None:
    """What this key's memory says about signing ledger ``ledger_id`` at ``ledger_path``:
    the last checkpoint it signed for that ledger (None: none yet).

    Refused (fail closed) when the memory cannot be read, and when the key signs another
    log at that place: a writer of the ledger file who rewrites its history under a
    fresh ``ledger_id`` (and drops its stored checkpoints) would otherwise be trusted on
    first use. ``new_log``: the caller started a new ledger there on purpose.
    """
    _memory_ours(key_path)
    places = _places(ledger_path)
    bound_here = False
    for place in places:
        bound = _bound_log(key_path, place)
        bound_here = bound_here or bound is not None
        if bound is not None and bound != ledger_id and not new_log:
            raise LogReplacedError(
                f"this key signs log {bound.hex()} at {place}, and the ledger there is now "
                f"log {ledger_id.hex()}: the ledger was replaced, or its history rewritten "
                "under a fresh id; refusing to sign — if you started a new ledger there on "
                f"purpose, give {_NEW_LOG_HINT} once"
            )
    kept = remembered_checkpoint(key_path, ledger_id)
    if kept is None and not bound_here and not new_log:
        unplaced = _unplaced_logs(key_path)
        if unplaced:
            shown = ", ".join(sorted(log.hex() for log in unplaced)[:3])
            more = f" and {len(unplaced) - 3} more" if len(unplaced) > 3 else ""
            raise LogReplacedError(
                f"this key signed log(s) {shown}{more} before it kept where each is (an "
                f"earlier bvisor), and the ledger at {places[0]} is log {ledger_id.hex()}, "
                "which it never signed: if that ledger is one of those, its history was "
                "rewritten under a fresh id; refusing to sign — if it is a new ledger, give "
                f"{_NEW_LOG_HINT} once"
            )
    return kept


_NEW_LOG_HINT: Final = "--new-log (new_log=True in the API)"


def _unplaced_logs(key_path: Path) -> set[bytes]:
    """The logs this key's memory holds a checkpoint for but no place: signed by a bvisor
    that did not yet keep places (a memory of before places existed). A fresh id at a
    place the memory does not know may be one of them rewritten, so it is not trusted on
    first use while any is left; signing one of them again at its place binds it."""
    directory = _memory_dir(key_path)
    try:
        signed = {
            bytes.fromhex(entry.name.removesuffix(".checkpoint"))
            for entry in os.scandir(directory)
            if entry.name.endswith(".checkpoint") and len(entry.name) == 32 + len(".checkpoint")
        }
    except FileNotFoundError:
        return set()
    except (OSError, ValueError) as exc:
        raise _unreadable(directory, exc) from None
    if not signed:
        return signed
    try:
        entries = list(os.scandir(directory / "places"))
    except FileNotFoundError:
        return signed
    except OSError as exc:
        raise _unreadable(directory, exc) from None
    for entry in entries:
        if entry.name.endswith(".log"):
            bound = _bound_log_file(Path(entry.path))
            signed.discard(bound)
    return signed


def remembered_checkpoint(key_path: Path, ledger_id: bytes) -> SignedCheckpoint | None:
    """The last checkpoint this key signed for ledger ``ledger_id`` (None: none yet)."""
    from bvisor.ledger.checkpoint import parse_checkpoint

    path = _memory(key_path, ledger_id)
    if not path.exists():
        return None
    try:
        return parse_checkpoint(_read_small_any(path))
    except (NoteError, OSError) as exc:
        raise _unreadable(path, exc) from None


def remember(key_path: Path, signed: SignedCheckpoint, ledger_path: str | os.PathLike[str]) -> None:
    """Keep ``signed`` as the last checkpoint this key signed for its ledger, and that
    ledger as the log this key signs for at ``ledger_path``."""
    ledger_id = signed.checkpoint.ledger_id()
    if ledger_id is None:
        return
    _memory_ours(key_path)
    with _memory_locked(key_path):  # two signers at once: neither undoes the other
        kept = remembered_checkpoint(key_path, ledger_id)
        if kept is None or kept.checkpoint.size <= signed.checkpoint.size:
            _replace(_memory(key_path, ledger_id), signed.text.encode("utf-8"))
        for place in _places(ledger_path):
            line = f"{ledger_id.hex()}\n{place}\n".encode("utf-8", "surrogateescape")
            _replace(_place_file(key_path, place), line)


@contextmanager
def _memory_locked(key_path: Path) -> Iterator[None]:
    """The signer's memory, locked against other writers of it (``flock``): a signer that
    signed an older checkpoint and remembers it last would otherwise roll the memory back,
    and the key would then sign a history rewritten after it."""
    directory = _memory_dir(key_path)
    try:
        directory.mkdir(mode=0o700, exist_ok=True)
        fd = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise KeyFileError(
            f"signer memory {directory}: cannot lock ({exc.strerror or exc})"
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _own_dirs(path: Path) -> list[Path]:
    """The memory's directories on the way to ``path``, outermost first (each made 0700)."""
    memory = next(p for p in path.parents if p.name.endswith(".signed"))
    return [memory, *[p for p in reversed(path.parents) if memory in p.parents]]


def _replace(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` durably and at once (a temporary file, then rename)."""
    temporary = path.with_name(f"{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    try:
        for directory in _own_dirs(path):
            directory.mkdir(mode=0o700, exist_ok=True)
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
    except OSError as exc:
        raise KeyFileError(f"signer memory {path}: cannot write ({exc.strerror or exc})") from None


def _unreadable(path: Path, exc: Exception) -> KeyFileError:
    """The signer's memory cannot be read: nothing is signed (fail closed)."""
    return KeyFileError(f"signer memory {path}: unreadable ({exc}); refusing to sign")


def _read_small_any(path: Path) -> bytes:
    with open(path, "rb") as stream:
        return stream.read(1 << 20)
