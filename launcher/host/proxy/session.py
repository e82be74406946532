"""One run's proxy: receive the listener, judge every connection, record every decision.

Lifetime is the run's (the backend starts the session before the launcher and stops it
in the run's teardown). Threads: one that waits for the listener on the channel and then
accepts, and one per connection (at most :data:`MAX_CONNECTIONS` at once; the rest wait
in the listener's backlog). All are daemon threads — nothing here can keep the host
alive — and :meth:`ProxySession.stop` wakes and joins them: the listener is closed, every
live socket is shut down, so each connection thread records its decision and ends. A
session never leaves a socket open after ``stop``.

The listener arrives from the launcher (see ``linux.netproxy.v1``) and is checked again
here before anything is accepted on it: an AF_INET stream socket, listening, bound to
exactly ``127.0.0.1:<port>``, and *not* in the host's own network namespace (``SIOCGSKNS``).
A listener that fails is closed unused and the run says why.

Per connection: read what is asked (:mod:`.requests`), judge it
(:func:`bvisor.contract.netpolicy.judge`, resolving a listed name with the host's
resolver and pinning the address judged), connect to exactly that address (never to an
IPv4-compatible ``::a.b.c.d``, which a ``sit`` tunnel would carry to any IPv4 host, nor to
an address of the host itself that no address entry names, :mod:`.route`), relay
(:mod:`.relay`), and record one :class:`NetworkDecision` when the connection ends —
through ``on_decision`` (a caller's sink, as it happens) and in the result the report and
the run's final ledger transaction are built from. A decision that cannot be recorded
stops the proxy: no further connection is accepted (fail closed). At most
:data:`MAX_DECISIONS` are made per run; then the listener is closed, so the report stays
bounded and nothing goes unrecorded.

With a resolver (``linux.netdns.v1``, rules v3) a second socket arrives after the
listener, a UDP one bound to ``127.0.0.1:<port>`` in the workload's namespace, checked the
same way; a plan that names one and a launch that passes none or a wrong one means the
proxy serves nothing (fail closed). One thread answers on it (:mod:`.dns` reads and
spells the datagrams): A and AAAA questions for listed names get one address, judged by
:func:`bvisor.contract.netpolicy.judge_name`; every other question is refused, and an
unlisted name is never looked up, nor any name once an Enforced network budget is spent
(``budget-exhausted``, as a connection is). Every lookup, for a question or for a
connection asked by name, is paid for from the budget before it is made, by the name's
bytes (``lookup_charge``): the name leaves the host in it, and a name below a listed
wildcard carries whatever the workload writes into it. So is every connection the proxy
opens, by its address and port (``connect_charge``), which the workload may choose.
Each question is recorded *before* its answer is sent, and an address answered becomes
a destination the workload may then ask for by address on the ports its name is listed
for (``judge_answered``).

``allow_all`` is the test-only lie switch (hook ``proxy_allow_all``): every destination
is allowed, and recorded as allowed, so the oracles that must catch a lying proxy can be
shown to.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

from bvisor.contract.endpoints import Endpoint, parse_address
from bvisor.contract.errors import ContractError
from bvisor.contract.mechanisms import NetDns, NetProxy
from bvisor.contract.netpolicy import (
    BAD_REQUEST,
    BUDGET_EXHAUSTED,
    DNS,
    LISTED,
    UNRESOLVED,
    Answers,
    Judgement,
    NetworkDecision,
    connect_charge,
    destination_text,
    judge,
    judge_name,
    lookup_charge,
    names_address,
    normal_host,
    parse_entries,
)
from bvisor.launcher.host.proxy import dns, requests
from bvisor.launcher.host.proxy.lookup import lookup
from bvisor.launcher.host.proxy.relay import Budget, relay
from bvisor.launcher.host.proxy.route import host_own

__all__ = [
    "CONNECT_TIMEOUT",
    "HEAD_TIMEOUT",
    "MAX_CONNECTIONS",
    "MAX_DECISIONS",
    "DecisionSink",
    "ProxyResult",
    "ProxySession",
]

MAX_CONNECTIONS = 64
MAX_DECISIONS = 4096
HEAD_TIMEOUT = 30.0
CONNECT_TIMEOUT = 10.0
_SIOCGSKNS = 0x894C

DecisionSink = Callable[[int, NetworkDecision], None]


@dataclass(frozen=True, slots=True)
class ProxyResult:
    """What the proxy did in one run, for the report."""

    decisions: tuple[NetworkDecision, ...]
    listener: str | None  # "127.0.0.1:<port> net:[<inode>]" once it was received and checked
    problems: tuple[str, ...]

    @property
    def total_bytes(self) -> int:
        return sum(d.total for d in self.decisions)


@dataclass
class _Connection:
    sockets: list[socket.socket] = field(default_factory=list)


class ProxySession:
    """See the module docstring."""

    def __init__(
        self,
        channel: socket.socket,
        params: NetProxy,
        budget_bytes: int | None,
        on_decision: DecisionSink | None = None,
        *,
        resolver: NetDns | None = None,
        allow_all: bool = False,
    ) -> None:
        self._channel = channel
        self._port = params.port
        self._dns_port = None if resolver is None else resolver.port
        self._problems: list[str] = []
        try:
            self._entries: tuple[Endpoint, ...] | None = parse_entries(params.allow)
        except ContractError as exc:  # a verified plan never gets here; fail closed if it does
            self._entries = None
            self._problems.append(f"the allow list cannot be read: {exc}")
        self._budget = Budget(budget_bytes)
        self._on_decision = on_decision
        self._allow_all = allow_all
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC)
        self._decisions: list[NetworkDecision] = []
        self._live: dict[int, _Connection] = {}
        self._workers: set[threading.Thread] = set()
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._listener: socket.socket | None = None
        self._listener_text: str | None = None
        self._resolver: socket.socket | None = None
        self._answers = Answers()  # what the resolver answered, as judge_answered reads it
        # thread -> the name it is having the host's resolver look up right now
        self._lookups: dict[int, str] = {}
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name="bvisor-proxy", daemon=True)

    # -- lifetime ----------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self, grace: float = 3.0) -> ProxyResult:
        """Stop accepting, end every connection, join every thread; the run's result."""
        deadline = time.monotonic() + grace
        self._stopping.set()
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")
        self._thread.join(grace)
        with self._lock:
            live = [s for c in self._live.values() for s in c.sockets]
            workers = list(self._workers)
        for sock in live:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for worker in workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            self._closed = True
            unfinished = sum(1 for worker in self._workers if worker.is_alive())
            lookups = sorted(self._lookups.values())
            decisions = tuple(self._decisions)
            problems = list(self._problems)
        if unfinished:
            # A lookup cannot be called back: the name has left the host unrecorded, so
            # the report names it (at most MAX_CONNECTIONS + 1 of them, each bounded).
            looking = f"; names still being looked up: {', '.join(lookups)}" if lookups else ""
            problems.append(
                f"{unfinished} connection(s) or DNS question(s) were still being set up when "
                f"the run ended; their decisions are not recorded{looking}"
            )
        self._close_listener()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        with contextlib.suppress(OSError):
            self._channel.close()
        return ProxyResult(decisions, self._listener_text, tuple(problems))

    def _problem(self, text: str) -> None:
        with self._lock:
            self._problems.append(text)

    def _close_listener(self) -> None:
        listener, self._listener = self._listener, None
        resolver, self._resolver = self._resolver, None
        for sock in (listener, resolver):
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.close()

    # -- the listener --------------------------------------------------------------------

    def _wait_readable(self, sock: socket.socket) -> bool:
        """Block until ``sock`` is readable (True) or the session stops (False)."""
        if self._stopping.is_set() or sock.fileno() < 0:
            return False  # stop() may already have closed it (and the wake pipe)
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        while not self._stopping.is_set():
            ready = dict(poller.poll())
            if self._wake_r in ready:
                return False
            if sock.fileno() in ready:
                return True
        return False

    def _receive(self, tag: bytes, what: str) -> socket.socket | None:
        """The one socket the launcher passes tagged ``tag``, or None (a problem says why)."""
        if not self._wait_readable(self._channel):
            return None
        try:
            data, fds, _, _ = socket.recv_fds(self._channel, 16, 2)
        except OSError as exc:
            self._problem(f"receiving the {what} failed: {exc}")
            return None
        received: list[socket.socket] = []
        for fd in fds:
            try:
                received.append(socket.socket(fileno=fd))
            except OSError as exc:
                os.close(fd)
                self._problem(f"the launcher passed an fd that is not a socket: {exc}")
        if not received:
            return None  # the launcher ended before making one (its own report says why)
        sock, extra = received[0], received[1:]
        for other in extra:
            other.close()
        check = self._check_listener if tag == b"L" else self._check_resolver
        problem = check(sock) if data == tag and not extra else "bad message"
        if problem is not None:
            sock.close()
            self._problem(f"the {what} was refused: {problem}")
            return None
        return sock

    def _outside_host_netns(self, sock: socket.socket) -> tuple[int | None, str | None]:
        """``(namespace inode, None)``, or ``(None, why not)`` when it is the host's own."""
        try:
            ns = fcntl.ioctl(sock.fileno(), _SIOCGSKNS)
            try:
                inode = os.fstat(ns).st_ino
            finally:
                os.close(ns)
            own = os.stat("/proc/self/ns/net").st_ino
        except OSError as exc:
            return None, f"its network namespace cannot be told ({exc})"
        if inode == own:
            return None, "it lives in the host's own network namespace"
        return inode, None

    def _check_resolver(self, sock: socket.socket) -> str | None:
        if sock.family != socket.AF_INET or sock.type != socket.SOCK_DGRAM:
            return "not an AF_INET datagram socket"
        if sock.getsockname() != ("127.0.0.1", self._dns_port):
            return f"bound to {sock.getsockname()!r}, not 127.0.0.1:{self._dns_port}"
        return self._outside_host_netns(sock)[1]

    def _check_listener(self, listener: socket.socket) -> str | None:
        if listener.family != socket.AF_INET or listener.type != socket.SOCK_STREAM:
            return "not an AF_INET stream socket"
        if not listener.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            return "not listening"
        if listener.getsockname() != ("127.0.0.1", self._port):
            return f"bound to {listener.getsockname()!r}, not 127.0.0.1:{self._port}"
        inode, problem = self._outside_host_netns(listener)
        if problem is None:
            self._listener_text = f"127.0.0.1:{self._port} net:[{inode}]"
        return problem

    def _serve(self) -> None:
        listener = self._receive(b"L", "listener")
        if listener is None or self._entries is None:
            if listener is not None:
                listener.close()
            return
        self._listener = listener
        if self._dns_port is not None:
            resolver = self._receive(b"D", "resolver socket")
            if resolver is None:
                self._close_listener()  # fail closed: the plan's resolver is not there
                return
            self._resolver = resolver
            if not self._start_thread(self._answer_questions, "bvisor-proxy-dns", resolver):
                self._close_listener()
                return
        while not self._stopping.is_set():
            while not self._slots.acquire(timeout=0.2):
                if self._stopping.is_set():
                    return
            if not self._wait_readable(listener):
                self._slots.release()
                return
            with self._lock:
                closed = self._closed
                full = len(self._decisions) + len(self._live) >= MAX_DECISIONS
            if closed or full:
                self._slots.release()
                if full and not closed:
                    self._problem(
                        f"{MAX_DECISIONS} connections in this run: the listener was closed"
                    )
                self._close_listener()
                return
            try:
                conn, _ = listener.accept()
            except OSError:
                self._slots.release()
                continue
            self._start_worker(conn)

    def _start_thread(self, target: Callable[..., None], name: str, *args: object) -> bool:
        worker = threading.Thread(target=target, args=args, name=name, daemon=True)
        with self._lock:
            self._workers.add(worker)
        try:
            worker.start()
        except RuntimeError as exc:
            with self._lock:
                self._workers.discard(worker)
                self._problems.append(f"the {name} thread could not start: {exc}")
            return False
        return True

    # -- the resolver ------------------------------------------------------------------

    def _answer_questions(self, resolver: socket.socket) -> None:
        """Answer every question until the run ends: each one judged and recorded before
        its answer is sent, so no address reaches the workload unrecorded."""
        try:
            while self._wait_readable(resolver):
                try:
                    data, peer = resolver.recvfrom(dns.MAX_QUERY)
                except OSError:
                    continue
                with self._lock:
                    full = self._closed or len(self._decisions) + len(self._live) >= MAX_DECISIONS
                if full:
                    self._problem(f"{MAX_DECISIONS} decisions in this run: the resolver stopped")
                    return
                reply = self._question(data)
                if reply is not None:
                    with contextlib.suppress(OSError):
                        resolver.sendto(reply, peer)
        finally:
            with self._lock:
                self._workers.discard(threading.current_thread())

    def _question(self, data: bytes) -> bytes | None:
        """Judge and record one datagram; the reply to send, or None."""
        port = self._dns_port or 0
        try:
            question = dns.read_question(data)
        except dns.BadQuery as bad:
            self._record(_denied(DNS, "", port, None, BAD_REQUEST, None, str(bad)))
            return dns.error_reply(bad)
        name = normal_host(question.name)
        if name is None:
            self._record(_denied(DNS, "", port, None, BAD_REQUEST, None, "bad host name"))
            return dns.answer(question, dns.REFUSED)
        if question.qtype not in (dns.A, dns.AAAA):
            # Listed or not, only address questions are answered: nothing else is looked up.
            detail = f"query type {question.qtype} is not answered"
            self._record(_denied(DNS, name, port, None, BAD_REQUEST, None, detail))
            return dns.answer(question, dns.REFUSED)
        if self._budget.exhausted:
            # As a connection is refused before its name is looked up once the budget is
            # spent, so is a question: the name itself leaves the host with the lookup.
            self._record(_denied(DNS, name, port, None, BUDGET_EXHAUSTED, None, None))
            return dns.answer(question, dns.REFUSED)
        judged, address, charged = self._decide_name(name, question.qtype)
        decision = NetworkDecision(
            DNS, name, port, address, judged.verdict, judged.reason, judged.entry, charged, 0,
            None,
        )  # fmt: skip
        if not self._record(decision):
            return dns.answer(question, dns.SERVFAIL)
        if judged.allowed and address is not None:
            with self._lock:
                self._answers.add(name, address)
            return dns.answer(question, dns.NOERROR, address)
        if judged.reason == UNRESOLVED:
            return dns.answer(question, dns.NOERROR)  # the name has no address of that family
        return dns.answer(question, dns.REFUSED)

    def _decide_name(self, name: str, qtype: int) -> _Resolved:
        entries = self._entries or ()
        family = socket.AF_INET if qtype == dns.A else socket.AF_INET6
        return self._resolve_judged(
            lambda address: judge_name(entries, name, address),
            lambda: lookup(name, 0, family),
            name,
            f"dns {name}",
        )

    def _resolve_judged(
        self,
        judge_at: Callable[[str | None], Judgement],
        resolve: Callable[[], list[str]],
        host: str,
        what: str,
    ) -> _Resolved:
        """Judge a name before resolving it (an unlisted one never is), then each address
        the host's resolver gives, in its order: the first allowed one is pinned, else the
        first refusal stands. ``what`` names the lookup while it is under way.

        A lookup is paid for from the network budget before it is made (the name leaves
        the host in it: :func:`~bvisor.contract.netpolicy.lookup_charge`); one the budget
        cannot pay for is not made (``budget-exhausted``)."""
        first = judge_at(None)
        if first.reason != UNRESOLVED and not self._allow_all:
            return _Resolved(first, None, 0)  # not listed: never resolved
        charged = lookup_charge(host)
        if not self._budget.take_whole(charged):
            return _Resolved(Judgement("deny", BUDGET_EXHAUSTED, None), None, 0)
        thread = threading.get_ident()
        with self._lock:
            self._lookups[thread] = what
        try:
            addresses = resolve()
        finally:
            with self._lock:
                self._lookups.pop(thread, None)
        if not addresses:
            return _Resolved(Judgement("deny", UNRESOLVED, first.entry), None, charged)
        if self._allow_all:
            return _Resolved(Judgement("allow", LISTED, None), addresses[0], charged)
        refused: _Resolved | None = None
        for address in addresses:
            judged = judge_at(address)
            if judged.allowed:
                return _Resolved(judged, address, charged)
            refused = refused or _Resolved(judged, address, charged)
        assert refused is not None
        return refused

    def _start_worker(self, conn: socket.socket) -> None:
        record = _Connection([conn])
        worker = threading.Thread(
            target=self._worker, args=(conn, record), name="bvisor-proxy-conn", daemon=True
        )
        with self._lock:
            self._live[id(record)] = record
            self._workers.add(worker)
        try:
            worker.start()
        except RuntimeError as exc:  # no thread to be had: refuse this one, keep serving
            with self._lock:
                self._live.pop(id(record), None)
                self._workers.discard(worker)
                self._problems.append(f"a connection was closed unjudged: {exc}")
            conn.close()
            self._slots.release()

    def _worker(self, conn: socket.socket, record: _Connection) -> None:
        try:
            decision = self._handle(conn, record)
            if decision is not None:
                self._record(decision)
        finally:
            for sock in record.sockets:
                with contextlib.suppress(OSError):
                    sock.close()
            with self._lock:
                self._live.pop(id(record), None)
                self._workers.discard(threading.current_thread())
            self._slots.release()

    def _record(self, decision: NetworkDecision) -> bool:
        """Record one decision; False when it could not be (nothing more is accepted)."""
        with self._lock:
            if self._closed:
                return False
            index = len(self._decisions)
            self._decisions.append(decision)
            if self._on_decision is None:
                return True
            try:
                self._on_decision(index, decision)
            except Exception as exc:  # the ledger refused: accept nothing more
                self._problems.append(f"decision {index} could not be recorded: {exc}")
                self._closed = True
                self._stopping.set()
                with contextlib.suppress(OSError):
                    os.write(self._wake_w, b"x")
                return False
            return True

    # -- one connection ----------------------------------------------------------------

    def _handle(self, conn: socket.socket, record: _Connection) -> NetworkDecision | None:
        conn.settimeout(HEAD_TIMEOUT)
        try:
            ask = requests.read_ask(conn)
        except requests.BadRequest as bad:
            _reply_bad(conn, bad.via, bad.socks_code, bad.detail)
            return _denied(bad.via, "", 0, None, BAD_REQUEST, None, bad.detail)
        except OSError as exc:
            if self._stopping.is_set():
                return None  # the run ended while a client was still writing its request
            return _denied("http", "", 0, None, BAD_REQUEST, None, f"reading the request: {exc}")
        host = normal_host(ask.host)
        if host is None:
            _reply_bad(conn, ask.via, requests.SOCKS_FAILURE, "bad host name")
            return _denied(ask.via, "", ask.port, None, BAD_REQUEST, None, "bad host name")
        if self._budget.exhausted:
            _reply_refused(conn, ask.via, host, ask.port, "the network budget is spent")
            return _denied(ask.via, host, ask.port, None, BUDGET_EXHAUSTED, None, None)
        judged, address, charged = self._decide(host, ask.port)
        if not judged.allowed or address is None:
            _reply_refused(conn, ask.via, host, ask.port, judged.reason)
            return _denied(
                ask.via, host, ask.port, address, judged.reason, judged.entry, None, charged
            )
        return self._connect(conn, record, ask, host, address, judged, charged)

    def _decide(self, host: str, port: int) -> _Resolved:
        entries = self._entries or ()
        literal = parse_address(host)
        if literal is not None:
            address = literal.compressed
            if self._allow_all:
                return _Resolved(Judgement("allow", LISTED, None), address, 0)
            judged = judge(entries, host, port, address)
            if not judged.allowed:
                with self._lock:
                    judged = self._answers.opens(entries, address, port) or judged
            return _Resolved(judged, address, 0)
        return self._resolve_judged(
            lambda address: judge(entries, host, port, address),
            lambda: lookup(host, port),
            host,
            destination_text(host, port),
        )

    def _connect(
        self,
        conn: socket.socket,
        record: _Connection,
        ask: requests.Ask,
        host: str,
        address: str,
        judged: Judgement,
        charged: int,
    ) -> NetworkDecision:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        upstream = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        with self._lock:
            record.sockets.append(upstream)
        upstream.settimeout(CONNECT_TIMEOUT)

        def decided(sent: int = 0, received: int = 0, error: str | None = None) -> NetworkDecision:
            return NetworkDecision(
                ask.via, host, ask.port, address, "allow", judged.reason, judged.entry,
                charged + sent, received, error,
            )  # fmt: skip

        if self._stopping.is_set():
            return decided(error="the run ended before the connection was made")
        if _ipv4_compatible(address):
            _reply_unreachable(conn, ask.via, OSError(errno.ENETUNREACH, "IPv4-compatible"))
            return decided(error="connect: an IPv4-compatible address (::/96) is never opened")
        if not self._allow_all and self._host_own_unnamed(address, ask.port):
            _reply_unreachable(conn, ask.via, OSError(errno.EACCES, "the host's own address"))
            return decided(
                error="connect: an address of the host itself is opened only when an "
                "address or network entry on its port names it"
            )
        opening = connect_charge(address)
        if not self._budget.take_whole(opening):
            # The address and port would leave the host in the connection's first packet.
            _reply_refused(conn, ask.via, host, ask.port, BUDGET_EXHAUSTED)
            return _denied(ask.via, host, ask.port, None, BUDGET_EXHAUSTED, None, None, charged)
        charged += opening
        try:
            upstream.connect((address, ask.port))
        except OSError as exc:
            _reply_unreachable(conn, ask.via, exc)
            return decided(error=f"connect: {_errname(exc)}")
        try:
            if ask.via == "http-connect":
                conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            elif ask.via == "socks5":
                conn.sendall(requests.socks_reply(requests.SOCKS_OK))
        except OSError as exc:
            return decided(error=f"reply to the workload: {_errname(exc)}")
        flow = relay(conn, upstream, self._budget, self._stopping, ask.forward)
        return decided(flow.sent, flow.received, flow.error)

    def _host_own_unnamed(self, address: str, port: int) -> bool:
        """Is ``address`` one the host would deliver to itself (:func:`.route.host_own`),
        and no address or network entry on ``port`` names it? Then it is never connected
        to: a ``*:port`` entry, or a listed name that resolves to the host's public
        address, would otherwise reach the host's own services bound to every address.
        As for an IPv4-compatible address, the judgement is left as recorded (replay
        re-judges it unchanged); the connection just is not made."""
        parsed = parse_address(address)
        named = parsed is not None and names_address(self._entries or (), parsed, port)
        return not named and host_own(address)


