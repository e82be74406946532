"""Keep the evidence out of the workload's reach.

The ledger holds every run's captured output and is the proof of every run; a workload
whose filesystem roots cover the ledger directory could read other runs' output, and one
with a write root over it could corrupt or truncate the store under the host (a bus error
kills the host mid-run, and that run is never sealed). ``bvisor run`` from ``$HOME`` with
the default ledger under ``~/.local/share`` is exactly that case. So a run whose roots
cover its ledger is refused before anything is recorded or started.

The checkpoint signing key is kept out of reach the same way: a workload that could read
it could sign checkpoints of a rewritten ledger, and one that could write its directory
could swap it. A plan whose roots cover the key file or its directory is refused.

Reach is judged by *identity*, not by name: a root covers the ledger when (a) by real
path the ledger lies inside it, (b) the root is the very directory (device and inode) of
the ledger or of one of its ancestors, or (c) by filesystem location (mountinfo: device
and the path within that filesystem) the ledger lies inside the root or the root inside
the ledger. So a bind-mount alias of the ledger's directory or of a parent, a symlinked
parent, or a ``/proc/self/root/...`` name gets no further than the plain path. A root
*inside* the ledger directory is refused too (a write root there, or a file root on
``data.mdb``, is the store itself). A file has names no directory check sees: a hard link
to ``data.mdb`` (or to the signing key) inside a root is the file itself, so a root on the
filesystem of a ledger file or key that has more than one link is refused as well (the
other names cannot be found cheaply; removing them is the fix).

A spec without a filesystem capability asks for no filesystem confinement at all: its
workload reaches every file its uid may, the ledger and the signing key among them. Such a
plan is never run with a key (found by attack: a workload of one printed the key, and a
key is what a rewritten ledger cannot forge). It may still write the ledger (README says
so: a run it forges there is what the next signed checkpoint covers) and the caller's other
files, bvisor's code included; it is not refused for that, since a spec that names no
filesystem capability grants exactly that.

The supervisor's own code is kept out of *write* reach: a write root covering a directory
this process loaded code from (bvisor's packages, an editable checkout, its dependencies),
a directory on ``sys.path`` (a planted ``.pth`` or ``sitecustomize`` runs in every later
interpreter), the virtual environment, the interpreter or the launcher file is refused —
the workload could otherwise rewrite the code of the next ``bvisor`` command, which runs
unconfined. Reading that code is harmless. Not covered: ``sys.path[0]`` when it is the
directory of a script or of a ``python -m``/``-c`` caller, which the caller chose to import
from. Under ``-P`` there is no such entry and every entry is judged: the service is
started so, and a service started without it forgets that entry
(:func:`forget_start_directory`); exempting its first entry anyway let a workload write
into the first ``PYTHONPATH`` directory, which the next command's copy imported from.

The artifact directory a plan commits to is kept out of reach the same way, both ways
round: no root the run can reach may contain it (the workload could tamper with other
runs' committed outputs) or lie inside it (it could write into them).
"""

from __future__ import annotations

import os
import stat
import sys
from typing import TYPE_CHECKING

from bvisor.launcher.basement.mountinfo import FsLocation, MountEntry, fs_location, mount_entries
from bvisor.launcher.wire.lowered import LoweredParams, LoweringParamsError, lowered_params

if TYPE_CHECKING:
    from bvisor.contract.plan import BoundaryPlan

__all__ = [
    "ArtifactsReachable",
    "CodeReachable",
    "KeyReachable",
    "LedgerReachable",
    "covering_root",
    "forget_start_directory",
    "judge_supervisor_code",
    "linked_root",
    "reaches",
    "refuse_if_artifacts_reachable",
    "refuse_if_code_reachable",
    "refuse_if_fds_reach",
    "refuse_if_key_reachable",
    "refuse_if_plan_reaches",
    "refuse_if_reachable",
    "supervisor_code",
]


class LedgerReachable(ValueError):
    """The ledger directory lies inside a filesystem root the workload can reach."""


class KeyReachable(LedgerReachable):
    """The checkpoint signing key (or its directory) lies inside a reachable root."""


