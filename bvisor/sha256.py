"""SHA-256 without OpenSSL, for a process that hashes little.

``import hashlib`` loads OpenSSL's libcrypto even to hash a few bytes: about 3.7 MiB of a
``bvisor run``'s resident memory, which its target is 27 MiB in all (benchmarks/targets.py
row g). A run hashes a few KiB with SHA-256 (its records' Merkle leaves and nodes, the
native module's source id), where CPython's own implementation is as fast. On long inputs
OpenSSL's is several times faster, so code that hashes a whole ledger asks for it
(:func:`bvisor.ledger.merkle.bulk_leaf_hash`). The digests are the same: it is SHA-256.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the same function as OpenSSL's, to a type checker
    from hashlib import sha256
else:
    try:
        from _sha256 import sha256  # CPython 3.11
    except ImportError:  # pragma: no cover - the interpreter's own module, renamed in 3.12
        try:
            from _sha2 import sha256
        except ImportError:  # an interpreter without one: OpenSSL's after all
            from hashlib import sha256

__all__ = ["sha256"]
