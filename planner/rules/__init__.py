"""Every released version of the planner rules, and which one plans today.

A new rule is a new version (a package ``vN`` beside the others); an old version is never
edited, because the digests of every run it planned depend on it. The planner plans with
:data:`CURRENT`; replay asks :func:`rules_for` for the version a run recorded, and a version
this build does not know is :class:`UnknownRulesVersion` — a verdict about this build, not
about the run's integrity.
"""

from __future__ import annotations

from collections.abc import Mapping

from bvisor.planner.rules import v1, v2, v3, v4
from bvisor.planner.rules.base import Request, Rules

__all__ = ["CURRENT", "RELEASED", "Request", "Rules", "UnknownRulesVersion", "rules_for"]


class UnknownRulesVersion(LookupError):
    """A plan names planner rules this build does not have."""

    def __init__(self, version: object) -> None:
        known = ", ".join(str(v) for v in sorted(RELEASED))
        super().__init__(
            f"planner rules version {version!r} is not known to this build (known: {known})"
        )
        self.version = version


RELEASED: Mapping[int, Rules] = {
    rules.version: rules for rules in (v1.RULES, v2.RULES, v3.RULES, v4.RULES)
}
CURRENT: Rules = RELEASED[max(RELEASED)]


def rules_for(version: object) -> Rules:
    """The released rules of ``version``; :class:`UnknownRulesVersion` if there are none."""
    if not isinstance(version, int) or isinstance(version, bool) or version not in RELEASED:
        raise UnknownRulesVersion(version)
    return RELEASED[version]
