"""What every ``bvisor-ledger`` subcommand shares: exit classes, output, opening, keys.

Kept apart so the transparency subcommands (``bvisor.front.cli.ledger_proofs``) and the
original ones (``bvisor.front.cli.ledger_cmd``) use one definition of each: how a
usage mistake or a missing thing is reported, how JSON is written, how the ledger is
opened (read-only for every read command, saying so when LMDB's lock could not be used),
how a run is named by a prefix, and which signing key or trusted public keys apply.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from bvisor.canonical import Value
from bvisor.front.cli.usage import UsageError
from bvisor.ledger import Ledger, LedgerError, default_ledger_path
from bvisor.ledger.runs import RunLookupError, RunNotFound, resolve_in_ledger

if TYPE_CHECKING:
    from bvisor.ledger.note import Signer, Verifier

__all__ = [
    "NotFound",
    "UsageError",
    "emit",
    "ledger_path",
    "open_ledger",
    "read_input",
    "run_ref",
    "signer_for",
    "time_text",
    "to_json",
    "verifiers_for",
    "write_output",
]

PROG = "bvisor-ledger"
_MAX_INPUT = 512 * 1024 * 1024


class NotFound(Exception):
    """A requested seq or run does not exist, or the ledger is empty: exit 1."""


def emit(value: object) -> None:
    print(json.dumps(value, sort_keys=True))


def ledger_path(args: argparse.Namespace) -> Path:
    return Path(args.ledger) if args.ledger else default_ledger_path()


def open_ledger(args: argparse.Namespace, *, write: bool = False, create: bool = False) -> Ledger:
    """The ledger, read-only unless ``write``, made first only with ``create`` (a missing
    ledger is otherwise an error naming the path); a note on stderr when opened unlocked."""
    path = ledger_path(args)
    if write or create:
        return Ledger.open(path, create=create)
    ledger = Ledger.open(path, readonly=True)
    if ledger.unlocked:
        print(
            f"{PROG}: note: {path} was opened without LMDB's lock ({ledger.unlocked}); "
            "nothing is changed, but a writer appending at this moment could make what is "
            "read inconsistent (run the command again if so)",
            file=sys.stderr,
        )
    return ledger


def to_json(value: Value) -> Any:
    """A canonical value as JSON: byte strings become lowercase hex."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {key: to_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(item) for item in value]
    return value


