"""The host's half of committing a run's outputs: a staging directory, then one rename.

A plan that commits (``linux.outputs.v1`` with a ``commit``) gets, before it launches, a
fresh staging directory ``<artifacts>/.staging-<run id>`` beside where its outputs will
live, ``<artifacts>/<run id>``; the host passes it to the launcher as a directory fd (the
``ArtifactStaging`` slot), and the launcher copies the temp root's files into it by fd
after the workload exits. After the run, the host renames staging to the final name
(``renameat2`` with ``RENAME_NOREPLACE``: atomic, never over an existing directory; the
artifact directory fsync'd when the commit is ``synced``) — but only when the launcher's
closing note says every file was copied and nothing was truncated. Otherwise the staging
tree is removed (by fd, no link followed) and the report says why: a commit is all or
nothing.

``<artifacts>`` is ``$BVISOR_ARTIFACTS`` if set, else ``$XDG_DATA_HOME/bvisor/artifacts``
(``~/.local/share`` when unset), or what the caller names. Neither it nor a directory
above it (by name or by real path) may be one another user could change — else that user's
symlink there would have this run (root's, say) commit where it points. It must lie
outside every root the run can reach, and its name must not pass through a symlink inside
one (:func:`bvisor.launcher.host.reach.refuse_if_artifacts_reachable`). It is resolved
once and opened with no symlink followed (:func:`open_staging`); the backend judges the
directory it opened, by its fd, once more.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from bvisor.contract import outputs as grammar
from bvisor.contract.report import ObservedFact
from bvisor.launcher.basement.paths import (
    RESOLVE_BENEATH,
    RESOLVE_NO_MAGICLINKS,
    RESOLVE_NO_SYMLINKS,
    RESOLVE_NO_XDEV,
    openat2,
    rename_noreplace,
)
from bvisor.ownership import others_may_change

__all__ = [
    "ArtifactsError",
    "OutputsOutcome",
    "Staging",
    "default_artifacts_path",
    "open_staging",
    "outputs_outcome",
]

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_STRICT = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV
_NO_LINKS = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS  # mounts may be crossed


class ArtifactsError(RuntimeError):
    """The host cannot prepare a place for the run's artifacts."""


def default_artifacts_path(environ: Mapping[str, str] | None = None) -> Path:
    """``$BVISOR_ARTIFACTS``, else ``$XDG_DATA_HOME/bvisor/artifacts`` (XDG's default)."""
    env = os.environ if environ is None else environ
    explicit = env.get("BVISOR_ARTIFACTS", "")
    if explicit:
        return Path(explicit)
    xdg = env.get("XDG_DATA_HOME", "")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "bvisor" / "artifacts"
    home = Path(env.get("HOME", "") or Path.home())
    return home / ".local" / "share" / "bvisor" / "artifacts"


@dataclass
class Staging:
    """A run's staging directory inside the artifact directory (held by ``root_fd``)."""

    root: str
    root_fd: int
    name: str
    final: str
    durable: bool

    @property
    def final_path(self) -> str:
        return os.path.join(self.root, self.final)

    def open_for_launch(self) -> int:
        """A fresh directory fd of the staging directory, for the ArtifactStaging slot."""
        return openat2(self.root_fd, self.name.encode(), _DIR, _STRICT)

    def commit(self) -> None:
        """Rename staging to its final name (never over anything), durably when asked."""
        rename_noreplace(self.root_fd, self.name, self.final)
        if self.durable:
            os.fsync(self.root_fd)

    def abandon(self) -> None:
        """Remove the staging tree (best effort: a leftover is named by the run id)."""
        with contextlib.suppress(OSError):
            _remove_tree(self.root_fd, self.name.encode())

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.root_fd)