def _ancestry(path: str) -> set[tuple[int, int]]:
    """(device, inode) of ``path`` and of every directory above it, by its real path."""
    found: set[tuple[int, int]] = set()
    current = os.path.realpath(path)
    while True:
        try:
            info = os.stat(current)
        except OSError:
            pass
        else:
            found.add((info.st_dev, info.st_ino))
        parent = os.path.dirname(current)
        if parent == current:
            return found
        current = parent


def _identity(path: str) -> tuple[int, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_dev, info.st_ino)


class _Path:
    """What :func:`reaches` asks of one path, each found on first use and kept for one
    check: a check asks the same of its target for every root (seven, for the default
    spec), and each answer is filesystem work (realpath, a stat per ancestor, a mount
    lookup). Never kept beyond the check that made it."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._real: str | None = None
        self._ancestry: set[tuple[int, int]] | None = None
        self._looked_up = False
        self._identity: tuple[int, int] | None = None
        self._table: list[MountEntry] | None = None
        self._location: FsLocation | None = None

    @property
    def real(self) -> str:
        if self._real is None:
            self._real = os.path.realpath(self.path)
        return self._real

    @property
    def identity(self) -> tuple[int, int] | None:
        if not self._looked_up:
            self._identity, self._looked_up = _identity(self.path), True
        return self._identity

    @property
    def ancestry(self) -> set[tuple[int, int]]:
        if self._ancestry is None:
            self._ancestry = _ancestry(self.path)
        return self._ancestry

    def location(self, table: list[MountEntry]) -> FsLocation | None:
        if self._table is not table:
            self._location, self._table = fs_location(self.path, table), table
        return self._location


def reaches(root: str, target: str, entries: list[MountEntry] | None = None) -> bool:
    """Does filesystem root ``root`` cover ``target``, or lie inside it, by any name?"""
    return _reaches(_Path(root), _Path(target), entries)


def _reaches(root: _Path, target: _Path, entries: list[MountEntry] | None) -> bool:
    if _inside(target, root) or _inside(root, target):
        return True
    table = entries if entries is not None else mount_entries()
    root_at, target_at = root.location(table), target.location(table)
    if root_at is None or target_at is None:
        return False
    return root_at.contains(target_at) or target_at.contains(root_at)


class ArtifactsReachable(LedgerReachable):
    """The artifact directory and a root the workload can reach overlap.

    A :class:`LedgerReachable` so that every caller that refuses a run for its ledger
    refuses it for its artifacts as well (nothing ran or was recorded: a usage mistake).
    """


def covering_root(path: str, lowered: LoweredParams) -> str | None:
    """The first host path the workload can reach (a bind of its private root, a Landlock
    rule) that reaches ``path`` by any name, if any."""
    entries = mount_entries()
    target = _Path(path)
    for root in lowered.reachable_paths():
        if _reaches(_Path(root), target, entries):
            return root
    return None


def linked_root(file: str, lowered: LoweredParams) -> tuple[str, int] | None:
    """A root the workload can reach on the filesystem of ``file`` when ``file`` has more
    than one hard link (so another of its names may lie inside that root), with the link
    count; None when it has one name, or no root shares its filesystem."""
    try:
        info = os.stat(file)
    except OSError:
        return None
    if info.st_nlink <= 1:
        return None
    for root in lowered.reachable_paths():
        try:
            if os.stat(root).st_dev == info.st_dev:
                return root, info.st_nlink
        except OSError:
            continue
    return None


def refuse_if_reachable(ledger_path: str, lowered: LoweredParams) -> None:
    """Raise :class:`LedgerReachable` (naming both paths) when ``covering_root`` finds one,
    or when a ledger file has another name (a hard link) a root could hold."""
    root = covering_root(ledger_path, lowered)
    if root is not None:
        raise LedgerReachable(
            f"the ledger {ledger_path} lies inside the filesystem root {root}, which the "
            "workload can reach (it could read other runs' output or damage the record); "
            "record elsewhere (--ledger DIR) or run from another directory"
        )
    for name in ("data.mdb", "lock.mdb"):
        linked = linked_root(os.path.join(ledger_path, name), lowered)
        if linked is not None:
            raise LedgerReachable(
                f"the ledger's {name} ({ledger_path}) has {linked[1]} hard links, and the "
                f"filesystem root {linked[0]}, which the workload can reach, is on its "
                "filesystem: another name for the store may lie inside it; remove the other "
                "links (find -samefile) or record elsewhere"
            )


def refuse_if_fds_reach(ledger_path: str, lowered: LoweredParams) -> None:
    """Refuse when an fd the spec keeps (``InheritedFds``) is one of the ledger's own files.

    The spec names fd *numbers*; in a process that has the ledger open, a number nobody
    opened on purpose can be LMDB's ``lock.mdb`` or ``data.mdb`` — read-write.
    """
    ledger_files: dict[tuple[int, int], str] = {}
    for name in ("data.mdb", "lock.mdb"):
        try:
            info = os.stat(os.path.join(ledger_path, name))
        except OSError:
            continue
        ledger_files[(info.st_dev, info.st_ino)] = name
    for fd in (fd for fd in lowered.keep_fds if fd > 2):
        try:
            info = os.fstat(fd)
        except OSError:
            continue  # not open: the launch itself refuses that
        held = ledger_files.get((info.st_dev, info.st_ino))
        if held is not None:
            raise LedgerReachable(
                f"inherited fd {fd} is the ledger's own {held} ({ledger_path}): the workload "
                "would get the evidence store read-write; pass the fd you meant to give"
            )


def refuse_if_plan_reaches(ledger_path: str, plan: BoundaryPlan) -> None:
    """Both refusals above for an admitted plan (unreadable params: the backend's)."""
    try:
        lowered = lowered_params(plan)
    except LoweringParamsError:
        return  # the backend refuses such a plan itself, and seals that
    refuse_if_reachable(ledger_path, lowered)
    refuse_if_fds_reach(ledger_path, lowered)


def refuse_if_key_reachable(key_path: str, plan: BoundaryPlan) -> None:
    """Raise :class:`KeyReachable` when a root of ``plan`` covers the signing key file or
    the directory holding it (unreadable params: the backend refuses the plan itself)."""
    try:
        lowered = lowered_params(plan)
    except LoweringParamsError:
        return
    if not lowered.filesystem_confined:
        raise KeyReachable(
            "the spec names no filesystem capability, so its workload can reach every file "
            f"your uid may, the checkpoint signing key {key_path} among them (it could read "
            "the key and sign a rewritten ledger); add a filesystem capability, or keep the "
            "key elsewhere and run it without one (--no-key)"
        )
    linked = linked_root(key_path, lowered)
    if linked is not None:
        raise KeyReachable(
            f"the checkpoint signing key {key_path} has {linked[1]} hard links, and the "
            f"filesystem root {linked[0]}, which the workload can reach, is on its "
            "filesystem: another name for the key may lie inside it; remove the other links"
        )
    for target in (key_path, os.path.dirname(os.path.abspath(key_path))):
        root = covering_root(target, lowered)
        if root is not None:
            raise KeyReachable(
                f"the checkpoint signing key {key_path} lies inside the filesystem root "
                f"{root}, which the workload can reach (it could sign a rewritten ledger or "
                "swap the key); keep the key elsewhere (--key FILE, BVISOR_KEY) or run from "
                "another directory"
            )


class ServiceReachable(LedgerReachable):
    """A root the workload can reach holds the directory of the caller's ``bvisor serve``.

    That directory holds the service's token and socket; the token is what keeps a
    sandbox from talking to the service, and a workload that may write there can put its
    own socket under the name every later ``bvisor run`` connects to.
    """


def refuse_if_service_reachable(service_dirs: tuple[str, ...], plan: BoundaryPlan) -> None:
    """Raise :class:`ServiceReachable` when a root of ``plan`` reaches one of
    ``service_dirs`` (the places the caller's service listens, those that exist) by any
    name; unreadable params: the backend refuses the plan itself."""
    try:
        lowered = lowered_params(plan)
    except LoweringParamsError:
        return
    for directory in service_dirs:
        root = covering_root(directory, lowered)
        if root is not None:
            raise ServiceReachable(
                f"the directory of your bvisor service {directory} (its token and socket) "
                f"lies inside the filesystem root {root}, which the workload can reach (it "
                "could read the token or put its own socket there); run from another "
                "directory, or set XDG_RUNTIME_DIR to a private directory of yours"
            )


def refuse_if_artifacts_reachable(artifact_dir: str | os.PathLike[str], plan: BoundaryPlan) -> None:
    """Refuse (:class:`ArtifactsReachable`) a committing plan whose roots overlap
    ``artifact_dir``, by any name (see :func:`reaches`), or hold a symlink on the way to it
    (:func:`_links_on_the_way`); a plan that commits nothing is not concerned."""
    try:
        lowered = lowered_params(plan)
    except LoweringParamsError:
        return  # the backend refuses such a plan itself, and seals that
    if not lowered.commits:
        return
    entries = mount_entries()
    target = os.fspath(artifact_dir)
    seen = _Path(target)
    for root in lowered.reachable_paths():
        if _reaches(_Path(root), seen, entries):
            raise ArtifactsReachable(
                f"the artifact directory {target} and the filesystem root {root}, which the "
                "workload can reach, overlap (it could tamper with committed artifacts); "
                "commit elsewhere (--artifacts DIR)"
            )
    for link in _links_on_the_way(target):
        parent = _Path(os.path.dirname(link))
        for root in lowered.reachable_paths():
            if _inside(parent, _Path(root)):
                raise ArtifactsReachable(
                    f"the artifact directory {target} is named through the symlink {link}, "
                    f"which lies in the filesystem root {root} the workload can reach (it "
                    "could re-point the link and have this run commit where it chooses); "
                    "name the directory by its real path, or commit elsewhere (--artifacts DIR)"
                )


def _links_on_the_way(path: str) -> list[str]:
    """Every symlink met resolving ``path`` (absolute), the links' own targets followed."""
    links: list[str] = []
    pending = os.path.abspath(path).split("/")[1:]
    current = "/"
    hops = 0
    while pending and hops < 64:
        part = pending.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            current = os.path.dirname(current)
            continue
        step = os.path.join(current, part)
        try:
            if not stat.S_ISLNK(os.lstat(step).st_mode):
                current = step
                continue
            target = os.readlink(step)
        except OSError:
            break  # the rest does not exist yet: nothing there to re-point
        links.append(step)
        hops += 1
        pending = [*target.split("/"), *pending]
        if target.startswith("/"):
            current = "/"
    return links


def _inside(path: _Path, root: _Path) -> bool:
    """Is ``path`` the directory ``root`` or beneath it, by real path or by identity?"""
    real_path, real_root = path.real, root.real
    if real_path == real_root or real_path.startswith(real_root.rstrip("/") + "/"):
        return True
    root_id = root.identity
    return root_id is not None and root_id in path.ancestry  # the ancestry holds path itself


class CodeReachable(LedgerReachable):
    """A write root of the plan covers code the host runs (see the module's docstring).

    A :class:`LedgerReachable` so that every caller that refuses a run for its ledger
    refuses it for this as well (nothing ran or was recorded: a usage mistake).
    """


def supervisor_code(launcher_path: str) -> tuple[str, ...]:
    """The places whose change would change what the next bvisor command runs: the
    directories of every module this process has loaded, ``sys.path`` (but its first entry
    when that is the start directory of a script, ``-m`` or ``-c``), the prefixes, the
    interpreter and the launcher file."""
    places: list[str] = [launcher_path, os.path.realpath(sys.executable)]
    places += [sys.prefix, sys.exec_prefix]
    places += _module_places()
    path = sys.path[1:] if _start_directory_first else sys.path
    places += [entry for entry in path if os.path.isabs(entry) and os.path.isdir(entry)]
    return tuple(dict.fromkeys(places))


# Is sys.path[0] still the directory Python put there for a script, -m or -c? Never under
# -P (safe_path); no longer once forget_start_directory removed it.
_start_directory_first = not sys.flags.safe_path


def forget_start_directory() -> None:
    """Remove the start directory from ``sys.path`` (a long-lived process, the service, is
    started in a directory a run may let its workload write), and from then on judge every
    entry: with the entry gone, ``sys.path[0]`` is a directory like any other (the first
    ``PYTHONPATH`` entry, say), and a workload writing there would reach later commands."""
    global _start_directory_first
    if _start_directory_first and sys.path:
        del sys.path[0]
    _start_directory_first = False


# The module walk's answer, kept with what it was read from: every loaded module by name
# and object (an import, a removal or a module replaced under its name changes it), and
# sys.path (a namespace package's __path__ follows it). A run walks ~300 modules'
# attributes for a few dozen directories, unchanged since the last run unless something
# was imported; a served copy inherits the service's. The places' files are still judged
# anew on every run (_judged_places): only the list of where to look is kept.
_module_walk: tuple[tuple[object, ...], tuple[str, ...]] = ((), ())


def _module_places() -> tuple[str, ...]:
    """The directories of every loaded module's file and every package's ``__path__``."""
    global _module_walk
    modules = list(sys.modules.items())
    key = (tuple(sys.path), *(name for name, _ in modules), *(id(m) for _, m in modules))
    if key == _module_walk[0]:
        return _module_walk[1]
    places: list[str] = []
    for _name, module in modules:
        file = getattr(module, "__file__", None)
        if isinstance(file, str) and os.path.isabs(file):
            places.append(os.path.dirname(file))
        path = getattr(module, "__path__", None)  # a list, or a namespace package's path
        if path is not None and not isinstance(path, str):
            places += [
                entry for entry in list(path) if isinstance(entry, str) and os.path.isabs(entry)
            ]
    found = tuple(dict.fromkeys(places))
    _module_walk = (key, found)
    return found


_Place = tuple[str, str, set[tuple[int, int]], FsLocation | None]
# place -> (its stat stamp, the mount table it was judged under, the judged place)
_PLACES: dict[str, tuple[tuple[int, int, int], tuple[MountEntry, ...], _Place]] = {}


def _judged_places(places: tuple[str, ...], entries: list[MountEntry]) -> list[_Place]:
    """Each place with its real path, its ancestors' identities and its location, reused
    while the place stats the same (device, inode, change time: a replaced directory or
    a re-pointed symlink anywhere on its path changes that) under the same mount table."""
    table = tuple(entries)
    judged: list[_Place] = []
    reals: set[str] = set()
    for place in places:
        try:
            info = os.stat(place)
        except OSError:
            continue  # gone: nothing to rewrite there (a new directory is a new stamp)
        stamp = (info.st_dev, info.st_ino, info.st_ctime_ns)
        held = _PLACES.get(place)
        if held is not None and held[0] == stamp and held[1] == table:
            item = held[2]
        else:
            real = os.path.realpath(place)
            item = (place, real, _ancestry(real), fs_location(real, entries))
            _PLACES[place] = (stamp, table, item)
        if item[1] not in reals:
            reals.add(item[1])
            judged.append(item)
    return judged


def judge_supervisor_code(launcher_path: str) -> None:
    """Judge the places of :func:`supervisor_code` now and keep them (as a check does).

    For ``bvisor serve``: each command runs in a copy forked from the service, which
    inherits what is judged here instead of judging every place anew (each copy still
    re-stats every place before it trusts what was kept, see :func:`_judged_places`)."""
    _judged_places(supervisor_code(launcher_path), mount_entries())


def refuse_if_code_reachable(plan: BoundaryPlan, launcher_path: str) -> None:
    """Raise :class:`CodeReachable` when a write root of ``plan`` covers a place of
    :func:`supervisor_code`, by any name (unreadable params: the backend's refusal)."""
    try:
        lowered = lowered_params(plan)
    except LoweringParamsError:
        return
    roots = lowered.writable_paths()
    if not roots:
        return
    entries = mount_entries()
    # covers() for every pair, with each path's real path, identities and location
    # worked out once (a run pays this on every launch).
    judged = [
        (root, os.path.realpath(root), _identity(root), fs_location(root, entries))
        for root in roots
    ]
    for place, real, ancestry, located in _judged_places(supervisor_code(launcher_path), entries):
        for root, real_root, root_id, root_at in judged:
            if (
                real == real_root
                or real.startswith(real_root.rstrip("/") + "/")
                or (root_id is not None and root_id in ancestry)
                or (root_at is not None and located is not None and root_at.contains(located))
            ):
                raise CodeReachable(
                    f"the write root {root} covers {place}, code the host runs (bvisor, its "
                    "interpreter or what they load): the workload could rewrite the next "
                    "bvisor command; run from another directory or grant it read-only"
                )