def time_text(ns: int) -> str:
    try:
        moment = datetime.fromtimestamp(ns / 1_000_000_000, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return str(ns)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def run_ref(ledger: Ledger, text: str | None, where: str = "--run") -> bytes | None:
    """A recorded run named by its id or a unique hex prefix of it (O(log n))."""
    if text is None:
        return None
    try:
        return resolve_in_ledger(text, ledger)
    except RunNotFound as exc:
        raise NotFound(f"{where}: {exc}") from None
    except RunLookupError as exc:
        raise UsageError(f"{where}: {exc}") from None


def say(text: object = "", *, file: IO[str] | None = None) -> None:
    """One line of the command's own text: every character a terminal could obey in it
    escaped (:func:`bvisor.front.visible.visible`). A ledger's strings are chosen by
    whoever could write the ledger, so no text reaches the terminal any other way."""
    from bvisor.front.visible import visible

    print(visible(str(text)), file=file)


def read_input(path: str, what: str, limit: int = _MAX_INPUT) -> bytes:
    """A file given on the command line (``-``: stdin), at most ``limit`` bytes, naming it
    in errors; the one reader of every file argument, so a bound holds while reading,
    never after: a regular file larger than ``limit`` is refused before a byte is read,
    and only a regular file, a pipe, a socket or a terminal is read at all (``/dev/zero``
    would fill memory before a check after the read)."""
    try:
        if path == "-":
            stream = getattr(sys.stdin, "buffer", sys.stdin)
            try:
                fd = stream.fileno()
            except (AttributeError, io.UnsupportedOperation):  # a stream of the caller's
                data = stream.read(limit + 1)
                data = data.encode() if isinstance(data, str) else data
                if len(data) > limit:
                    raise UsageError(f"{what} {path}: larger than {limit} bytes") from None
                return bytes(data)
            return _read_bounded(fd, path, what, limit)
        with open(path, "rb") as stream:
            return _read_bounded(stream.fileno(), path, what, limit)
    except OSError as exc:
        raise UsageError(f"{what} {path}: cannot read ({exc.strerror or exc})") from None


def _read_bounded(fd: int, path: str, what: str, limit: int) -> bytes:
    import stat

    info = os.fstat(fd)
    kind = info.st_mode
    if stat.S_ISREG(kind):
        if info.st_size > limit:
            raise UsageError(f"{what} {path}: larger than {limit} bytes")
    elif not (stat.S_ISFIFO(kind) or stat.S_ISSOCK(kind) or os.isatty(fd)):
        raise UsageError(f"{what} {path}: not a regular file or a pipe")
    chunks: list[bytes] = []
    size = 0
    while size <= limit:
        chunk = os.read(fd, min(1 << 20, limit + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size > limit:
        raise UsageError(f"{what} {path}: larger than {limit} bytes")
    return b"".join(chunks)


def write_output(path: str | None, text: str) -> None:
    """``text`` to ``path`` (0644 less the umask, replacing it atomically), or to stdout.

    The file is written under a name of its own beside ``path`` and renamed over it. That
    name is random and made with ``O_EXCL | O_NOFOLLOW``, never opened if something is
    there already: found by attack, it was ``.<name>.<pid>.tmp`` opened as a plain ``open``
    would, so in a directory another user may write (``--out /tmp/bundle.json``) that
    user's links at the coming pids had root's command overwrite the file they pointed at
    (``/etc/shadow``), then leave the link as ``path``. The rename replaces whatever is at
    ``path`` itself (a link there is replaced, not followed).

    What the caller named to be written through is not replaced: found by attack, root's
    ``--out /dev/null`` replaced the host's device node with a file holding the bundle
    (and ``/dev/stdout``, a link, would have gone too). A device, FIFO, socket or link
    the caller or root owns outside a shared directory is written in place
    (:func:`_in_place`); a name that is no file's (``.``, ``/``) is refused."""
    if path is None or path == "-":
        sys.stdout.write(text)
        return
    import secrets

    target = Path(path)
    if not target.name or target.name in (".", ".."):
        raise UsageError(f"--out {path!r}: give a file name, not a directory")
    through = _in_place(target)
    if through is not None:
        try:
            fd = os.open(target, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC | through)
            with open(fd, "w", encoding="utf-8") as stream:
                stream.write(text)
        except OSError as exc:
            raise UsageError(f"--out {path}: cannot write ({exc.strerror or exc})") from None
        return
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    for _attempt in range(8):
        temporary = target.with_name(f".{target.name}.{secrets.token_hex(8)}.tmp")
        try:
            fd = os.open(temporary, flags, 0o644)
        except FileExistsError:
            continue  # someone's entry at that name: never opened, never removed
        except OSError as exc:
            raise UsageError(f"--out {path}: cannot write ({exc.strerror or exc})") from None
        break
    else:
        raise UsageError(f"--out {path}: cannot write (no free name beside it)")
    try:
        with open(fd, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, target)
    except OSError as exc:
        temporary.unlink(missing_ok=True)  # ours: made by this call with O_EXCL
        raise UsageError(f"--out {path}: cannot write ({exc.strerror or exc})") from None


def _in_place(target: Path) -> int | None:
    """The extra open flag (0, or ``O_NOFOLLOW``) when ``--out`` writes into what is at
    ``target`` rather than renaming a new file over it, else None: a device, FIFO, socket
    or link the caller or root owns in a directory only such a user may write
    (``/dev/null``, ``/dev/stdout``, the caller's FIFO), named to be written through and
    not to be replaced. In a directory others may write (``/tmp``) everything is replaced,
    never opened: whoever writes there could have made it, swapped it, or hard-linked a
    root-owned device there (where ``fs.protected_hardlinks`` is off), and a link could
    point at any file. So is an entry another user owns, a regular file (atomically) and
    nothing at all."""
    import stat

    try:
        found = os.lstat(target)
        parent = os.stat(target.parent)
    except OSError:
        return None
    if stat.S_ISREG(found.st_mode) or stat.S_ISDIR(found.st_mode):
        return None
    trusted = (0, os.geteuid())
    if parent.st_mode & (stat.S_IWGRP | stat.S_IWOTH) or parent.st_uid not in trusted:
        return None
    if found.st_uid not in trusted:
        return None
    return 0 if stat.S_ISLNK(found.st_mode) else os.O_NOFOLLOW


def signer_for(key: str | None, *, create_default: bool) -> Signer:
    """The signing key: ``--key``, ``$BVISOR_KEY``, or the default key (made on first use
    when ``create_default``: said on stderr, with the public key to hand out)."""
    from bvisor.ledger.keys import default_key_name, load_signer, resolve_key_path, write_keypair

    path = resolve_key_path(key, must_exist=not create_default)
    if path is None:
        raise UsageError(
            "no signing key: give --key FILE, set BVISOR_KEY, or run 'bvisor-ledger keygen'"
        )
    if not path.exists() and key is None and create_default and "BVISOR_KEY" not in os.environ:
        signer, pub = write_keypair(path, default_key_name())
        print(
            f"{PROG}: created a signing key at {path}; its public key is {pub}:\n"
            f"  {signer.verifier.text()}",
            file=sys.stderr,
        )
        return signer
    try:
        return load_signer(path)
    except LedgerError as exc:
        raise UsageError(str(exc)) from None


def verifiers_for(paths: list[str] | None) -> list[Verifier]:
    """The trusted public keys given with ``--pub`` (none: signatures are not checked)."""
    from bvisor.ledger.keys import load_verifier

    verifiers: list[Verifier] = []
    for path in paths or []:
        try:
            verifiers.append(load_verifier(path))
        except LedgerError as exc:
            raise UsageError(f"--pub: {exc}") from None
    return verifiers
