"""A report's observed facts by kind: the report check asks for one kind again and again.

The ``report`` check and the readers it calls (outputs, network) each want the details of
the facts of one kind, in report order; :func:`details` groups the body's facts once and
answers each from that (for the last body asked about: one run is judged at a time).
"""

from __future__ import annotations

from bvisor.contract.report import BoundaryReportBody

__all__ = ["details", "kinds"]

# The last body grouped, held with its grouping (an identity test finds it; one tuple,
# replaced whole, so a reader in another thread sees one or the other).
_last: tuple[BoundaryReportBody | None, dict[str, tuple[str, ...]]] = (None, {})


def _grouped(body: BoundaryReportBody) -> dict[str, tuple[str, ...]]:
    global _last
    last = _last
    if last[0] is body:
        return last[1]
    found: dict[str, list[str]] = {}
    for fact in body.observed:
        found.setdefault(fact.kind, []).append(fact.detail)
    grouped = {kind: tuple(found_details) for kind, found_details in found.items()}
    _last = (body, grouped)
    return grouped


def details(body: BoundaryReportBody, kind: str) -> tuple[str, ...]:
    """The details of ``body``'s observed facts of ``kind``, in report order."""
    return _grouped(body).get(kind, ())


def kinds(body: BoundaryReportBody) -> frozenset[str]:
    """Every kind of fact ``body`` observed."""
    return frozenset(_grouped(body))