def _ipv4_compatible(address: str) -> bool:
    """``::a.b.c.d`` (deprecated, RFC 4291 2.5.5.1): a host with an automatic IPv6-in-IPv4
    tunnel (``sit0``) sends it to the IPv4 address ``a.b.c.d`` of any class, so it is never
    connected to. The allow list's judgement is left as it is (a refused range added there
    would re-judge recorded runs differently); the connection just is not made."""
    parsed = parse_address(address)
    return parsed is not None and parsed.version == 6 and int(parsed) >> 32 == 0


class _Resolved(NamedTuple):
    """A name judged (and looked up when listed): the judgement, the address it pins,
    and the bytes its lookup took from the network budget."""

    judged: Judgement
    address: str | None
    charged: int


def _denied(
    via: str,
    host: str,
    port: int,
    address: str | None,
    reason: str,
    entry: str | None,
    error: str | None,
    charged: int = 0,
) -> NetworkDecision:
    return NetworkDecision(
        via,
        host,
        port,
        address,
        "deny",
        reason,
        entry,
        charged,
        0,
        None if error is None else error[:200],
    )


def _errname(exc: OSError) -> str:
    if isinstance(exc, TimeoutError) and exc.errno is None:
        return "ETIMEDOUT"
    return errno.errorcode.get(exc.errno or 0, str(exc))


