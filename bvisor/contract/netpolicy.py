"""What a network allow list decides, and how each decision is recorded.

One definition for three readers: the host's proxy asks :func:`judge` before it opens a
connection, the runner records every decision as a :class:`NetworkDecision` (a
``network.decision`` ledger event and a ``network_activity`` fact of the report), and
replay asks :func:`judge` again on the recorded destination and address and must get the
recorded verdict. The judgement is a pure function of the entries, the destination as
asked and the address it would connect to; only the resolution of a name is not, and the
address it gave is recorded with the decision.

Rules (the allow list's meaning; default deny):

* a destination asked **by name** is matched against the name entries (``host``,
  ``*.domain``, ``*``); an unlisted name is refused *before* it is resolved, so a
  workload cannot make the host look up names of its choosing. A listed name is resolved
  by the proxy, which connects to exactly the address it judged (pinning);
* a destination asked **by address** is matched against the address and network entries
  (and ``*``);
* an address in one of :data:`REFUSED_RANGES` (private, loopback, link-local, cloud
  metadata, documentation, multicast, ...) is refused unless an address or network entry
  on that port contains it: naming a host is not naming its address, so a listed name that
  resolves to ``127.0.0.1`` or ``169.254.169.254`` (DNS rebinding) stays refused.

* a DNS question (rules v3, ``linux.netdns.v1``) is answered for a name a name entry on
  any port lists, with one address of the asked family, refused ranges judged as above
  (:func:`judge_name`); any other name is refused unresolved. Its decision (``via``
  ``dns``, ``port`` the resolver's) carries no bytes;
* an address that :func:`judge` refuses is still allowed when the resolver answered it for
  a name that would be allowed on that port at that address (:func:`judge_answered`,
  reason ``answered``): a tool that resolved first and then asks by address reaches just
  what the name would have.

The ranges are written out here, not taken from :mod:`ipaddress`'s ``is_private`` or
``is_global``, whose tables differ between Python releases: a recorded decision must
re-judge the same way on every later release.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from bvisor import canonical
from bvisor.contract._wire import expect_int, expect_map, expect_text
from bvisor.contract.endpoints import (
    ADDRESS,
    ANY,
    NAME,
    NETWORK,
    SUFFIX,
    Address,
    Endpoint,
    is_host_name,
    parse_address,
    parse_endpoint,
)
from bvisor.contract.errors import ContractError
from bvisor.contract.report import ObservedFact

__all__ = [
    "ACTIVITY_FACT",
    "ANSWERED",
    "BAD_REQUEST",
    "BUDGET_EXHAUSTED",
    "DNS",
    "LISTED",
    "NOT_LISTED",
    "POLICY_REASONS",
    "REASONS",
    "REFUSED_RANGE",
    "REFUSED_RANGES",
    "UNRESOLVED",
    "VIAS",
    "Answers",
    "Judgement",
    "NetworkDecision",
    "activity_fact",
    "connect_charge",
    "destination_text",
    "judge",
    "judge_answered",
    "judge_name",
    "lookup_charge",
    "names_address",
    "normal_host",
    "parse_entries",
    "refused_range",
]

# The report fact that restates each decision (its ledger event is
# bvisor.contract.events.NETWORK_DECISION).
ACTIVITY_FACT: Final = "network_activity"

# How the workload asked: HTTP CONNECT, a plain HTTP request (by its Host), SOCKS5 CONNECT,
# or a DNS question to the allow list's resolver (``linux.netdns.v1``; rules v3).
VIAS: Final = ("http-connect", "http", "socks5", "dns")
DNS: Final = "dns"

# Reasons a judgement gives (re-checked by replay) ...
LISTED: Final = "listed"
NOT_LISTED: Final = "not-listed"
REFUSED_RANGE: Final = "refused-range"
UNRESOLVED: Final = "unresolved"
# An address asked for that no entry names, allowed because the resolver answered it for
# a listed name earlier in the run (the decision cites that name's entry).
ANSWERED: Final = "answered"
POLICY_REASONS: Final = (LISTED, NOT_LISTED, REFUSED_RANGE, UNRESOLVED, ANSWERED)
# ... and reasons the proxy refuses for before any destination can be judged.
BAD_REQUEST: Final = "bad-request"
BUDGET_EXHAUSTED: Final = "budget-exhausted"
REASONS: Final = (*POLICY_REASONS, BAD_REQUEST, BUDGET_EXHAUSTED)

_MAX_HOST: Final = 255
_MAX_ERROR: Final = 200

# (network, label): refused unless an address or network entry names the address.
REFUSED_RANGES: Final[tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str], ...]] = (
    tuple(
        (ipaddress.ip_network(net), label)
        for net, label in (
            ("0.0.0.0/8", "this-network"),
            ("10.0.0.0/8", "private"),
            ("100.64.0.0/10", "shared-address-space"),  # CGNAT; Alibaba metadata lives here
            ("127.0.0.0/8", "loopback"),
            ("168.63.129.16/32", "metadata"),  # Azure's host endpoint, a public address
            ("169.254.0.0/16", "link-local"),  # 169.254.169.254: AWS, GCP, Azure metadata
            ("172.16.0.0/12", "private"),
            ("192.0.0.0/24", "protocol-assignments"),  # 192.0.0.192: Oracle metadata
            ("192.0.2.0/24", "documentation"),
            ("192.88.99.0/24", "relay-anycast"),
            ("192.168.0.0/16", "private"),
            ("198.18.0.0/15", "benchmarking"),
            ("198.51.100.0/24", "documentation"),
            ("203.0.113.0/24", "documentation"),
            ("224.0.0.0/4", "multicast"),
            ("240.0.0.0/4", "reserved"),  # 255.255.255.255 included
            ("::/128", "unspecified"),
            ("::1/128", "loopback"),
            ("64:ff9b::/96", "nat64"),  # embeds an IPv4 address of any class
            ("64:ff9b:1::/48", "nat64"),
            ("100::/64", "discard"),
            ("2001::/23", "protocol-assignments"),  # Teredo included
            ("2001:db8::/32", "documentation"),
            ("2002::/16", "6to4"),  # embeds an IPv4 address of any class
            ("fc00::/7", "unique-local"),  # fd00:ec2::254: AWS metadata over IPv6
            ("fe80::/10", "link-local"),
            ("fec0::/10", "site-local"),
            ("ff00::/8", "multicast"),
        )
    )
)


def refused_range(address: Address) -> str | None:
    """The label of the refused range holding ``address``, or None for a public address."""
    for network, label in REFUSED_RANGES:
        if address.version == network.version and address in network:
            return label
    return None


def normal_host(text: str) -> str | None:
    """A destination host as the proxy judges it: an address literal in canonical form or
    a lower-case host name without its trailing dot; None when it is neither."""
    host = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    address = parse_address(host)
    if address is not None:
        return address.compressed
    name = host.lower().removesuffix(".")
    return name if name and is_host_name(name) and not name.replace(".", "").isdigit() else None


def parse_entries(texts: Sequence[str]) -> tuple[Endpoint, ...]:
    """The plan's canonical entry texts, parsed (the order is the plan's)."""
    return tuple(parse_endpoint(text, f"allow[{i}]") for i, text in enumerate(texts))


@dataclass(frozen=True, slots=True)
class Judgement:
    """``verdict`` is ``allow`` or ``deny``; ``entry`` the entry that matched, if any."""

    verdict: str
    reason: str
    entry: str | None

    @property
    def allowed(self) -> bool:
        return self.verdict == "allow"


def _on_port(entries: Sequence[Endpoint], port: int) -> list[Endpoint]:
    return [e for e in entries if e.protocol == "tcp" and e.port == port]


def names_address(entries: Sequence[Endpoint], address: Address, port: int) -> bool:
    """Does an address or network entry on ``port`` name ``address`` explicitly? Only such
    an entry opens an address the list otherwise keeps shut: one in a refused range, or
    (the proxy's own rule at connect time) one of the host's own addresses."""
    return any(
        e.kind in (ADDRESS, NETWORK) and e.contains(address) for e in _on_port(entries, port)
    )


def _most_specific(name: str, candidates: Sequence[Endpoint]) -> Endpoint | None:
    """The name entry that names ``name`` most closely: the name itself, else the longest
    matching ``*.domain``, else ``*`` (so the entry a decision cites does not depend on
    the order entries sort in)."""
    matching = [e for e in candidates if e.kind not in (ADDRESS, NETWORK) and e.matches_name(name)]
    if not matching:
        return None
    rank = {NAME: 2, SUFFIX: 1, ANY: 0}
    return max(matching, key=lambda e: (rank[e.kind], len(e.host)))


def judge(entries: Sequence[Endpoint], host: str, port: int, address: str | None) -> Judgement:
    """Decide one TCP destination (``host`` as :func:`normal_host` gives it).

    ``address`` is where the proxy would connect: for a name, the address it resolved
    (None before resolution or when it failed); for an address, that address.
    """
    candidates = _on_port(entries, port)
    literal = parse_address(host)
    explicit = [e for e in candidates if e.kind in (ADDRESS, NETWORK)]
    if literal is not None:
        named = next((e for e in explicit if e.contains(literal)), None)
        if named is not None:
            return Judgement("allow", LISTED, named.text)
        anywhere = next((e for e in candidates if e.kind == ANY), None)
        if anywhere is None:
            return Judgement("deny", NOT_LISTED, None)
        if refused_range(literal) is not None:
            return Judgement("deny", REFUSED_RANGE, anywhere.text)
        return Judgement("allow", LISTED, anywhere.text)
    match = _most_specific(host, candidates)
    if match is None:
        return Judgement("deny", NOT_LISTED, None)
    resolved = None if address is None else parse_address(address)
    if resolved is None:
        return Judgement("deny", UNRESOLVED, match.text)
    if refused_range(resolved) is not None and not names_address(entries, resolved, port):
        return Judgement("deny", REFUSED_RANGE, match.text)
    return Judgement("allow", LISTED, match.text)


def judge_name(entries: Sequence[Endpoint], name: str, address: str | None) -> Judgement:
    """Decide one DNS question for ``name`` (as :func:`normal_host` gives it).

    A name is answered when a name entry on *any* port lists it (the most specific such
    entry is cited); an address literal or an unlisted name is refused before it is
    resolved. ``address`` is the one address the resolver would answer (None when the
    host's resolver had none of the asked family); it is refused in a refused range unless
    an address or network entry on any port contains it, as a connection's would be.
    """
    candidates = [e for e in entries if e.protocol == "tcp"]
    if parse_address(name) is not None:
        return Judgement("deny", NOT_LISTED, None)
    match = _most_specific(name, candidates)
    if match is None:
        return Judgement("deny", NOT_LISTED, None)
    resolved = None if address is None else parse_address(address)
    if resolved is None:
        return Judgement("deny", UNRESOLVED, match.text)
    explicit = [e for e in candidates if e.kind in (ADDRESS, NETWORK)]
    if refused_range(resolved) is not None and not any(e.contains(resolved) for e in explicit):
        return Judgement("deny", REFUSED_RANGE, match.text)
    return Judgement("allow", LISTED, match.text)


def judge_answered(
    entries: Sequence[Endpoint], address: str, port: int, answered: Sequence[str]
) -> Judgement | None:
    """An address-literal destination that :func:`judge` refused, allowed by an answer.

    ``answered`` are the names the resolver answered with exactly ``address`` earlier in
    the run, in the order it answered them; the first whose name would be allowed on
    ``port`` at that address decides (reason :data:`ANSWERED`, citing its entry). None
    when no answer allows it: :func:`judge`'s refusal stands.
    """
    for name in answered:
        judged = judge(entries, name, port, address)
        if judged.allowed:
            return Judgement("allow", ANSWERED, judged.entry)
    return None


class Answers:
    """The addresses the resolver answered in one run, kept as :func:`judge_answered`
    reads them: the proxy adds each answer as it is recorded and asks before each
    address-literal connection; replay adds them in record order and asks the same.

    Each (name, address) pair is kept once, and the first name that opens an address on a
    port is remembered (names only ever join the end, so it stays the first): a run's
    4096 decisions cost linear time to judge, not quadratic.
    """

    __slots__ = ("_names", "_opened", "_pairs")

    def __init__(self) -> None:
        self._names: dict[str, list[str]] = {}
        self._pairs: set[tuple[str, str]] = set()
        self._opened: dict[tuple[str, int], tuple[int, Judgement | None]] = {}

    def add(self, name: str, address: str) -> None:
        if (name, address) not in self._pairs:
            self._pairs.add((name, address))
            self._names.setdefault(address, []).append(name)

    def opens(self, entries: Sequence[Endpoint], address: str, port: int) -> Judgement | None:
        """:func:`judge_answered` over every name answered with ``address`` so far."""
        names = self._names.get(address, [])
        checked, found = self._opened.get((address, port), (0, None))
        if found is None and checked < len(names):
            found = judge_answered(entries, address, port, names[checked:])
            self._opened[(address, port)] = (len(names), found)
        return found


def destination_text(host: str, port: int) -> str:
    """``host:port`` with an IPv6 host in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _opt_text(value: object, path: str, limit: int) -> str | None:
    if value is None:
        return None
    text = expect_text(value, path)
    if len(text) > limit:
        raise ContractError(path, f"longer than {limit} characters", "too-long")
    return text


def lookup_charge(host: str) -> int:
    """What looking ``host`` up for the workload costs its network budget: the name's
    bytes, which leave the host in the question to the host's resolver. A name the
    workload chooses below a listed wildcard carries whatever it writes into it, so the
    lookup is charged (and refused once the budget cannot pay for it) like a connection's
    bytes. Runs recorded before names were charged carry 0 for it."""
    return len(host.encode("utf-8", "surrogateescape"))


def connect_charge(address: str) -> int:
    """What opening a connection for the workload costs its network budget: the
    destination's address and port, which leave the host in the connection's first packet
    whether or not a byte follows. A destination the workload chooses (any address under
    ``*:port`` or a network entry) carries what it writes into it: without a charge a run
    could say up to 4096 addresses' worth past any budget by the addresses it connects to.
    Runs recorded before connections were charged carry 0 for it."""
    return len(ipaddress.ip_address(address).packed) + 2


@dataclass(frozen=True, slots=True)
class NetworkDecision:
    """One connection the proxy was asked for: what was asked, what was decided, what went
    through. ``sent``: bytes from the workload to the destination, the name's lookup
    (:func:`lookup_charge`) included when the host looked it up and the destination's
    (:func:`connect_charge`) when it opened a connection; ``received``: back.
    A DNS question or a denial moves nothing but that lookup. ``error``: why an allowed
    connection failed or ended early (a connect error, the network budget cutting it), or
    how a bad request was bad."""

    via: str
    host: str
    port: int
    address: str | None
    verdict: str
    reason: str
    entry: str | None
    sent: int
    received: int
    error: str | None

    def __post_init__(self) -> None:
        if self.via not in VIAS:
            raise ContractError("via", f"expected one of {', '.join(VIAS)}", "unknown-variant")
        if self.verdict not in ("allow", "deny"):
            raise ContractError("verdict", "expected allow or deny", "unknown-variant")
        if self.reason not in REASONS:
            raise ContractError(
                "reason", f"expected one of {', '.join(REASONS)}", "unknown-variant"
            )
        expect_text(self.host, "host")
        if len(self.host) > _MAX_HOST:
            raise ContractError("host", f"longer than {_MAX_HOST} characters", "too-long")
        expect_int(self.port, "port", minimum=0, maximum=65535)
        _opt_text(self.address, "address", 64)
        _opt_text(self.entry, "entry", 512)
        expect_int(self.sent, "sent", minimum=0)
        expect_int(self.received, "received", minimum=0)
        _opt_text(self.error, "error", _MAX_ERROR)
        if (self.verdict == "deny" or self.via == DNS) and (
            self.received or self.sent not in (0, lookup_charge(self.host))
        ):
            what = "a DNS decision" if self.via == DNS else "a denied connection"
            raise ContractError(
                "sent", f"{what} carries no bytes but its name's lookup", "inconsistent"
            )

    @property
    def total(self) -> int:
        return self.sent + self.received

    def to_value(self) -> dict[str, canonical.Value]:
        return {
            "via": self.via,
            "host": self.host,
            "port": self.port,
            "address": self.address,
            "verdict": self.verdict,
            "reason": self.reason,
            "entry": self.entry,
            "sent": self.sent,
            "received": self.received,
            "error": self.error,
        }

    @classmethod
    def from_value(cls, value: object, path: str = "decision") -> NetworkDecision:
        keys = ("via", "host", "port", "address", "verdict", "reason", "entry")
        body = expect_map(value, path, required=(*keys, "sent", "received", "error"))
        try:
            return cls(
                via=expect_text(body["via"], f"{path}.via"),
                host=expect_text(body["host"], f"{path}.host"),
                port=expect_int(body["port"], f"{path}.port", minimum=0),
                address=_opt_text(body["address"], f"{path}.address", 64),
                verdict=expect_text(body["verdict"], f"{path}.verdict"),
                reason=expect_text(body["reason"], f"{path}.reason"),
                entry=_opt_text(body["entry"], f"{path}.entry", 512),
                sent=expect_int(body["sent"], f"{path}.sent", minimum=0),
                received=expect_int(body["received"], f"{path}.received", minimum=0),
                error=_opt_text(body["error"], f"{path}.error", _MAX_ERROR),
            )
        except ContractError as exc:
            if exc.path.startswith(path):
                raise
            raise exc.under(path) from None


def activity_fact(decision: NetworkDecision) -> ObservedFact:
    """The report's ``network_activity`` fact for one decision (replay derives the same)."""
    d = decision
    text = (
        f"{d.verdict} {d.via} {destination_text(d.host, d.port) if d.host else '-'} "
        f"address={d.address or '-'} entry={d.entry or '-'} reason={d.reason} "
        f"sent={d.sent} received={d.received}"
    )
    if d.error:
        text += f" error={d.error}"
    return ObservedFact(ACTIVITY_FACT, text)
