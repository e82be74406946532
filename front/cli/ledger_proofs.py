"""The transparency subcommands of ``bvisor-ledger``: keys, checkpoints, proofs, attestations.

* ``keygen [--out DIR] [--name NAME]`` — a new Ed25519 signing key: ``DIR/checkpoint.key``
  (0600, never overwritten) and ``DIR/checkpoint.pub``, the verifier key
  ``NAME+KEYID+base64`` to hand to auditors and witnesses. DIR defaults to the data
  directory's ``keys/`` (where ``checkpoint`` and ``bvisor run`` look).
* ``checkpoint [--key FILE] [--rotate] [--new-log] [--out FILE]`` — sign the current head
  as a C2SP checkpoint, store it in the ledger and print the signed note. The key is
  ``--key``, else ``$BVISOR_KEY``, else the default key, created on first use. Refused when
  the ledger does not extend its last checkpoint, (without ``--rotate``) when that one was
  signed by another key, or (without ``--new-log``) when the key signed another log at this
  ledger's path (the ledger replaced, or rewritten under a fresh id). It never makes a
  ledger: a missing one is an error naming the path (exit 2), and no key is made then.
* ``consistency OLD [NEW] [--pub KEYFILE]`` (or ``--old-size N``) — the RFC 9162
  consistency proof from checkpoint OLD to NEW (default: the latest stored), printed as a
  C2SP tlog-witness ``add-checkpoint`` request (``old N``, one base64 hash per line, a blank
  line, the new checkpoint), ready for ``bvisor-witness add-checkpoint``. Exit 1 when the
  ledger does not extend OLD.
* ``prove RUN [--checkpoint FILE] [--out FILE]`` — a proof bundle of the run (its records,
  an inclusion proof for each, the signed checkpoint), checked by ``bvisor-replay --bundle``
  without the ledger. The checkpoint is the latest stored one unless given.
* ``attest RUN [--key FILE] [--out FILE]`` — audit the run against the latest stored
  checkpoint and, if verified, print an in-toto Statement v1 about it in a DSSE envelope
  signed with the key (``bvisor.replay.attest``).

``prove``, ``attest`` and ``consistency`` only read the ledger.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bvisor.front.cli.ledger_common import (
    PROG,
    NotFound,
    UsageError,
    emit,
    ledger_path,
    open_ledger,
    read_input,
    run_ref,
    say,
    signer_for,
    verifiers_for,
    write_output,
)
from bvisor.front.cli.usage import whole_number
from bvisor.ledger import LedgerError
from bvisor.ledger.checkpoint import SignedCheckpoint, ledger_origin, parse_checkpoint
from bvisor.ledger.note import NoteError
from bvisor.ledger.record import MAX_SEQ

__all__ = ["add_commands", "load_checkpoint"]

Add = Callable[[str, str], argparse.ArgumentParser]


def add_commands(add: Add) -> None:
    keygen = add("keygen", "make a checkpoint signing key (private 0600, public .pub)")
    keygen.add_argument("--out", metavar="DIR", help="directory (default: the data dir's keys/)")
    keygen.add_argument("--name", help="key name (default: HOSTNAME/bvisor-ledger)")
    keygen.set_defaults(handler=_cmd_keygen)

    sign = add("checkpoint", "sign the current head as a C2SP checkpoint and print it")
    sign.add_argument("--key", metavar="FILE", help="private key (default: $BVISOR_KEY or keys/)")
    sign.add_argument("--rotate", action="store_true", help="sign with a key new to this ledger")
    sign.add_argument(
        "--new-log",
        action="store_true",
        help="the ledger is new at a place where this key signed another one before",
    )
    sign.add_argument("--out", metavar="FILE", help="also write the checkpoint to FILE")
    sign.set_defaults(handler=_cmd_checkpoint)

    consistency = add("consistency", "prove a later checkpoint extends an earlier one")
    consistency.add_argument("old", nargs="?", metavar="OLD", help="the earlier checkpoint file")
    consistency.add_argument(
        "new", nargs="?", metavar="NEW", help="the later one (default: latest)"
    )
    consistency.add_argument(
        "--old-size", type=whole_number(0, MAX_SEQ + 1), metavar="N", help="instead of OLD: a size"
    )
    consistency.add_argument("--pub", metavar="KEYFILE", action="append", help="trusted key")
    consistency.set_defaults(handler=_cmd_consistency)

    prove = add("prove", "write a proof bundle of one run (checked offline by bvisor-replay)")
    prove.add_argument("run", metavar="RUN", help="run id or unique hex prefix")
    prove.add_argument("--checkpoint", metavar="FILE", help="prove against this checkpoint")
    prove.add_argument("--out", metavar="FILE", help="write the bundle here (default: stdout)")
    prove.set_defaults(handler=_cmd_prove)

    attest = add("attest", "an in-toto attestation of one verified run, in a DSSE envelope")
    attest.add_argument("run", metavar="RUN", help="run id or unique hex prefix")
    attest.add_argument("--key", metavar="FILE", help="private key (default: $BVISOR_KEY or keys/)")
    attest.add_argument("--out", metavar="FILE", help="write the envelope here (default: stdout)")
    attest.set_defaults(handler=_cmd_attest)


def load_checkpoint(path: str) -> SignedCheckpoint:
    """A checkpoint file given on the command line (a usage error when malformed)."""
    try:
        return parse_checkpoint(read_input(path, "checkpoint"))
    except NoteError as exc:
        raise UsageError(f"checkpoint {path}: {exc}") from None


# -- keys and checkpoints ---------------------------------------------------------------


def _cmd_keygen(args: argparse.Namespace) -> int:
    from bvisor.ledger.keys import default_key_name, write_keypair
    from bvisor.ledger.paths import KEY_FILE, default_key_path

    target = Path(args.out) / KEY_FILE if args.out else default_key_path()
    try:
        signer, pub = write_keypair(target, args.name or default_key_name())
    except LedgerError as exc:
        raise UsageError(str(exc)) from None
    if args.json:
        emit({"key": str(target), "pub": str(pub), "public_key": signer.verifier.text()})
    else:
        print(signer.verifier.text())
        print(f"{target}: private key; {pub}: public key", file=sys.stderr)
    return 0


def _cmd_checkpoint(args: argparse.Namespace) -> int:
    from bvisor.ledger.keys import remember, remembered, resolve_key_path

    # The ledger first: a missing one is an error naming it (a mistyped --ledger was made,
    # signed at size 0 and remembered as the key's place), before any key is made.
    with open_ledger(args, write=True) as ledger:
        signer = signer_for(args.key, create_default=True)
        key_path = resolve_key_path(args.key, must_exist=False)
        assert key_path is not None
        place = ledger_path(args)  # as the caller named it: a link there is bound too
        memory = remembered(key_path, ledger.ledger_id, place, new_log=bool(args.new_log))
        covered: list[bytes] = []
        signed = ledger.checkpoint(
            signer, rotate=bool(args.rotate), remembered=memory, covered_runs=covered
        )
    remember(key_path, signed, place)
    if args.out is not None:
        write_output(args.out, signed.text)
    if args.json:
        cp = signed.checkpoint
        emit(
            {
                "checkpoint": signed.text,
                "origin": cp.origin,
                "size": cp.size,
                "root": base64.b64encode(cp.root).decode("ascii"),
                "covered_runs": [run.hex() for run in covered],
            }
        )
    else:
        sys.stdout.write(signed.text)
        if covered:
            # What this signature vouches for that no earlier one did: the ledger held
            # these runs, which anyone who could write it may have appended.
            shown = ", ".join(run.hex()[:16] for run in covered[:20])
            more = f" and {len(covered) - 20} more" if len(covered) > 20 else ""
            print(
                f"{PROG}: this checkpoint is the first to cover {len(covered)} run(s): "
                f"{shown}{more}",
                file=sys.stderr,
            )
    return 0


def _latest(ledger: Any) -> SignedCheckpoint:
    """The largest well-formed stored checkpoint of this ledger kept under its own size,
    read from the top (not every one: a ledger signed at every run holds one per run). One
    of another log that a writer copied in is passed over (verify names it)."""
    with ledger.snapshot() as snap:
        found = next(snap.checkpoints_between(0, newest_first=True), None)
    if found is not None:
        return found  # type: ignore[no-any-return]
    raise NotFound("the ledger holds no checkpoint yet (run bvisor-ledger checkpoint)")


def _check_signatures(signed: list[SignedCheckpoint], pub: list[str] | None) -> None:
    verifiers = verifiers_for(pub)
    if not verifiers:
        return
    for item in signed:
        try:
            item.verified_by(verifiers)
        except NoteError as exc:
            raise NotFound(f"checkpoint of size {item.checkpoint.size}: {exc}") from None


def _cmd_consistency(args: argparse.Namespace) -> int:
    from bvisor.ledger.proofs import ProofUnavailable, proof_source

    if args.old_size is not None and args.new is None:
        args.old, args.new = None, args.old  # 'consistency --old-size N [NEW]'
    if (args.old is None) == (args.old_size is None):
        raise UsageError("consistency: give OLD (a checkpoint file) or --old-size N")
    old = None if args.old is None else load_checkpoint(args.old)
    with open_ledger(args) as ledger, proof_source(ledger) as source:
        origin = ledger_origin(ledger.ledger_id)
        if old is not None:
            if old.checkpoint.origin != origin:
                raise UsageError(f"OLD is for log {old.checkpoint.origin!r}, not {origin}")
            _check_signatures([old], args.pub)
            try:
                holds = source.root_matches(old.checkpoint.size, old.checkpoint.root)
            except ProofUnavailable as exc:
                raise NotFound(f"the ledger does not extend OLD: {exc}") from None
            if not holds:
                raise NotFound(
                    f"the ledger does not extend OLD: its tree at size {old.checkpoint.size} "
                    "has another root, so events OLD covered were changed (run bvisor-ledger "
                    "verify --checkpoint OLD)"
                )
        old_size = old.checkpoint.size if old is not None else args.old_size
        new = _latest(ledger) if args.new is None else load_checkpoint(args.new)
        if new.checkpoint.origin != origin:
            raise UsageError(f"NEW is for log {new.checkpoint.origin!r}, not {origin}")
        _check_signatures([new], args.pub)
        if old_size > new.checkpoint.size:
            raise NotFound(
                f"the latest checkpoint covers {new.checkpoint.size} events, fewer than OLD's "
                f"{old_size}: sign a newer one (bvisor-ledger checkpoint) or give NEW"
                if args.new is None
                else f"OLD has {old_size} events, more than NEW's {new.checkpoint.size}"
            )
        try:
            if not source.root_matches(new.checkpoint.size, new.checkpoint.root):
                raise NotFound(
                    f"the ledger's tree at size {new.checkpoint.size} is not NEW's: events "
                    "it covered were changed (run bvisor-ledger verify --checkpoint NEW)"
                )
            old_root = source.root(old_size) if old is None else old.checkpoint.root
            proof = source.consistency(old_size, new.checkpoint.size, old_root, new.checkpoint.root)
        except ProofUnavailable as exc:
            raise NotFound(f"no consistency proof: {exc}") from None
    lines = [f"old {old_size}", *(base64.b64encode(h).decode("ascii") for h in proof)]
    if args.json:
        emit(
            {
                "old_size": old_size,
                "new_size": new.checkpoint.size,
                "proof": lines[1:],
                "checkpoint": new.text,
            }
        )
    else:
        sys.stdout.write("\n".join(lines) + "\n\n" + new.text)
    return 0


# -- proofs of one run ------------------------------------------------------------------


def _run_proofs(
    ledger: Any, run_id: bytes, signed: SignedCheckpoint, seqs: list[int] | None = None
) -> list[Any]:
    """Inclusion proofs of the run's events (``seqs``, else those its index lists)."""
    from bvisor.ledger.proofs import ProofUnavailable, proof_source

    checkpoint = signed.checkpoint
    if checkpoint.origin != ledger_origin(ledger.ledger_id):
        raise UsageError(f"the checkpoint is for log {checkpoint.origin!r}, not this ledger")
    if seqs is None:
        seqs = ledger.run_seqs(run_id)
    if not seqs:
        raise NotFound(f"no events for run {run_id.hex()}")
    if seqs[-1] >= checkpoint.size:
        raise NotFound(
            f"run {run_id.hex()[:16]} (events up to {seqs[-1]}) is not yet covered by a signed "
            f"checkpoint (the latest covers events 0..{checkpoint.size - 1}); run "
            "bvisor-ledger checkpoint"
        )
    with proof_source(ledger) as source:
        try:
            return [source.inclusion(seq, checkpoint.size, checkpoint.root) for seq in seqs]
        except ProofUnavailable as exc:
            raise NotFound(str(exc)) from None


