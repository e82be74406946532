"""The launch envelope: magic, version, length and digest around the canonical body bytes.

Layout (all integers big-endian)::

    magic    8 bytes  b"BVLAUNCH"
    version  2 bytes  ENVELOPE_VERSION
    length   4 bytes  number of body bytes that follow
    digest  32 bytes  bvisor.launch.v1 digest of the body bytes
    body     length bytes (canonical CBOR of LaunchBody.to_value())

The launcher checks these in this order and each failure is a distinct refusal code, so a
report says *why* a plan was not trusted: a short read, a foreign file, a protocol from
another release, a torn or padded write, or bytes that are not the ones the host digested.
"""

from __future__ import annotations

import struct

from bvisor.digest import DIGEST_SIZE, Purpose, digest_bytes

__all__ = [
    "ENVELOPE_VERSION",
    "HEADER_SIZE",
    "MAGIC",
    "MAX_BODY",
    "EnvelopeError",
    "open_envelope",
    "seal",
]

MAGIC = b"BVLAUNCH"
ENVELOPE_VERSION = 3  # 3: the schedule and its typed parameters are the whole program
_HEADER = struct.Struct(">8sHI32s")
HEADER_SIZE = _HEADER.size
MAX_BODY = 16 * 1024 * 1024


class EnvelopeError(ValueError):
    """The envelope is not acceptable; ``code`` is a stable kebab-case refusal code."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


def seal(body: bytes) -> bytes:
    """Wrap canonical body bytes in an envelope."""
    if len(body) > MAX_BODY:
        raise EnvelopeError("envelope-too-large", f"body of {len(body)} bytes exceeds {MAX_BODY}")
    digest = digest_bytes(Purpose.LAUNCH, body)
    return _HEADER.pack(MAGIC, ENVELOPE_VERSION, len(body), digest) + body


def open_envelope(data: bytes) -> bytes:
    """Return the body bytes, or raise EnvelopeError naming the first check that failed."""
    import hmac  # the launcher's side only: it loads OpenSSL, which the host need not

    if len(data) < HEADER_SIZE:
        raise EnvelopeError(
            "envelope-truncated", f"{len(data)} bytes is shorter than the {HEADER_SIZE}-byte header"
        )
    magic, version, length, digest = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise EnvelopeError("envelope-bad-magic", f"magic {magic!r} is not {MAGIC!r}")
    if version != ENVELOPE_VERSION:
        raise EnvelopeError(
            "envelope-unknown-version",
            f"version {version} (this launcher speaks {ENVELOPE_VERSION})",
        )
    if length > MAX_BODY:
        raise EnvelopeError(
            "envelope-length-mismatch", f"declared length {length} exceeds {MAX_BODY}"
        )
    actual = len(data) - HEADER_SIZE
    if actual != length:
        raise EnvelopeError(
            "envelope-length-mismatch", f"header declares {length} body bytes, {actual} present"
        )
    body = data[HEADER_SIZE:]
    expected = digest_bytes(Purpose.LAUNCH, body)
    assert len(expected) == DIGEST_SIZE
    if not hmac.compare_digest(expected, digest):
        raise EnvelopeError("envelope-digest-mismatch", "body bytes do not match the header digest")
    return body
