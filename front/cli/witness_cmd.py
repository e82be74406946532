"""`bvisor-witness`: cosign checkpoints of logs it trusts, never two histories of one.

C2SP tlog-witness semantics as a local command (``bvisor.ledger.witness``); the state
directory defaults to ``$XDG_DATA_HOME/bvisor/witness`` (``--state DIR``):

* ``init [--name NAME]`` — make the witness's cosigning key (``witness.key`` 0600,
  ``witness.pub``: the verifier key to give to whoever checks cosignatures);
* ``add-log ORIGIN --pub LOGKEY`` — trust a log (its origin line and public key);
* ``add-checkpoint [FILE | -]`` — a tlog-witness request (``bvisor-ledger consistency``
  prints one): prints the cosignature line to append to the checkpoint, or refuses;
* ``state`` — each trusted log and the size it was last cosigned at;
* ``verify CHECKPOINT --pub WITNESSKEY`` — check the cosignatures on a checkpoint.

Every command but ``init`` (and ``verify``, which reads no state) needs the state directory
to exist; one that is missing or no directory is a usage error naming ``--state``, and an
``init`` that fails leaves no directory it made.

Exit status: 0 cosigned / ok; 1 refused (unknown log, not signed by the log's key, not the
size cosigned last — the answer names it —, a proof that does not verify, a forked size);
2 bad usage or a malformed request. ``--json`` gives ``{"ok", "status", ...}`` with the
tlog-witness HTTP status the answer corresponds to.
"""

from __future__ import annotations

import argparse
import json
import stat
import sys
from collections.abc import Sequence
from pathlib import Path

from bvisor.front.cli.stdio import EXIT_BROKEN_PIPE, check_std_streams, silence_stdout
from bvisor.front.cli.usage import Parser, UsageError, json_requested, report_error
from bvisor.ledger import LedgerError
from bvisor.ledger.paths import default_data_dir
from bvisor.ledger.witness import Witness

__all__ = ["build_parser", "main"]

PROG = "bvisor-witness"


_Usage = UsageError
_Parser = Parser


def build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument("--state", metavar="DIR", default=argparse.SUPPRESS, help="state dir")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS)
    parser = _Parser(prog=PROG, description="Cosign transparency-log checkpoints (C2SP).")
    parser.add_argument("--state", metavar="DIR", help="state directory")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    init = sub.add_parser("init", parents=[common], help="make the witness's cosigning key")
    init.add_argument("--name", help="witness name (default: HOSTNAME/bvisor-witness)")
    log = sub.add_parser("add-log", parents=[common], help="trust a log: origin and public key")
    log.add_argument("origin", metavar="ORIGIN")
    log.add_argument("--pub", metavar="LOGKEY", required=True)
    add = sub.add_parser("add-checkpoint", parents=[common], help="cosign a checkpoint")
    add.add_argument("request", nargs="?", default="-", metavar="FILE")
    sub.add_parser("state", parents=[common], help="the trusted logs and their sizes")
    check = sub.add_parser("verify", parents=[common], help="check cosignatures on a checkpoint")
    check.add_argument("checkpoint", metavar="CHECKPOINT")
    check.add_argument("--pub", metavar="WITNESSKEY", action="append", required=True)
    return parser


def _witness(args: argparse.Namespace) -> Witness:
    """The witness over ``--state`` (or the default directory), which every command but
    ``init`` needs to exist already: a mistyped path is named, never read as no logs."""
    root = Path(args.state) if args.state else default_data_dir() / "witness"
    where = f"--state {root}" if args.state else f"the witness state {root}"
    try:
        info = root.stat()
    except OSError as exc:
        if args.command != "init" or not isinstance(exc, FileNotFoundError):
            hint = f" (run '{PROG} init')" if isinstance(exc, FileNotFoundError) else ""
            raise _Usage(f"{where}: {exc.strerror or exc}{hint}") from None
        return Witness(root)
    if not stat.S_ISDIR(info.st_mode):
        raise _Usage(f"{where}: not a directory")
    return Witness(root)