def open_staging(root: str | os.PathLike[str], run_id: bytes, durable: bool) -> Staging:
    """Make ``<root>/.staging-<run id>`` (``root`` created 0700 if need be).

    ``root`` is resolved to its real path once, and that path is opened (its missing
    directories made) one component at a time with no symlink followed: a name re-pointed
    after it was resolved — a link swapped in while the run was being checked — refuses
    the run instead of moving its artifacts. :attr:`Staging.root` is the real path, which
    is what the report names and what the host's reach checks judge."""
    where = os.path.abspath(os.fspath(root))
    real = os.path.realpath(where)
    root_fd = _open_made(where, real)
    for named in dict.fromkeys((where, real)):
        foreign = others_may_change(named)
        if foreign is not None:
            os.close(root_fd)
            raise ArtifactsError(
                f"artifact directory {where}: {foreign}, so another user could re-point it "
                "(a symlink there would have this run write where it points); commit to a "
                "directory only you (or root) can change"
            )
    final = run_id.hex()
    staging = Staging(real, root_fd, f".staging-{final}", final, durable)
    try:
        for name in (final, staging.name):
            with contextlib.suppress(FileNotFoundError):
                os.lstat(name, dir_fd=root_fd)
                raise ArtifactsError(f"artifact directory {real} already holds {name}")
        os.mkdir(staging.name, 0o700, dir_fd=root_fd)
    except OSError as exc:
        staging.close()
        raise ArtifactsError(f"artifact directory {real}: {exc.strerror}") from None
    except ArtifactsError:
        staging.close()
        raise
    return staging


def _open_made(where: str, real: str) -> int:
    """A directory fd of ``real`` (absolute, resolved), each component opened with no
    symlink followed and each missing one made 0700 by fd."""
    fd = os.open("/", _DIR)
    try:
        for part in (p for p in real.split("/") if p):
            encoded = os.fsencode(part)
            try:
                try:
                    step = openat2(fd, encoded, _DIR, _NO_LINKS)
                except FileNotFoundError:
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(encoded, 0o700, dir_fd=fd)
                    step = openat2(fd, encoded, _DIR, _NO_LINKS)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise ArtifactsError(
                        f"artifact directory {where}: {part!r} on the way to {real} is not a "
                        "directory (a file, or a symlink put there after the path was "
                        "resolved); nothing was committed"
                    ) from None
                raise ArtifactsError(f"artifact directory {where}: {exc.strerror}") from None
            os.close(fd)
            fd = step
    except BaseException:
        os.close(fd)
        raise
    return fd


def _remove_tree(dirfd: int, name: bytes) -> None:
    """Remove ``name`` under ``dirfd`` and all beneath it, by fd, following no link."""
    info = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
    if not stat.S_ISDIR(info.st_mode):
        os.unlink(name, dir_fd=dirfd)
        return
    fd = openat2(dirfd, name, _DIR, _STRICT)
    try:
        with os.scandir(fd) as listing:
            names = [os.fsencode(entry.name) for entry in listing]
        for child in names:
            _remove_tree(fd, child)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=dirfd)


@dataclass(frozen=True)
class OutputsOutcome:
    """What a run's outputs put in its report: facts, and the committed artifacts."""

    facts: tuple[ObservedFact, ...]
    artifacts: tuple[str, ...]


def outputs_outcome(notes: Sequence[str], staging: Staging | None) -> OutputsOutcome:
    """The launcher's outputs notes as report facts; commit (or abandon) the staging."""
    try:
        report = grammar.report_items(notes)
    except grammar.OutputsGrammarError as exc:
        if staging is not None:
            staging.abandon()
        fact = ObservedFact("outputs_malformed", f"a launcher outputs note: {exc}")
        reason = grammar.format_detail(grammar.NOT_COMMITTED, reason="listing-malformed")
        extra = () if staging is None else (ObservedFact(grammar.NOT_COMMITTED, reason),)
        return OutputsOutcome((fact, *extra), ())
    facts = [ObservedFact(kind, detail) for kind, detail in report.facts]
    if staging is None:
        return OutputsOutcome(tuple(facts), ())
    if not report.commit_complete:
        staging.abandon()
        reason = grammar.format_detail(grammar.NOT_COMMITTED, reason="listing-incomplete")
        return OutputsOutcome((*facts, ObservedFact(grammar.NOT_COMMITTED, reason)), ())
    try:
        staging.commit()
    except OSError as exc:
        staging.abandon()
        word = errno.errorcode.get(exc.errno or 0, "EIO").lower()
        reason = grammar.format_detail(grammar.NOT_COMMITTED, reason=f"rename-{word}")
        return OutputsOutcome((*facts, ObservedFact(grammar.NOT_COMMITTED, reason)), ())
    detail = grammar.format_detail(
        grammar.COMMITTED,
        count=len(report.artifacts),
        dir=grammar.escape_path(os.fsencode(staging.final_path)),
    )
    return OutputsOutcome((*facts, ObservedFact(grammar.COMMITTED, detail)), report.artifacts)
