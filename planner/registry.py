"""Backends and the registry the planner looks them up in.

A backend is what can probe a host into a :class:`ProfileSnapshot` and execute an
admitted plan. The protocol names only what the planner needs, ``id`` and ``probe``:
how a backend executes (its callbacks, its result type) is the runner's business, and
the runner checks the concrete backend type it can drive. One registry serves both.
The registry itself
is plain data: registering the Linux backend (which lives in ``launcher``) is the
caller's job, so ``planner`` never imports ``launcher``.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from bvisor.contract.profile import ProfileSnapshot
from bvisor.planner.errors import PlanRefusal

__all__ = ["Backend", "BackendRegistry"]


@runtime_checkable
class Backend(Protocol):
    """A confinement backend as the planner sees it: an id and a probe."""

    def id(self) -> str: ...

    def probe(self) -> ProfileSnapshot: ...


class BackendRegistry:
    """Backends by id; looking up an unknown id is a typed ``unknown-backend`` refusal."""

    def __init__(self) -> None:
        self._backends: dict[str, Backend] = {}

    def register(self, backend: Backend) -> None:
        """Add ``backend``; registering a second backend under the same id is an error."""
        backend_id = backend.id()
        if not isinstance(backend_id, str) or not backend_id:
            raise ValueError("a backend id must be a non-empty string")
        if backend_id in self._backends and self._backends[backend_id] is not backend:
            raise ValueError(f"a backend with id {backend_id!r} is already registered")
        self._backends[backend_id] = backend

    def get(self, backend_id: str) -> Backend:
        try:
            return self._backends[backend_id]
        except KeyError:
            known = ", ".join(self.ids()) or "none"
            raise PlanRefusal(
                "unknown-backend", f"no backend {backend_id!r} is registered (known: {known})"
            ) from None

    def ids(self) -> tuple[str, ...]:
        return tuple(sorted(self._backends))