def _cmd_prove(args: argparse.Namespace) -> int:
    from bvisor.ledger.bundle import build_bundle

    with open_ledger(args) as ledger:
        run_id = run_ref(ledger, args.run, "RUN")
        assert run_id is not None
        signed = _latest(ledger) if args.checkpoint is None else load_checkpoint(args.checkpoint)
        proofs = _run_proofs(ledger, run_id, signed)
        bundle = build_bundle(ledger.ledger_id, run_id, signed, proofs)
    text = json.dumps(bundle, indent=1, sort_keys=True) + "\n"
    write_output(args.out, text)
    if args.out is not None and args.out != "-":
        summary = {"bundle": args.out, "run": run_id.hex(), "events": len(proofs)}
        if args.json:
            emit(summary)
        else:
            print(f"{args.out}: {len(proofs)} events of run {run_id.hex()[:16]}", file=sys.stderr)
    return 0


def _cmd_attest(args: argparse.Namespace) -> int:
    from bvisor.replay.anchored import CheckpointAnchor, audit_anchored
    from bvisor.replay.attest import envelope_for, statement

    signer = signer_for(args.key, create_default=False)
    with open_ledger(args) as ledger:
        run_id = run_ref(ledger, args.run, "RUN")
        assert run_id is not None
        signed = _latest(ledger)
        try:
            signed.verified_by([signer.verifier])
        except NoteError as exc:
            raise NotFound(f"the latest checkpoint is not this key's: {exc}") from None
        # With the key: the checkpoint signed with the run names it as the signer's own
        # (bvisor-recorded), and the statement says whether one does.
        anchor = CheckpointAnchor(signed, "signed by this key", (signer.verifier,))
        proven: dict[bytes, list[Any]] = {}
        report = audit_anchored(ledger, [run_id], anchor, proven=proven)
        if report.error is not None:
            raise NotFound(report.error)
        (audited,) = report.runs
        if not audited.ok:
            failing = "; ".join(f"{c.name}: {c.detail}" for c in audited.failing()[:3])
            raise NotFound(
                f"run {run_id.hex()[:16]} is {audited.verdict}, not attested ({failing})"
            )
        if audited.test_hooks:
            # Verified, since the record is faithful, but of a boundary with a mechanism
            # skipped on purpose: a statement for others to rely on would hide that.
            raise NotFound(
                f"run {run_id.hex()[:16]} ran with test hooks ({', '.join(audited.test_hooks)}): "
                "it is not evidence of a boundary, and is not attested"
            )
        # The events the audit proved, from its snapshot: a second read through the runs
        # index could be given fewer (a stream's chunk left out changes a subject).
        events = proven[run_id]
        proofs = _run_proofs(ledger, run_id, signed, [event.seq for event in events])
        recorded = audited.recorded_by_signer is True
        document = statement(ledger.ledger_id, run_id, events, signed, proofs, recorded)
    if not recorded:
        say(
            f"{PROG}: warning: no checkpoint of this key says its signer recorded run "
            f"{run_id.hex()[:16]} (every event) itself; the statement says so "
            "(recorded_by_signer: false)",
            file=sys.stderr,
        )
    envelope = envelope_for(document, signer)
    write_output(args.out, json.dumps(envelope, sort_keys=True) + "\n")
    return 0