def _emit(args: argparse.Namespace, document: dict[str, object], text: str) -> None:
    if args.json:
        print(json.dumps(document, sort_keys=True))
    elif text:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")


def _read(path: str) -> bytes:
    try:
        if path == "-":
            return sys.stdin.buffer.read(1 << 22)
        with open(path, "rb") as stream:
            return stream.read(1 << 22)
    except OSError as exc:
        raise _Usage(f"{path}: cannot read ({exc.strerror or exc})") from None


def _run(args: argparse.Namespace) -> int:
    from bvisor.ledger.checkpoint import parse_checkpoint
    from bvisor.ledger.keys import load_verifier
    from bvisor.ledger.note import ALG_COSIGNATURE
    from bvisor.ledger.witness import WitnessError, WitnessRefusal, verify_cosignatures

    if args.command == "verify":  # needs no state
        keys = [load_verifier(path, (ALG_COSIGNATURE,)) for path in args.pub]
        checkpoint = parse_checkpoint(_read(args.checkpoint))
        found = verify_cosignatures(checkpoint, keys)
        if not found:
            _emit(args, {"ok": False, "cosignatures": []}, "")
            print(f"{PROG}: no cosignature by the given witness keys", file=sys.stderr)
            return 1
        text = "\n".join(f"cosigned by {c.witness} at {c.timestamp}" for c in found)
        cosignatures = [{"witness": c.witness, "timestamp": c.timestamp} for c in found]
        _emit(args, {"ok": True, "cosignatures": cosignatures}, text)
        return 0
    witness = _witness(args)
    if args.command == "init":
        import socket

        host = "".join(c if c.isalnum() or c in "._-" else "-" for c in socket.gethostname())
        try:
            verifier = witness.init(args.name or f"{host or 'localhost'}/bvisor-witness")
        except WitnessError as exc:
            raise _Usage(f"{'--state' if args.state else 'init'}: {exc}") from None
        _emit(args, {"ok": True, "public_key": verifier.text()}, verifier.text())
        return 0
    if args.command == "add-log":
        state = witness.add_log(args.origin, load_verifier(args.pub))
        _emit(
            args,
            {"ok": True, "log": state.to_json()},
            f"trusting {state.origin} ({state.key.text()})",
        )
        return 0
    if args.command == "state":
        logs = witness.logs()
        lines = [f"{s.origin}  size {s.size}  key {s.key.name}+{s.key.key_id.hex()}" for s in logs]
        _emit(
            args, {"ok": True, "logs": [s.to_json() for s in logs]}, "\n".join(lines) or "no logs"
        )
        return 0
    try:
        line, state = witness.add_checkpoint(_read(args.request))
    except WitnessRefusal as exc:
        print(f"{PROG}: refused ({exc.status}): {exc}", file=sys.stderr)
        if args.json:
            document: dict[str, object] = {"ok": False, "status": exc.status, "error": str(exc)}
            if exc.size is not None:
                document["size"] = exc.size
            print(json.dumps(document, sort_keys=True))
        elif exc.size is not None:
            print(exc.size)  # the size to send as 'old' (text/x.tlog.size)
        return 2 if exc.status == 400 else 1
    _emit(args, {"ok": True, "status": 200, "cosignature": line, "size": state.size}, line)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    refused = check_std_streams(PROG)
    if refused is not None:
        return refused
    as_json = json_requested(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
    except _Usage as exc:
        return _fail(as_json, str(exc), 2)
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        return _run(args)
    except _Usage as exc:
        return _fail(bool(args.json), str(exc), 2)
    except LedgerError as exc:
        return _fail(bool(args.json), str(exc), 2)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        silence_stdout()
        return EXIT_BROKEN_PIPE


def _fail(as_json: bool, message: str, status: int) -> int:
    return report_error(PROG, message, as_json=as_json, status=status, document={"ok": False})


if __name__ == "__main__":
    sys.exit(main())
