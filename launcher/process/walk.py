"""The bounded walk of a dead run's outputs: by fd only, nothing followed, every bound said.

The workload has exited and every other process of its PID namespace is dead; its init
waits, so the run's mounts still exist, and the launcher reaches them through
``/proc/<init>/root``. What the workload left there is hostile input all the same, so:

* every entry is opened relative to its directory's fd with ``openat2`` and
  ``RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV``: no
  symlink is followed (not even in the path), nothing resolves above the directory, and
  no mount is crossed (a mount inside a root is reported, not entered);
* only regular files are read and only directories entered; a symlink, FIFO, socket or
  device node is looked at with ``fstatat(AT_SYMLINK_NOFOLLOW)``, reported, never opened;
  a file or directory must still be the inode that was looked at once it is open;
* names are bytes and are reported escaped (:mod:`bvisor.contract.outputs`), so a name
  with control characters or bytes that are not UTF-8 is recorded exactly and safely;
* the walk is bounded by the plan's ``max_files``, ``max_bytes``, ``max_depth``,
  ``max_entries`` and ``max_path_bytes``, and in time by the run's wall deadline (checked
  before each entry and each chunk read, copied or fsync'd: the walk is the launcher's
  work after the workload, inside the run's budget, and a walk that ran on would leave the
  host's watchdog only the launcher to kill, and the workload's status unreported);
  reaching a bound is an ``outputs_truncated`` note, never a silent drop, and the file
  being read when the deadline came is not listed (its partial copy removed);
* with a commit, each temp-root file is copied, as it is hashed, into the host's staging
  directory by fd (``O_CREAT | O_EXCL``, directories made with ``mkdirat``, nothing
  followed there either), fsync'd with its directory when ``synced``; the copy is the
  bytes hashed, so the artifact's digests are the digests of what was copied. A page of
  zeros is a hole in the copy (a seek, then the length set at the end), so the copy holds
  at most the pages the tmpfs held: a file of holes the workload made for free
  (``truncate -s 1G``) would otherwise become as many bytes of the host's disk, past the
  tmpfs's size and every storage bound. For the same reason a file with several names (hard
  links) is copied once: each later name is hashed and listed as before, then linked to
  the first copy in the staging tree once its digests are the first's (a file that no
  longer matches fails the copy); a copy per name let a workload turn one file of its
  tmpfs into as many copies on the host's disk as the walk's byte bound allows.

Write roots are host directories: only entries whose status changed (``ctime``) in or
after the second the run started are reported — the run's delta (a deletion is not seen).
Entries are walked in byte order of their names, so a listing is deterministic.

The test hook ``outputs_follow_links`` is the planted lie: the walk then opens entries as
a naive copier would (following symlinks, any file type, no inode check).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import blake3

from bvisor.contract import mechanisms as mech
from bvisor.contract import outputs as grammar
from bvisor.launcher.basement import fds
from bvisor.launcher.basement.paths import (
    RESOLVE_BENEATH,
    RESOLVE_NO_MAGICLINKS,
    RESOLVE_NO_SYMLINKS,
    RESOLVE_NO_XDEV,
    openat2,
)

__all__ = ["TMPFS_MAGIC", "Walk", "WalkAborted"]

TMPFS_MAGIC = 0x01021994
_CHUNK = 1 << 20
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_BENEATH = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS
_ENTRY = _BENEATH | RESOLVE_NO_XDEV
_PAGE = 4096  # a hole's grain: a page of zeros in the copy costs the host no block


def _runs(data: bytes) -> list[tuple[int, int, bool]]:
    """``data`` as (start, end, all zeros) runs of whole pages (the last may be short),
    each run as long as its kind lasts: the copy writes the others and seeks over these."""
    if data.count(0) == len(data):
        return [(0, len(data), True)]
    runs: list[tuple[int, int, bool]] = []
    for start in range(0, len(data), _PAGE):
        end = min(start + _PAGE, len(data))
        zeros = data.count(0, start, end) == end - start
        if runs and runs[-1][2] == zeros:
            runs[-1] = (runs[-1][0], end, zeros)
        else:
            runs.append((start, end, zeros))
    return runs


_KINDS = {
    stat.S_IFLNK: "symlink",
    stat.S_IFIFO: "fifo",
    stat.S_IFSOCK: "socket",
    stat.S_IFCHR: "char-device",
    stat.S_IFBLK: "block-device",
}
_REFUSED = frozenset({errno.EACCES, errno.EPERM})
_RACED = frozenset({errno.ELOOP, errno.ENOENT, errno.ENOTDIR, errno.ENXIO})

Note = Callable[[str], None]


class WalkAborted(Exception):
    """The listing cannot be trusted to be of the run's roots; ``reason`` is one word."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Stop(Exception):
    """A stopping bound was reached (and reported)."""