def _send_quietly(conn: socket.socket, data: bytes) -> None:
    with contextlib.suppress(OSError):
        conn.sendall(data)


def _reply_bad(conn: socket.socket, via: str, socks_code: int, detail: str) -> None:
    if via == "socks5":
        _send_quietly(conn, requests.socks_reply(socks_code))
    else:
        _send_quietly(conn, requests.http_reply(400, "Bad Request", f"bvisor proxy: {detail}"))


def _reply_refused(conn: socket.socket, via: str, host: str, port: int, reason: str) -> None:
    if via == "socks5":
        code = (
            requests.SOCKS_HOST_UNREACHABLE if reason == UNRESOLVED else requests.SOCKS_NOT_ALLOWED
        )
        _send_quietly(conn, requests.socks_reply(code))
        return
    status, text = (502, "Bad Gateway") if reason == UNRESOLVED else (403, "Forbidden")
    where = destination_text(host, port)
    _send_quietly(
        conn, requests.http_reply(status, text, f"bvisor proxy: {where} refused ({reason})")
    )


def _reply_unreachable(conn: socket.socket, via: str, exc: OSError) -> None:
    if via == "socks5":
        _send_quietly(conn, requests.socks_reply(requests.SOCKS_REFUSED))
    else:
        _send_quietly(
            conn, requests.http_reply(502, "Bad Gateway", f"bvisor proxy: {_errname(exc)}")
        )
