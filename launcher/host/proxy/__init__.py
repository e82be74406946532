"""The network allow list's proxy, on the host side of a run.

The workload's network namespace is empty but for one listener on its loopback, made in
the child window and handed to the host (``linux.netproxy.v1``). This package accepts
the workload's connections there (HTTP ``CONNECT``, plain HTTP by its ``Host``, SOCKS5),
judges each against the plan's allow list, opens the allowed ones from the host's own
namespace to exactly the address it judged, relays and counts the bytes, and records every
decision. :class:`ProxySession` is one run's proxy; :mod:`.requests` reads what is asked,
:mod:`.relay` moves the bytes.
"""

from __future__ import annotations

from bvisor.launcher.host.proxy.session import (
    MAX_CONNECTIONS,
    MAX_DECISIONS,
    DecisionSink,
    ProxyResult,
    ProxySession,
)

__all__ = ["MAX_CONNECTIONS", "MAX_DECISIONS", "DecisionSink", "ProxyResult", "ProxySession"]