@dataclass
class _Counts:
    reported: int = 0
    listed: int = 0
    skipped: int = 0
    hashed: int = 0
    entries: int = 0
    path_bytes: int = 0
    artifacts: int = 0
    truncated: bool = False
    copy_failed: bool = False


class _Out:
    """A directory of the staging tree, made (``mkdirat``) when a file first needs it."""

    def __init__(self, parent: _Out | None, name: bytes, fd: int | None = None) -> None:
        self.parent, self.name, self._fd = parent, name, fd

    def relative(self) -> bytes:
        """This directory's path in the staging tree (the root's is empty)."""
        if self.parent is None:
            return b""
        above = self.parent.relative()
        return self.name if not above else above + b"/" + self.name

    def fd(self) -> int:
        if self._fd is None:
            assert self.parent is not None
            where = self.parent.fd()
            os.mkdir(self.name, 0o700, dir_fd=where)
            self._fd = openat2(where, self.name, _DIR_FLAGS, _ENTRY)
        return self._fd

    def close(self, durable: bool) -> None:
        """fsync (when durable) and close a directory this walk made; the root is the
        host's slot and stays open."""
        if self._fd is not None and self.parent is not None:
            try:
                if durable:
                    os.fsync(self._fd)
            finally:
                os.close(self._fd)
                self._fd = None


def _escape(raw: bytes) -> str:
    return grammar.escape_path(raw)


