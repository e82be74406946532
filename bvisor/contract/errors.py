"""The one error type every contract check raises.

Contract values are built from user input (spec files, CLI flags) and from recorded
bytes (the ledger). Either way a bad value must become a clear message naming *where* it
is wrong — ``capabilities[2].policy: expected one of ...`` — never a traceback. The
``path`` is kept separate from the ``message`` so that a caller that builds a value from
a larger document can re-anchor the error under its own prefix (:meth:`under`) without
parsing strings. ``code`` is a stable machine-readable tag for the checks that callers
(and tests) need to tell apart, e.g. the six environment rules.
"""

from __future__ import annotations

__all__ = ["ContractError", "join_path"]


def join_path(prefix: str, suffix: str) -> str:
    """Join two key paths: ``a`` + ``b`` -> ``a.b``; ``a`` + ``[2]`` -> ``a[2]``."""
    if not prefix:
        return suffix
    if not suffix:
        return prefix
    if suffix.startswith("["):
        return prefix + suffix
    return f"{prefix}.{suffix}"


class ContractError(ValueError):
    """A contract value is invalid; ``str()`` is ``"path: message"``."""

    def __init__(self, path: str, message: str, code: str = "invalid") -> None:
        self.path = path
        self.message = message
        self.code = code
        super().__init__(f"{path}: {message}" if path else message)

    def under(self, prefix: str) -> ContractError:
        """The same error re-anchored beneath ``prefix`` (same class, message and code)."""
        clone = type(self).__new__(type(self))
        ContractError.__init__(clone, join_path(prefix, self.path), self.message, self.code)
        return clone

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.path, self.message, self.code))
