"""DSSE envelopes (Dead Simple Signing Envelope v1) signed with the ledger's Ed25519 key.

The signature is over the pre-authentication encoding::

    PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body

(``LEN`` the ASCII decimal byte length), and the envelope is the JSON object
``{"payloadType", "payload": base64(body), "signatures": [{"keyid", "sig": base64}]}``.
``keyid`` is the signing key's ``NAME+KEYID`` (its verifier key without the key bytes), a
hint only: verifiers select the key themselves. Any stock DSSE verifier given the public
key checks these envelopes (the tests use securesystemslib's).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from typing import Any, Final

from bvisor.ledger.errors import LedgerError
from bvisor.ledger.note import Signer, Verifier

__all__ = [
    "INTOTO_PAYLOAD_TYPE",
    "DsseError",
    "key_hint",
    "pae",
    "sign_envelope",
    "verify_envelope",
]

INTOTO_PAYLOAD_TYPE: Final = "application/vnd.in-toto+json"


class DsseError(LedgerError):
    """An envelope that is malformed or not signed by a trusted key."""


def pae(payload_type: str, body: bytes) -> bytes:
    """The DSSE v1 pre-authentication encoding of ``(payload_type, body)``."""
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(body), body)


def key_hint(verifier: Verifier) -> str:
    """The ``keyid`` bvisor writes: ``NAME+KEYID8HEX``."""
    return f"{verifier.name}+{verifier.key_id.hex()}"


def sign_envelope(payload_type: str, body: bytes, signer: Signer) -> dict[str, Any]:
    """A DSSE envelope of ``body`` signed by ``signer``."""
    signature = signer.sign(pae(payload_type, body))
    return {
        "payloadType": payload_type,
        "payload": base64.b64encode(body).decode("ascii"),
        "signatures": [
            {"keyid": key_hint(signer.verifier), "sig": base64.b64encode(signature).decode("ascii")}
        ],
    }


def _b64(value: object, field: str) -> bytes:
    if not isinstance(value, str):
        raise DsseError(f"envelope: {field}: expected a base64 string")
    for decode in (base64.b64decode, base64.urlsafe_b64decode):  # DSSE allows either
        try:
            return decode(value.encode("ascii"))
        except (binascii.Error, UnicodeEncodeError, ValueError):
            continue
    raise DsseError(f"envelope: {field}: not base64")


def verify_envelope(
    envelope: object, verifiers: Sequence[Verifier], payload_type: str = INTOTO_PAYLOAD_TYPE
) -> tuple[bytes, list[Verifier]]:
    """The payload and the trusted keys whose signatures verify; DsseError if none does."""
    if not isinstance(envelope, dict):
        raise DsseError("envelope: expected a JSON object")
    if envelope.get("payloadType") != payload_type:
        raise DsseError(f"envelope: payloadType: expected {payload_type!r}")
    body = _b64(envelope.get("payload"), "payload")
    signatures = envelope.get("signatures")
    if not isinstance(signatures, list) or not signatures:
        raise DsseError("envelope: signatures: expected a non-empty list")
    message = pae(payload_type, body)
    accepted: list[Verifier] = []
    for index, item in enumerate(signatures):
        if not isinstance(item, dict):
            raise DsseError(f"envelope: signatures[{index}]: expected an object")
        signature = _b64(item.get("sig"), f"signatures[{index}].sig")
        for verifier in verifiers:
            if verifier not in accepted and verifier.verify(message, signature):
                accepted.append(verifier)
    if not accepted:
        raise DsseError("envelope: no signature by a trusted key")
    return body, accepted