class Walk:
    """One listing of ``params.roots`` under a run's root fd (see the module docstring)."""

    def __init__(
        self,
        params: mech.Outputs,
        note: Note,
        since: int,
        staging_fd: int | None,
        *,
        follow_links: bool = False,
        deadline_ns: int | None = None,
        clock: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        self.params = params
        self.note = note
        self.since = since
        self.since_ns = since * 1_000_000_000
        self.durable = params.commit == "synced"
        self.staging = None if staging_fd is None else _Out(None, b"", staging_fd)
        self.lie = follow_links
        self.deadline_ns = deadline_ns  # the run's wall deadline, on ``clock``
        self.clock = clock  # CLOCK_MONOTONIC, the host watchdog's clock
        self.counts = _Counts()
        # (st_dev, st_ino) of a file with several names -> its first copy's path in the
        # staging tree, size and digests: a later name is linked to it, not copied again.
        self.copies: dict[tuple[int, int], tuple[bytes, int, dict[str, str]]] = {}

    # -- the whole listing -------------------------------------------------------------

    def run(self, root_fd: int, expected: Mapping[str, tuple[int, int]]) -> None:
        """List every root; then the summary note. WalkAborted: nothing can be trusted."""
        if not self.lie and fds.fs_type(root_fd) != TMPFS_MAGIC:
            raise WalkAborted("not-private")  # the run's root is always an empty tmpfs
        try:
            for root in self.params.roots:
                fd = self._open_root(root_fd, root, expected.get(root.path))
                try:
                    out = self.staging if root.kind == "temp" else None
                    self._directory(root, fd, b"", 0, out)
                finally:
                    os.close(fd)
        except _Stop:
            pass
        if self.staging is not None and self._syncing() and self.counts.artifacts:
            os.fsync(self.staging.fd())
        self.summary()

    def _syncing(self) -> bool:
        """fsync what is copied: the commit is synced and not already abandoned (a
        truncated listing or a failed copy commits nothing, so syncing it is wasted time)."""
        return self.durable and not (self.counts.truncated or self.counts.copy_failed)

    def _past_deadline(self) -> bool:
        return self.deadline_ns is not None and self.clock() >= self.deadline_ns

    def _stop_at_deadline(self, root: mech.OutputRoot, path: bytes, *, claimed: bool) -> None:
        """At the run's wall deadline, end the walk at ``path`` (reported, never silent);
        a file claimed but not yet listed is given back: it is not reported at all."""
        if not self._past_deadline():
            return
        if claimed:
            self._unclaim(path)
        self._truncate(root, path, grammar.DEADLINE)

    def summary(self) -> None:
        """The closing note: what was listed, and whether a commit may go ahead."""
        c = self.counts
        commit = "none"
        if self.params.commit is not None:
            commit = "abandoned" if c.truncated or c.copy_failed else "complete"
        self.note(
            grammar.format_item(
                grammar.SUMMARY,
                roots=",".join(_escape(r.path.encode()) for r in self.params.roots),
                since=self.since,
                listed=c.listed,
                skipped=c.skipped,
                bytes=c.hashed,
                artifacts=c.artifacts,
                truncated="yes" if c.truncated else "no",
                commit=commit,
            )
        )

    def _open_root(
        self, root_fd: int, root: mech.OutputRoot, expected: tuple[int, int] | None
    ) -> int:
        relative = root.path.lstrip("/").encode() or b"."
        try:
            fd = openat2(root_fd, relative, _DIR_FLAGS, 0 if self.lie else _BENEATH)
        except OSError as exc:
            raise WalkAborted(
                f"root-{errno.errorcode.get(exc.errno or 0, 'error').lower()}"
            ) from None
        if self.lie:
            return fd
        info = os.fstat(fd)
        if root.kind == "temp" and fds.fs_type(fd) != TMPFS_MAGIC:
            os.close(fd)
            raise WalkAborted("temp-root-not-tmpfs")
        if root.kind == "write" and (expected is None or (info.st_dev, info.st_ino) != expected):
            os.close(fd)
            raise WalkAborted("write-root-mismatch")  # not the directory the host granted
        return fd

    # -- reporting ---------------------------------------------------------------------

    def _claim(self, root: mech.OutputRoot, path: bytes) -> None:
        """Room for one more reported item, or the bound reported and the walk ended."""
        if self.counts.reported >= self.params.max_files:
            self._truncate(root, path, "files")
        size = len(_escape(path))
        if self.counts.path_bytes + size > self.params.max_path_bytes:
            self._truncate(root, path, "paths")
        self.counts.reported += 1
        self.counts.path_bytes += size

    def _unclaim(self, path: bytes) -> None:
        """Give back the room :meth:`_claim` took for an item that will not be reported."""
        self.counts.reported -= 1
        self.counts.path_bytes -= len(_escape(path))

    def _truncate(self, root: mech.OutputRoot, path: bytes, limit: str) -> None:
        self.counts.truncated = True
        self.note(
            grammar.format_item(
                grammar.TRUNCATED, root=_escape(root.path.encode()), path=_escape(path), limit=limit
            )
        )
        if limit != "depth":
            raise _Stop

    def _skip(self, root: mech.OutputRoot, path: bytes, kind: str) -> None:
        self._claim(root, path)
        self.counts.skipped += 1
        self.note(
            grammar.format_item(
                grammar.SKIPPED, root=_escape(root.path.encode()), path=_escape(path), kind=kind
            )
        )

    # -- directories -------------------------------------------------------------------

    def _names(self, dirfd: int) -> list[bytes]:
        """The directory's names in byte order, at most one past the entries bound."""
        room = self.params.max_entries - self.counts.entries + 1
        names: list[bytes] = []
        with os.scandir(dirfd) as listing:
            for entry in listing:
                names.append(os.fsencode(entry.name))
                if len(names) >= room:
                    break
        return sorted(names)

    def _directory(
        self, root: mech.OutputRoot, dirfd: int, rel: bytes, depth: int, out: _Out | None
    ) -> None:
        try:
            for name in self._names(dirfd):
                path = name if not rel else rel + b"/" + name
                self._entry(root, dirfd, name, path, depth, out)
        finally:
            if out is not None:
                out.close(self._syncing())

    def _entry(
        self,
        root: mech.OutputRoot,
        dirfd: int,
        name: bytes,
        path: bytes,
        depth: int,
        out: _Out | None,
    ) -> None:
        self._stop_at_deadline(root, path, claimed=False)
        self.counts.entries += 1
        if self.counts.entries > self.params.max_entries:
            self._truncate(root, path, "entries")
        try:
            info = os.stat(name, dir_fd=dirfd, follow_symlinks=self.lie)
        except FileNotFoundError:
            return
        except OSError:
            self._skip(root, path, "unreadable")
            return
        # A write root is the host's directory: report what changed during the run.
        unchanged = root.kind == "write" and info.st_ctime_ns < self.since_ns
        if stat.S_ISDIR(info.st_mode):
            self._subdirectory(root, dirfd, name, path, depth, out, info, unchanged)
        elif stat.S_ISREG(info.st_mode) or (self.lie and not unchanged):
            if not unchanged:
                self._file(root, dirfd, name, path, out, info)
        elif not unchanged:
            self._skip(root, path, _KINDS.get(stat.S_IFMT(info.st_mode), "changed"))

    def _subdirectory(
        self,
        root: mech.OutputRoot,
        dirfd: int,
        name: bytes,
        path: bytes,
        depth: int,
        out: _Out | None,
        info: os.stat_result,
        unchanged: bool,
    ) -> None:
        if depth + 1 > self.params.max_depth:
            self._claim(root, path)
            self._truncate(root, path, "depth")
            return
        try:
            fd = openat2(dirfd, name, _DIR_FLAGS, 0 if self.lie else _ENTRY)
        except OSError as exc:
            if exc.errno == errno.EXDEV and self._is_root(root, path):
                return  # another listed root mounted here: it is listed on its own
            if not unchanged:
                self._skip(root, path, self._why(exc))
            return
        try:
            now = os.fstat(fd)
            if not self.lie and (now.st_dev, now.st_ino) != (info.st_dev, info.st_ino):
                self._skip(root, path, "changed")
                return
            child = None if out is None else _Out(out, name)
            self._directory(root, fd, path, depth + 1, child)
        finally:
            os.close(fd)

    def _is_root(self, root: mech.OutputRoot, path: bytes) -> bool:
        full = root.path.rstrip("/").encode() + b"/" + path
        return any(other.path.encode() == full for other in self.params.roots)

    @staticmethod
    def _why(exc: OSError) -> str:
        if exc.errno == errno.EXDEV:
            return "mount"
        if exc.errno in _REFUSED:
            return "unreadable"
        return "changed" if exc.errno in _RACED else "unreadable"

    # -- files -------------------------------------------------------------------------

    def _open_file(self, dirfd: int, name: bytes) -> int:
        flags = _FILE_FLAGS & ~os.O_NOFOLLOW if self.lie else _FILE_FLAGS
        resolve = 0 if self.lie else _ENTRY
        try:
            return openat2(dirfd, name, flags | os.O_NOATIME, resolve)
        except PermissionError:  # O_NOATIME needs the file's owner (or CAP_FOWNER)
            return openat2(dirfd, name, flags, resolve)

    def _file(
        self,
        root: mech.OutputRoot,
        dirfd: int,
        name: bytes,
        path: bytes,
        out: _Out | None,
        info: os.stat_result,
    ) -> None:
        room = self.params.max_bytes - self.counts.hashed
        if info.st_size > room:
            self._truncate(root, path, "bytes")
        try:
            fd = self._open_file(dirfd, name)
        except OSError as exc:
            self._skip(root, path, self._why(exc))
            return
        try:
            now = os.fstat(fd)
            same = (now.st_dev, now.st_ino) == (info.st_dev, info.st_ino)
            if not self.lie and (not stat.S_ISREG(now.st_mode) or not same):
                self._skip(root, path, "changed")
                return
            self._claim(root, path)
            self._read(root, fd, name, path, out, now, room)
        finally:
            os.close(fd)

    def _read(
        self,
        root: mech.OutputRoot,
        fd: int,
        name: bytes,
        path: bytes,
        out: _Out | None,
        info: os.stat_result,
        room: int,
    ) -> None:
        sha, b3 = hashlib.sha256(), blake3.blake3()
        inode = (info.st_dev, info.st_ino)
        first = None if out is None else self.copies.get(inode)
        target = self._create(out, name, path, info) if out is not None and first is None else None
        size = 0
        try:
            while True:
                self._stop_at_deadline(root, path, claimed=True)  # the copy removed below
                chunk = os.read(fd, min(_CHUNK, room - size + 1))
                if not chunk:
                    break
                size += len(chunk)
                if size > room:  # it grew past the bound while being read
                    self._unclaim(path)  # not reported
                    self._discard(out, name, target)
                    target = None
                    self._truncate(root, path, "bytes")
                sha.update(chunk)
                b3.update(chunk)
                if target is not None:
                    target = self._write(out, name, path, target, chunk)
            if target is not None:
                target = self._set_length(out, name, path, target, size)
            if target is not None and self._syncing():
                self._stop_at_deadline(root, path, claimed=True)
                target = self._sync(out, name, path, target)
        except BaseException:
            self._discard(out, name, target)
            raise
        self.counts.hashed += size
        self.counts.listed += 1
        digests = {"sha256": sha.hexdigest(), "blake3": b3.hexdigest()}
        self.note(
            grammar.format_item(
                grammar.LISTED,
                root=_escape(root.path.encode()),
                path=_escape(path),
                size=size,
                **digests,
            )
        )
        if first is not None and out is not None:
            if not self._link(out, name, path, first, size, digests):
                return
        elif target is not None:
            os.close(target)
            if info.st_nlink > 1 and out is not None:
                above = out.relative()
                self.copies[inode] = (name if not above else above + b"/" + name, size, digests)
        else:
            return
        self.counts.artifacts += 1
        self.note(grammar.format_item(grammar.ARTIFACT, size=size, path=_escape(path), **digests))

    # -- the copy ----------------------------------------------------------------------

    def _create(self, out: _Out, name: bytes, path: bytes, info: os.stat_result) -> int | None:
        if self.counts.copy_failed:
            return None
        mode = 0o700 if info.st_mode & stat.S_IXUSR else 0o600
        try:
            return openat2(out.fd(), name, _NEW_FILE, _ENTRY, mode)
        except OSError as exc:
            self._copy_failed(path, exc)
            return None

    def _link(
        self,
        out: _Out,
        name: bytes,
        path: bytes,
        first: tuple[bytes, int, dict[str, str]],
        size: int,
        digests: dict[str, str],
    ) -> bool:
        """Another name of a file already copied: linked to that copy (the staging tree is
        the host's, made by this walk alone), once what was just read is what was copied;
        else the copy fails and the commit with it."""
        if self.counts.copy_failed or self.staging is None:
            return False
        copied, copied_size, copied_digests = first
        if (copied_size, copied_digests) != (size, digests):
            self._copy_failed(path, OSError(errno.ESTALE, "changed since it was copied"))
            return False
        try:
            os.link(
                copied,
                name,
                src_dir_fd=self.staging.fd(),
                dst_dir_fd=out.fd(),
                follow_symlinks=False,
            )
        except OSError as exc:
            self._copy_failed(path, exc)
            return False
        return True

    def _write(
        self, out: _Out | None, name: bytes, path: bytes, target: int, data: bytes
    ) -> int | None:
        def write() -> None:
            view = memoryview(data)
            for start, end, zeros in _runs(data):
                if zeros:
                    os.lseek(target, end - start, os.SEEK_CUR)  # a hole: none of the host's disk
                    continue
                run = view[start:end]
                while run:
                    run = run[os.write(target, run) :]

        return self._guarded(out, name, path, target, write)

    def _set_length(
        self, out: _Out | None, name: bytes, path: bytes, target: int, size: int
    ) -> int | None:
        """The copy's length is the file's, though it ends in a hole (a seek writes none)."""
        return self._guarded(out, name, path, target, lambda: os.ftruncate(target, size))

    def _sync(self, out: _Out | None, name: bytes, path: bytes, target: int) -> int | None:
        return self._guarded(out, name, path, target, lambda: os.fsync(target))

    def _guarded(
        self, out: _Out | None, name: bytes, path: bytes, target: int, step: Callable[[], None]
    ) -> int | None:
        """``step`` on the copy ``target``; a failure abandons the copy (and the commit)."""
        try:
            step()
        except OSError as exc:
            self._discard(out, name, target)
            self._copy_failed(path, exc)
            return None
        return target

    def _copy_failed(self, path: bytes, exc: OSError) -> None:
        self.counts.copy_failed = True
        name = errno.errorcode.get(exc.errno or 0, "EIO")
        self.note(grammar.format_item(grammar.ARTIFACT_FAILED, path=_escape(path), errno=name))

    def _discard(self, out: _Out | None, name: bytes, target: int | None) -> None:
        """Remove a half-made copy (the host abandons a commit with one anyway)."""
        if target is None or out is None:
            return
        os.close(target)
        with contextlib.suppress(OSError):
            os.unlink(name, dir_fd=out.fd())
