"""in-toto attestations of recorded runs: a Statement v1 about what a run produced.

``bvisor-ledger attest RUN`` audits the run against the ledger's signed checkpoint
(``bvisor.replay.anchored``) and only for a ``verified`` run builds this statement
(docs/FORMATS.md, "Attestation"), then signs it in a DSSE envelope
(``bvisor.ledger.dsse``, payload type ``application/vnd.in-toto+json``) with the same key
that signs checkpoints::

    {"_type": "https://in-toto.io/Statement/v1",
     "subject": [{"name": "stdout", "digest": {"sha256": "<hex>"}}, ...],
     "predicateType": "https://bvisor.dev/attestation/run/v1",
     "predicate": {
       "ledger_id", "run_id", "outcome", "exit", "recorded_by_signer",
       "plan": {"plan_id", "h_p", "h_a", "h_l", "backend", "schema_version"},
       "report": {"body": <the sealed body, byte strings as hex>, "seal": "<hex>"},
       "streams": [{"name", "length", "captured", "truncated"}],
       "inclusion": {"checkpoint": "<signed note>", "tree_size": N,
                     "events": [{"seq", "kind", "leaf_hash": "<hex>",
                                 "proof": ["<base64>", ...]}],
                     "sealed_record": "<hex of the report.sealed record>"}}}

Subjects are the captured streams (SHA-256 of the bytes kept); this backend records no
artifacts (the report's ``artifacts`` list, in the predicate, is empty). The inclusion
part lets a verifier with only the public key tie the statement to the signed ledger:
every event of the run is a leaf of the signed tree, and the report is the payload of
the ``report.sealed`` record, whose leaf hash it can recompute. ``recorded_by_signer`` is
the signer's word that a checkpoint of its key names every event of the run as its own
(``bvisor-recorded``); false for a run it only covers (recorded without a key, or by
whoever else could write the ledger).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from typing import Any, Final

from bvisor.canonical import Value
from bvisor.contract.events import REPORT_SEALED
from bvisor.ledger.checkpoint import SignedCheckpoint
from bvisor.ledger.dsse import INTOTO_PAYLOAD_TYPE, sign_envelope
from bvisor.ledger.merkle import leaf_hash
from bvisor.ledger.note import Signer
from bvisor.ledger.proofs import RecordProof
from bvisor.ledger.record import Event
from bvisor.replay.events import parse_run

__all__ = ["PREDICATE_TYPE", "STATEMENT_TYPE", "envelope_for", "statement"]

STATEMENT_TYPE: Final = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE: Final = "https://bvisor.dev/attestation/run/v1"


def _json(value: Value) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {key: _json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json(item) for item in value]
    return value


def statement(
    ledger_id: bytes,
    run_id: bytes,
    events: Sequence[Event],
    signed: SignedCheckpoint,
    proofs: Sequence[RecordProof],
    recorded_by_signer: bool = False,
) -> dict[str, Any]:
    """The in-toto Statement of a verified, completed run (see module)."""
    parsed = parse_run(run_id, events)
    admitted, sealed, terminal = parsed.admitted, parsed.sealed, parsed.terminal
    if admitted is None or sealed is None or terminal is None:
        raise ValueError("only a completed, admitted run can be attested")
    captured: dict[str, bytearray] = {}
    for chunk in parsed.streams:
        captured.setdefault(chunk.stream, bytearray()).extend(chunk.data)
    subjects = [
        {"name": name, "digest": {"sha256": hashlib.sha256(bytes(data)).hexdigest()}}
        for name, data in sorted(captured.items())
    ]
    by_seq = {proof.seq: proof for proof in proofs}
    sealed_event = next(e for e in reversed(events) if e.kind == REPORT_SEALED)
    inclusion = {
        "checkpoint": signed.text,
        "tree_size": signed.checkpoint.size,
        "events": [
            {
                "seq": event.seq,
                "kind": event.kind,
                "leaf_hash": leaf_hash(event.raw).hex(),
                "proof": [base64.b64encode(h).decode("ascii") for h in by_seq[event.seq].path],
            }
            for event in events
        ],
        "sealed_record": sealed_event.raw.hex(),
    }
    body = sealed.body
    predicate = {
        "ledger_id": ledger_id.hex(),
        "run_id": run_id.hex(),
        "outcome": terminal.outcome.value,
        "exit": None if terminal.exit is None else _json(terminal.exit.to_value()),
        "recorded_by_signer": recorded_by_signer,
        "plan": {
            "plan_id": admitted.plan_id.hex(),
            "h_p": admitted.h_p.hex(),
            "h_a": admitted.h_a.hex(),
            "h_l": admitted.h_l.hex(),
            "backend": admitted.backend,
            "schema_version": admitted.schema_version,
        },
        "report": {"body": _json(body.to_value()), "seal": sealed.seal.hex()},
        "streams": [
            {
                "name": record.name,
                "length": record.length,
                "captured": record.captured,
                "truncated": record.truncated,
            }
            for record in body.streams
        ],
        "inclusion": inclusion,
    }
    return {
        "_type": STATEMENT_TYPE,
        "subject": subjects,
        "predicateType": PREDICATE_TYPE,
        "predicate": predicate,
    }


def envelope_for(document: dict[str, Any], signer: Signer) -> dict[str, Any]:
    """The DSSE envelope of a statement (compact, key-sorted JSON as the payload)."""
    body = json.dumps(document, sort_keys=True, separators=(",", ":")).encode("utf-8")
    return sign_envelope(INTOTO_PAYLOAD_TYPE, body, signer)
