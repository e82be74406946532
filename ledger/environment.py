"""One LMDB environment per ledger directory per process: opening, growing, fork safety.

LMDB forbids opening one environment twice in a process (its POSIX locks belong to the
process, so a second handle's close would drop the first one's locks), and an environment
must never be used by a process forked after it was opened (the child would share the
parent's reader slots and mutex state). So every :class:`ledger.Ledger` handle borrows a
reference-counted :class:`Environment` from a module-level cache keyed by the directory's
real path, and every use checks the process id recorded when it was opened.

The map grows by itself. A write that fails with ``MDB_MAP_FULL`` is retried after
``mdb_env_set_mapsize`` to a larger size, and a transaction refused with
``MDB_MAP_RESIZED`` (another process grew the map beyond ours) is retried after adopting
the size on disk. LMDB allows ``set_mapsize`` only while this process has no transaction
open, so every transaction runs under the shared side of a per-environment gate and a
resize takes the exclusive side; iterators therefore never hold a transaction across a
``yield``.

Layout (docs/FORMATS.md, "Storage"): named databases ``events`` (8-byte big-endian seq ->
record), ``runs`` (run_id + 4-byte big-endian index -> 8-byte seq) and ``meta`` with keys
``format_version`` (4-byte big-endian, currently 1), ``ledger_id`` (16 random bytes),
``head_seq`` (8-byte big-endian) and ``head_hash`` (32 bytes); an empty ledger has no head
keys. Ledgers written since the transparency tree also hold ``tree`` (the Merkle tree's
perfect subtrees), ``runids``/``runstart`` (run lookup), ``checkpoints`` (signed notes) and
the meta key ``tree_size``; a ledger written before has none of them and reads the same
(readers compute what they need, never writing). The directory is created 0700 and the
LMDB files 0600. When a ledger is created the directory (and its parent, when the
directory was made too) is fsynced once the files and the initial meta are written, so a
crash cannot lose the files' directory entries.

What is never written to: a ledger is created only in a missing or empty directory, and
only into LMDB files this process just made. An existing ``data.mdb`` that is empty, one
shorter than the pages its own meta page names (cut short: LMDB would die of SIGBUS
reading past its end), an LMDB store without the ledger's databases, or one holding
anything else is reported and left alone, by readers and writers alike.

Another user's reach: LMDB opens its files by name and follows symlinks, and a locked open
writes the lock file. So a directory that a user other than this one (or root) could change
— its own owner or mode, or a parent's (a sticky parent excepted) — is never opened for
writing, and read only without the lock: otherwise that user's ``lock.mdb -> victim``
would have this process (root, say) overwrite the victim. Nor is a ledger directory made
(with its missing parents) below a directory such a user could change: the deepest one
that exists is checked before anything is made.

Read-only access: a reader opens the store read-only, and when LMDB's lock file cannot be
used (another user's ledger, a read-only copy or mount, or no lock file at all) without the
lock (``Environment.unlocked``): nothing is created or changed, but a writer appending at
the same moment is then not kept from reusing pages being read, which callers say.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final, TypeVar

import lmdb

from bvisor.ledger.errors import (
    LedgerCorruptError,
    LedgerDiskFullError,
    LedgerError,
    LedgerForkError,
    LedgerFormatError,
    LedgerNotFoundError,
    LedgerUsageError,
)
from bvisor.ledger.record import LEDGER_ID_BYTES, genesis_hash
from bvisor.ownership import others_may_change, others_may_change_below

__all__ = [
    "FORMAT_VERSION",
    "META_FORMAT_VERSION",
    "META_HEAD_HASH",
    "META_HEAD_SEQ",
    "META_LEDGER_ID",
    "META_TREE_SIZE",
    "OPTIONAL_DBS",
    "Environment",
    "acquire",
    "seq_key",
    "stray_records",
]

FORMAT_VERSION: Final = 1
META_FORMAT_VERSION: Final = b"format_version"
META_LEDGER_ID: Final = b"ledger_id"
META_HEAD_SEQ: Final = b"head_seq"
META_HEAD_HASH: Final = b"head_hash"
META_TREE_SIZE: Final = b"tree_size"
# Databases a ledger written before the transparency tree lacks (docs/FORMATS.md).
OPTIONAL_DBS: Final = (b"tree", b"runids", b"runstart", b"checkpoints")

INITIAL_MAP_SIZE: Final = 64 * 1024 * 1024
_MAP_ALIGN: Final = 1024 * 1024
_MAX_MAP_SIZE: Final = 1 << 44  # 16 TiB: past this, growth is a bug, not a need
_MAX_DBS: Final = 8
# Free space below this (plus twice the write) after a failed commit means the disk is full.
_DISK_MARGIN: Final = 4 * 1024 * 1024
_LMDB_FILES: Final = frozenset({"data.mdb", "lock.mdb"})

T = TypeVar("T")


def stray_records(txn: Any, environment: Environment, events: int) -> str | None:
    """Why the events database does not hold exactly events ``0..events-1`` (a record
    under a key that is no event's, which sorts anywhere, or a gap), or None. One count,
    so a writer or signer pays O(1) for it; verify names each such record."""
    entries = int(txn.stat(environment.events)["entries"])
    if entries == events:
        return None
    return (
        f"its events database holds {entries} records but its events are 0..{events - 1} "
        "(run bvisor-ledger verify: it names each record under a key that is no event's)"
    )


def seq_key(seq: int) -> bytes:
    """The ``events`` key of ``seq``: 8 bytes big-endian, so keys sort in seq order."""
    return seq.to_bytes(8, "big")


class _Gate:
    """A readers-writer gate: many transactions at once, or one map resize alone."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._shared = 0
        self._exclusive = False

    @contextmanager
    def shared(self) -> Iterator[None]:
        with self._cond:
            while self._exclusive:
                self._cond.wait()
            self._shared += 1
        try:
            yield
        finally:
            with self._cond:
                self._shared -= 1
                self._cond.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            while self._exclusive or self._shared:
                self._cond.wait()
            self._exclusive = True
        try:
            yield
        finally:
            with self._cond:
                self._exclusive = False
                self._cond.notify_all()


class Environment:
    """An open LMDB environment of one ledger, shared by every handle in this process."""

    def __init__(self, path: str, env: Any, readonly: bool, unlocked: str | None = None) -> None:
        self.path = path
        self.env = env
        self.readonly = readonly
        self.unlocked = unlocked  # why LMDB's lock is not used (None: it is)
        self.pid = os.getpid()
        self.refs = 0
        self.gate = _Gate()
        self.events: Any = None
        self.runs: Any = None
        self.meta: Any = None
        # None in a ledger written before the transparency tree (until a writer adds them).
        self.tree: Any = None
        self.runids: Any = None
        self.runstart: Any = None
        self.checkpoints: Any = None
        self.ledger_id = b""
        self.genesis = b""
        self._optional_pending = False
        self.identity: tuple[int, int] | None = None  # data.mdb's (st_dev, st_ino) at open

    def still_at(self, directory: str) -> bool:
        """Is ``directory``'s data.mdb still the file this environment has open? A ledger
        moved away or replaced at its path since (``mv ledger old``, a new ledger made
        there) is not: a cached environment would go on writing the moved file."""
        try:
            found = os.stat(os.path.join(directory, "data.mdb"))
        except OSError:
            return False
        return (found.st_dev, found.st_ino) == self.identity

    def open_optional(self, txn: Any) -> None:
        """Create the databases an older ledger lacks, inside the writer's transaction.

        Called only by a writer that has just verified the ledger (the store adds the tree
        to a valid old ledger, never to a damaged one). The handles are usable once ``txn``
        commits; :meth:`forget_optional` drops them again if it does not.
        """
        self._optional_pending = True
        self.tree = self.env.open_db(b"tree", txn=txn, create=True)
        self.runids = self.env.open_db(b"runids", txn=txn, create=True)
        self.runstart = self.env.open_db(b"runstart", txn=txn, create=True)
        self.checkpoints = self.env.open_db(b"checkpoints", txn=txn, create=True)

    def forget_optional(self) -> None:
        self.tree = self.runids = self.runstart = self.checkpoints = None

    def check_process(self) -> None:
        """Refuse use from a process forked after the environment was opened."""
        if os.getpid() != self.pid:
            raise LedgerForkError(
                f"ledger {self.path} was opened in process {self.pid} and cannot be used "
                f"after fork (in process {os.getpid()}); open it in a fresh process"
            )

    @contextmanager
    def read(self) -> Iterator[Any]:
        """A read transaction, retried once the map is adopted if another process grew it."""
        self.check_process()
        while True:
            with self.gate.shared():
                try:
                    txn = self.env.begin(write=False)
                except lmdb.MapResizedError:
                    txn = None
                if txn is not None:
                    try:
                        yield txn
                    except lmdb.Error as exc:
                        raise _store_error(self.path, exc) from None
                    finally:
                        txn.abort()
                    return
            self._resize(0)

    def write(self, action: Callable[[Any], T], size_hint: int) -> T:
        """Run ``action(txn)`` in one durable write transaction, growing the map as needed.

        ``action`` must be safe to run again: a full map aborts the transaction, the map is
        grown, and the whole transaction (head read included) is redone.
        """
        if self.readonly:
            raise LedgerUsageError(f"ledger {self.path} is open read-only")
        while True:
            self.check_process()
            with self.gate.shared():
                try:
                    try:
                        with self.env.begin(write=True) as txn:
                            result = action(txn)
                    except BaseException:
                        if self._optional_pending:  # created in a transaction now gone
                            self.forget_optional()
                        raise
                    finally:
                        self._optional_pending = False
                    return result
                except lmdb.MapFullError:
                    grow_to = self._grown_size(size_hint)
                except lmdb.MapResizedError:
                    grow_to = 0
                except lmdb.Error as exc:
                    raise _write_error(self.path, exc, size_hint) from None
            self._resize(grow_to)

    def _grown_size(self, size_hint: int) -> int:
        current = int(self.env.info()["map_size"])
        wanted = max(current * 2, current + 2 * size_hint)
        wanted = -(-wanted // _MAP_ALIGN) * _MAP_ALIGN
        if wanted > _MAX_MAP_SIZE:
            raise LedgerError(f"ledger {self.path}: map would exceed {_MAX_MAP_SIZE} bytes")
        return wanted

    def _resize(self, size: int) -> None:
        """Grow the map to ``size`` (0: adopt the size another process set)."""
        with self.gate.exclusive():
            self.check_process()
            self.env.set_mapsize(size)


# LMDB's own words for "the bytes on disk are not a valid B-tree".
_DAMAGE_ERRORS: Final = (
    lmdb.CorruptedError,
    lmdb.PageNotFoundError,
    lmdb.InvalidError,
    lmdb.BadValsizeError,
    lmdb.PageFullError,
    lmdb.IncompatibleError,
    lmdb.PanicError,
)


def _store_error(path: str, exc: lmdb.Error) -> LedgerError:
    """An LMDB failure inside a transaction as a ledger error, so every command reports a
    damaged ``data.mdb`` with a message (exit 1) instead of a traceback."""
    if isinstance(exc, _DAMAGE_ERRORS):
        return LedgerCorruptError(
            f"ledger {path}: the LMDB store is damaged and cannot be read ({exc}); "
            "restore it from a copy"
        )
    return LedgerError(f"ledger {path}: {exc}")


def _write_error(path: str, exc: lmdb.Error, size_hint: int) -> LedgerError:
    """A failed write as a ledger error; a full disk said as such.

    LMDB reports a write that ran out of space as ``Input/output error`` (its page flush
    folds the errno away), so the free space is looked at: when the filesystem has less
    left than the write needed, that is the reason.
    """
    text = str(exc)
    try:
        info = os.statvfs(path)
        free = info.f_bavail * info.f_frsize
    except OSError:
        free = None
    full = "No space left" in text or "quota" in text.lower()
    if full or (free is not None and free < 2 * size_hint + _DISK_MARGIN):
        shown = "" if free is None else f" ({free} bytes free)"
        return LedgerDiskFullError(
            f"ledger {path}: the disk is full{shown}; nothing of this write was recorded "
            f"(LMDB said: {text})"
        )
    return _store_error(path, exc)


def _check_text_path(path: str | os.PathLike[str]) -> None:
    """A ledger path must be text: names that are not valid UTF-8 cannot be reported or
    recorded faithfully, so they are refused up front instead of failing half-way."""
    text = os.fspath(path)
    if not isinstance(text, str):
        raise LedgerUsageError("ledger path: expected a text path")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        shown = text.encode("utf-8", "backslashreplace").decode("ascii", "replace")
        raise LedgerUsageError(
            f"ledger path {shown!r} is not valid text (UTF-8); rename the directory"
        ) from None
    if "\x00" in text:
        raise LedgerUsageError("ledger path: contains a NUL byte")


_CACHE: dict[str, Environment] = {}
_CACHE_LOCK = threading.Lock()


def acquire(
    path: str | os.PathLike[str],
    *,
    create: bool,
    readonly: bool,
    ledger_id: bytes | None,
    map_size: int | None,
) -> Environment:
    """Borrow the process's environment for ``path``, opening (and creating) it if needed."""
    if create and readonly:
        raise LedgerUsageError("a ledger cannot be created read-only")
    _check_text_path(path)
    with _CACHE_LOCK:  # also around the directory check: two threads may create one ledger
        made_directory = create and not Path(path).exists()
        directory = _prepare_directory(Path(path), create)
        cached = _CACHE.get(directory)
        if cached is not None and not cached.still_at(directory):
            # Its holders keep the file they have open (the last release closes it); who
            # opens the path now gets the ledger that is there now.
            del _CACHE[directory]
            cached = None
        if cached is not None:
            cached.check_process()
            if cached.readonly and not readonly:
                raise LedgerUsageError(
                    f"ledger {directory} is already open read-only in this process; "
                    "close those handles before opening it for writing"
                )
            if ledger_id is not None and ledger_id != cached.ledger_id:
                raise LedgerUsageError(f"ledger {directory} has a different ledger_id")
            cached.refs += 1
            return cached
        environment = _open(directory, create, readonly, ledger_id, map_size, made_directory)
        environment.refs = 1
        _CACHE[directory] = environment
        return environment


def release(environment: Environment) -> None:
    """Return a borrowed environment; the last release closes it (never after fork)."""
    with _CACHE_LOCK:
        environment.refs -= 1
        if environment.refs > 0:
            return
        if _CACHE.get(environment.path) is environment:
            del _CACHE[environment.path]
        if os.getpid() == environment.pid:
            environment.env.close()


def _prepare_directory(path: Path, create: bool) -> str:
    """Check (or create, 0700) the ledger directory; return its real path."""
    try:
        if not path.exists():
            if path.is_symlink():
                raise LedgerNotFoundError(
                    f"no ledger at {path}: it is a link to {os.readlink(path)}, which does not "
                    "exist (make that directory, or name the ledger by its real path)"
                )
            if not create:
                raise LedgerNotFoundError(f"no ledger at {path} (the directory does not exist)")
            _refuse_foreign_place(path)
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(path, 0o700)
        if not path.is_dir():
            raise LedgerNotFoundError(f"{path} is not a ledger (not a directory)")
        if not (path / "data.mdb").exists():
            if not create:
                raise LedgerNotFoundError(f"no ledger at {path} (no data.mdb in the directory)")
            stray = sorted(os.listdir(path))
            if stray:  # only a missing or empty directory becomes a new ledger
                raise LedgerNotFoundError(
                    f"refusing to create a ledger in {path}: the directory already holds "
                    f"other files ({', '.join(stray[:3])})"
                )
    except OSError as exc:
        raise LedgerError(f"cannot use ledger directory {path}: {exc.strerror or exc}") from None
    return os.path.realpath(path)


def _refuse_foreign_place(path: Path) -> None:
    """Refuse, before anything is made, a ledger directory to be made (with its missing
    parents) where another user could change it: the check :func:`_open` makes of the
    directory, made of the deepest directory above it that exists, by name and with links
    resolved. Otherwise the directories were made first (root's, in that user's home)
    and the ledger refused after."""
    foreign = others_may_change_below(str(path))
    if foreign is not None:
        raise LedgerError(
            f"refusing to create a ledger at {path}: {foreign}, so another user could "
            "replace its files (a symlink there would make this process write where it "
            "points); keep the ledger in a directory only you (or root) can change"
        )


def _open(
    directory: str,
    create: bool,
    readonly: bool,
    ledger_id: bytes | None,
    map_size: int | None,
    made_directory: bool = False,
) -> Environment:
    data_file = os.path.join(directory, "data.mdb")
    try:
        found: os.stat_result | None = os.stat(data_file)
    except OSError:  # as os.path.exists says: missing (LMDB's own open then tells the rest)
        found = None
    new_files = found is None
    kind = None if found is None else _not_regular(found.st_mode)
    if kind is not None:
        # None is a store (and LMDB's open of a FIFO would wait for a writer).
        raise LedgerNotFoundError(f"{directory} is not a usable ledger: data.mdb is {kind}")
    existing = 0 if found is None else found.st_size
    if not new_files and existing == 0:
        # Readers: LMDB itself would fail with a bare "Bad file descriptor". Writers: LMDB
        # would silently initialise it — an empty file is not a ledger, so neither happens.
        raise LedgerNotFoundError(
            f"{directory} is not a usable ledger: data.mdb is empty (nothing was written)"
        )
    size = max(map_size or INITIAL_MAP_SIZE, existing + existing // 2)
    size = -(-size // _MAP_ALIGN) * _MAP_ALIGN if size >= _MAP_ALIGN else size
    fresh = create and new_files
    foreign = others_may_change(directory)
    if foreign is not None and not readonly:
        raise LedgerError(
            f"ledger {directory}: {foreign}, so another user could replace its files (a "
            "symlink there would make this process write where it points); keep the ledger "
            "in a directory only you (or root) can change"
        )
    if not readonly and not new_files and not os.path.lexists(os.path.join(directory, "lock.mdb")):
        # A writer's open makes lock.mdb before the store is judged: judge it first, read
        # only and without a lock, so a store refused (cut short, not LMDB, no ledger)
        # is left as it was, with no lock file of ours beside it.
        _open(directory, False, True, ledger_id, map_size).env.close()
    env, unlocked = _open_lmdb(directory, size, readonly, fresh, foreign)
    environment = Environment(directory, env, readonly, unlocked)
    try:
        opened = os.stat(data_file)
        environment.identity = (opened.st_dev, opened.st_ino)
        _refuse_cut_short(env, data_file)
        if fresh:
            for name in _LMDB_FILES:
                os.chmod(os.path.join(directory, name), 0o600)
        if not readonly:
            env.reader_check()  # free reader slots left by killed processes
        _open_databases(environment, fresh, ledger_id)
        if create and new_files:
            _fsync_directory(directory)
            if made_directory:
                _fsync_directory(os.path.dirname(directory))
    except BaseException:
        env.close()
        raise
    return environment


def _not_regular(mode: int) -> str | None:
    """What a file of ``mode`` is when it is not a regular file, else None."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def _refuse_cut_short(env: Any, data_file: str) -> None:
    """Raise :class:`LedgerCorruptError` when ``data.mdb`` is shorter than the pages its
    own meta page says were written (a partial copy, a full disk, damage).

    LMDB maps the file and trusts that length: a page past the end of the file is a
    SIGBUS in whichever process reads it — every command dies without a word, and a
    writer could die halfway through recording a run. A writer writes every page before
    the meta page that names it, so the file only ever reaches the length checked here
    (read after the meta page); the check cannot fail on a ledger another process is
    growing.
    """
    last_page = int(env.info()["last_pgno"])
    needed = (last_page + 1) * int(env.stat()["psize"])
    actual = os.path.getsize(data_file)
    if actual < needed:
        raise LedgerCorruptError(
            f"ledger {os.path.dirname(data_file)}: data.mdb is {actual} bytes, but its own "
            f"header says {needed} were written ({last_page + 1} pages): the file was cut "
            "short (a partial copy, a full disk or damage); nothing was read from it or "
            "written to it — restore it from a copy"
        )


def _lock_usable(directory: str) -> bool:
    """Whether a reader can take LMDB's lock without creating or failing to open it."""
    lock = os.path.join(directory, "lock.mdb")
    return os.path.exists(lock) and os.access(lock, os.R_OK | os.W_OK)


def _open_lmdb(
    directory: str, size: int, readonly: bool, fresh: bool, foreign: str | None = None
) -> tuple[Any, str | None]:
    """``lmdb.open`` as this ledger needs it; readers fall back to no lock (see module),
    always when ``foreign`` says another user may change the directory (a locked open
    writes the lock file, through whatever that user put at its name)."""
    options: dict[str, Any] = {
        "map_size": size,
        "subdir": True,
        "readonly": readonly,
        "create": fresh,
        "mode": 0o600,
        "max_dbs": _MAX_DBS,
        "sync": True,
        "metasync": True,
        "max_spare_txns": 1,
    }
    if readonly and foreign is not None:
        try:
            return lmdb.open(
                directory, lock=False, **options
            ), f"{foreign}: another user could change it"
        except lmdb.Error as exc:
            raise LedgerNotFoundError(f"{directory} is not a usable ledger: {exc}") from None
    if readonly and not _lock_usable(directory):
        missing = not os.path.exists(os.path.join(directory, "lock.mdb"))
        why = (
            "it has no lock file (a reader creates none)"
            if missing
            else ("its lock file is read-only to this user")
        )
        try:
            return lmdb.open(directory, lock=False, **options), why
        except lmdb.Error as exc:
            raise LedgerNotFoundError(f"{directory} is not a usable ledger: {exc}") from None
    try:
        return lmdb.open(directory, lock=True, **options), None
    except lmdb.Error as exc:
        if not readonly or not _permission_problem(exc):
            if not readonly and _permission_problem(exc):
                raise LedgerError(
                    f"ledger {directory} cannot be written by this user ({exc}); "
                    "read commands work on it, appends do not"
                ) from None
            raise LedgerNotFoundError(f"{directory} is not a usable ledger: {exc}") from None
    try:
        return lmdb.open(directory, lock=False, **options), "it is read-only to this user"
    except lmdb.Error as exc:
        raise LedgerNotFoundError(f"{directory} is not a usable ledger: {exc}") from None


def _permission_problem(exc: lmdb.Error) -> bool:
    text = str(exc)
    names = (os.strerror(errno.EACCES), os.strerror(errno.EROFS), os.strerror(errno.EPERM))
    return any(name in text for name in names)


def _fsync_directory(directory: str) -> None:
    """Make the directory's entries (the new LMDB files) durable."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise LedgerError(
            f"cannot fsync ledger directory {directory}: {exc.strerror or exc}"
        ) from None


def _open_databases(environment: Environment, create: bool, ledger_id: bytes | None) -> None:
    """Open the ledger's databases; ``create`` only for LMDB files made by this open."""
    env = environment.env
    try:
        if environment.readonly:
            # Handles opened inside a read transaction die with it; let LMDB own these.
            with env.begin(write=False) as txn:
                present = _refuse_foreign_store(environment, txn)
            environment.events = env.open_db(b"events", create=False)
            environment.runs = env.open_db(b"runs", create=False)
            environment.meta = env.open_db(b"meta", create=False)
            _open_present(environment, present, None)
            with env.begin(write=False) as txn:
                _load_meta(environment, txn, create=False, ledger_id=ledger_id)
        else:
            with env.begin(write=True) as txn:
                present = _refuse_foreign_store(environment, txn)
                if not create and not {b"events", b"runs", b"meta"} <= present:
                    raise lmdb.NotFoundError("the ledger databases are missing")
                environment.events = env.open_db(b"events", txn=txn, create=create)
                environment.runs = env.open_db(b"runs", txn=txn, create=create)
                environment.meta = env.open_db(b"meta", txn=txn, create=create)
                if create:
                    environment.open_optional(txn)
                else:
                    _open_present(environment, present, txn)
                _load_meta(environment, txn, create=create, ledger_id=ledger_id)
    except lmdb.NotFoundError:
        raise LedgerNotFoundError(
            f"{environment.path} is an LMDB store but not a bvisor ledger "
            "(its events/runs/meta databases are missing)"
        ) from None
    except lmdb.Error as exc:
        raise LedgerError(f"cannot open ledger {environment.path}: {exc}") from None


_LEDGER_DBS: Final = frozenset({b"events", b"runs", b"meta", *OPTIONAL_DBS})


def _open_present(environment: Environment, present: set[bytes], txn: Any) -> None:
    """Open those optional databases the store already has (never creating one)."""
    env = environment.env
    handles = {
        name: env.open_db(name, txn=txn, create=False) for name in OPTIONAL_DBS if name in present
    }
    environment.tree = handles.get(b"tree")
    environment.runids = handles.get(b"runids")
    environment.runstart = handles.get(b"runstart")
    environment.checkpoints = handles.get(b"checkpoints")


def _refuse_foreign_store(environment: Environment, txn: Any) -> set[bytes]:
    """Refuse to touch someone else's LMDB store; return the databases it holds.

    A ledger's main database holds only its named databases; anything else means
    ``data.mdb`` belongs to another program, and creating our databases in it would
    change a store that is not ours (the stray-files check only sees other file names).
    """
    present: set[bytes] = set()
    cursor = txn.cursor()
    for key in cursor.iternext(keys=True, values=False):
        name = bytes(key)
        if name not in _LEDGER_DBS:
            raise LedgerNotFoundError(
                f"{environment.path} is an LMDB store but not a bvisor ledger "
                f"(it holds key {name[:32]!r}); leaving it alone"
            )
        present.add(name)
    return present


def _load_meta(environment: Environment, txn: Any, create: bool, ledger_id: bytes | None) -> None:
    """Read (or, creating an empty ledger, write) the format version and ledger id."""
    meta = environment.meta
    version_raw = txn.get(META_FORMAT_VERSION, db=meta)
    if version_raw is None:
        empty = txn.stat(environment.events)["entries"] == 0
        if not (create and empty and txn.stat(meta)["entries"] == 0):
            raise LedgerFormatError(f"{environment.path}: meta has no format_version")
        if ledger_id is not None and len(ledger_id) != LEDGER_ID_BYTES:
            raise LedgerUsageError(f"ledger_id: must be {LEDGER_ID_BYTES} bytes")
        new_id = ledger_id if ledger_id is not None else os.urandom(LEDGER_ID_BYTES)
        txn.put(META_FORMAT_VERSION, FORMAT_VERSION.to_bytes(4, "big"), db=meta)
        txn.put(META_LEDGER_ID, new_id, db=meta)
        txn.put(META_TREE_SIZE, seq_key(0), db=meta)  # the tree is kept from event 0 on
        version_raw = FORMAT_VERSION.to_bytes(4, "big")
    if len(version_raw) != 4:
        raise LedgerFormatError(f"{environment.path}: meta format_version is not 4 bytes")
    version = int.from_bytes(version_raw, "big")
    if version != FORMAT_VERSION:
        raise LedgerFormatError(
            f"{environment.path}: ledger format version {version} is not supported "
            f"(this bvisor reads version {FORMAT_VERSION})"
        )
    stored_id = txn.get(META_LEDGER_ID, db=meta)
    if stored_id is None or len(stored_id) != LEDGER_ID_BYTES:
        raise LedgerFormatError(
            f"{environment.path}: meta ledger_id is not {LEDGER_ID_BYTES} bytes"
        )
    if ledger_id is not None and stored_id != ledger_id:
        raise LedgerUsageError(f"ledger {environment.path} has a different ledger_id")
    environment.ledger_id = bytes(stored_id)
    environment.genesis = genesis_hash(environment.ledger_id)
