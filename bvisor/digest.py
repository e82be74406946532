"""Domain-separated BLAKE3 digests: one derive-key context string per purpose.

A digest computed for one purpose can never be replayed as a digest for another: the
context string is mixed into the key schedule (BLAKE3 derive-key mode), so a report seal
and a plan id over the same bytes differ. The contexts are fixed by DESIGN.md §3; adding a
purpose means adding a constant here, never reusing one.
"""

from __future__ import annotations

from enum import StrEnum

import blake3

from bvisor import canonical

__all__ = ["DIGEST_SIZE", "Purpose", "digest_bytes", "digest_value"]

DIGEST_SIZE = 32


class Purpose(StrEnum):
    """Every purpose a digest is taken for, with its BLAKE3 derive-key context."""

    PROFILE = "bvisor.profile.v1"
    ADMISSION = "bvisor.admission.v1"
    LOWERING = "bvisor.lowering.v1"
    PLAN = "bvisor.plan.v1"
    REPORT = "bvisor.report.v1"
    PRIMITIVE_DECL = "bvisor.primitive-decl.v1"
    PRIMITIVE_PARAMS = "bvisor.primitive-params.v1"
    LAUNCH = "bvisor.launch.v1"
    LEDGER_EVENT = "bvisor.ledger.event.v1"
    LEDGER_GENESIS = "bvisor.ledger.genesis.v1"
    STREAM = "bvisor.stream.v1"


def digest_bytes(purpose: Purpose, data: bytes) -> bytes:
    """The 32-byte BLAKE3 derive-key digest of raw ``data`` for ``purpose``."""
    hasher = blake3.blake3(derive_key_context=purpose.value)
    hasher.update(data)
    return hasher.digest(length=DIGEST_SIZE)


def digest_value(purpose: Purpose, value: object) -> bytes:
    """The digest of the canonical CBOR encoding of ``value`` for ``purpose``."""
    return digest_bytes(purpose, canonical.encode(value))
