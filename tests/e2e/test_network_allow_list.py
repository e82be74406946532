"""Network{AllowList}: reach the listed destinations through the host's proxy, nothing else.

Oracles from outside the workload: test servers on the host's loopback count every
connection they accept (a refused destination must see none, an allowed one must see the
request), the ledger holds one ``network.decision`` per connection, and replay re-judges
each decision against the plan's allow list. The allow lists here name ``127.0.0.1``
explicitly: loopback is a refused range unless an entry names it, which is tested too.
The planted lie (the proxy allowing everything) turns both the server oracle and replay
red.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from bvisor.contract import Budget, BudgetRequirements, MinGuarantee, Outcome
from bvisor.contract import mechanisms as mech
from tests.e2e.netkit import CURL, PYTHON, AllowedRun, Server, allow_spec, run_allowed, serving
from tests.features import require_feature


@pytest.fixture(autouse=True)
def _features() -> None:
    for feature in ("seccomp", "landlock", "userns", "netns", "pidns", "netns-loopback"):
        require_feature(feature)


def _sh(script: str) -> list[str]:
    return ["/bin/sh", "-c", script]


# A plain HTTP request in origin form, sent to the proxy as if it were the server: the
# proxy goes by its Host header.
ORIGIN_FORM = r"""
import socket, sys
s = socket.create_connection(("127.0.0.1", 3128))
s.sendall(b"GET /by-origin-form HTTP/1.1\r\nHost: 127.0.0.1:%s\r\n\r\n" % sys.argv[1].encode())
data = b""
while chunk := s.recv(4096):
    data += chunk
print(data.split(b"\r\n\r\n", 1)[1].decode(), end="")
"""


def test_an_allowed_destination_is_reached_through_the_proxy(work: Path, tmp_path: Path) -> None:
    (work / "origin.py").write_text(ORIGIN_FORM)
    with serving("allowed") as server:
        url = f"http://127.0.0.1:{server.port}"
        script = (
            f"{CURL} -sS -m 10 {url}/by-curl; "
            f"{CURL} -sS -m 10 -p {url}/by-connect; "
            f'{CURL} -sS -m 10 --proxy "$ALL_PROXY" {url}/by-socks; '
            f"{PYTHON} -c 'import urllib.request as u; "
            f'print(u.urlopen("{url}/by-python", timeout=10).read().decode(), end="")\'; '
            f"{PYTHON} origin.py {server.port}; "
            "env | grep -i _proxy= | sort"
        )
        spec = allow_spec(_sh(script), [f"127.0.0.1:{server.port}"], work)
        run = run_allowed(spec, tmp_path / "ledger")
    assert run.report.body.outcome is Outcome.COMPLETED, run.out
    paths = ["/by-connect", "/by-curl", "/by-origin-form", "/by-python", "/by-socks"]
    for path in paths:
        assert f"hello from allowed {path}" in run.out, run.out
    assert sorted(server.paths) == paths
    assert "HTTP_PROXY=http://127.0.0.1:3128" in run.out
    assert "ALL_PROXY=socks5h://127.0.0.1:3128" in run.out
    allowed = [d for d in run.decisions if d.verdict == "allow"]
    assert {d.via for d in allowed} == {"http", "http-connect", "socks5"}, run.decisions
    assert all(d.address == "127.0.0.1" and d.sent > 0 and d.received > 0 for d in allowed)
    assert all(d.entry == f"127.0.0.1:{server.port}" for d in allowed)
    assert len(run.facts("network_activity")) == len(run.decisions) == 5
    witness = next(
        w for w in run.report.body.budget_witnesses if w.dimension.value == "network_bytes"
    )
    assert witness.observed == sum(d.sent + d.received for d in run.decisions) > 0
    assert run.facts("network_listener"), run.report.body.observed
    assert run.audit_ok, run.audit_detail


def test_another_port_or_name_is_refused_and_recorded(work: Path, tmp_path: Path) -> None:
    with serving("allowed") as allowed, serving("other") as other:
        script = (
            f"{CURL} -sS -m 10 -o /dev/null -w 'port:%{{http_code}}\\n' "
            f"http://127.0.0.1:{other.port}/x; "
            f"{CURL} -sS -m 10 -o /dev/null -w 'name:%{{http_code}}\\n' "
            f"http://unlisted.example:{allowed.port}/y; "
            f"{CURL} -sS -m 10 -o /dev/null -w 'socks:%{{http_code}}\\n' "
            f"--proxy socks5h://127.0.0.1:3128 http://127.0.0.1:{other.port}/z; "
            "echo done"
        )
        spec = allow_spec(_sh(script), [f"127.0.0.1:{allowed.port}"], work)
        run = run_allowed(spec, tmp_path / "ledger")
    assert "port:403" in run.out and "name:403" in run.out and "done" in run.out, run.out
    assert other.connections == 0 and allowed.connections == 0, (other, allowed)
    denied = [(d.via, d.host, d.port, d.reason) for d in run.decisions]
    assert denied == [
        ("http", "127.0.0.1", other.port, "not-listed"),
        ("http", "unlisted.example", allowed.port, "not-listed"),
        ("socks5", "127.0.0.1", other.port, "not-listed"),
    ], run.decisions
    # An unlisted name is refused before it is resolved: no address on record.
    assert run.decisions[1].address is None
    assert all(d.verdict == "deny" and d.sent == d.received == 0 for d in run.decisions)
    assert run.audit_ok, run.audit_detail


NO_PROXY = r"""
import errno, os, socket, sys
port = int(sys.argv[1])
def attempt(name, family, address):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(5)
    try:
        s.connect(address)
    except OSError as exc:
        print(name, "failed", errno.errorcode.get(exc.errno, exc.errno))
    else:
        print(name, "CONNECTED")
attempt("loopback", socket.AF_INET, ("127.0.0.1", port))
attempt("public", socket.AF_INET, ("1.1.1.1", 80))
attempt("public6", socket.AF_INET6, ("2606:4700:4700::1111", 80))
try:  # UDP: Landlock does not see it; the empty namespace has no route for it
    socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", ("1.1.1.1", 53))
except OSError as exc:
    print("udp failed", errno.errorcode.get(exc.errno, exc.errno))
else:
    print("udp SENT")
for family, kind in (("AF_UNIX", "SOCK_STREAM"), ("AF_NETLINK", "SOCK_DGRAM"),
                     ("AF_PACKET", "SOCK_DGRAM")):
    try:
        socket.socket(getattr(socket, family), getattr(socket, kind))
    except OSError as exc:
        print(family, "refused", errno.errorcode.get(exc.errno, exc.errno))
    else:
        print(family, "CREATED")
print("fds", sorted(int(fd) for fd in os.listdir("/proc/self/fd")))
"""


def test_a_tool_that_ignores_the_proxy_has_no_route(work: Path, tmp_path: Path) -> None:
    """Two layers, each shown on its own: Landlock (ABI >= 4) refuses a TCP connect to any
    port but the proxy's (EACCES); beneath it, with Landlock skipped, the empty namespace
    has nothing on the loopback but the listener and no route anywhere."""
    with serving("target") as server:
        spec = allow_spec(
            [PYTHON, "-c", NO_PROXY, str(server.port)], [f"127.0.0.1:{server.port}"], work
        )
        run = run_allowed(spec, tmp_path / "ledger")
        bare = run_allowed(spec, tmp_path / "bare", frozenset({"skip_landlock"}))
    landlock = mech.LANDLOCK_NET.id in run.entry_ids
    for name in ("loopback", "public", "public6"):
        if landlock:
            assert f"{name} failed EACCES" in run.out, run.out
    assert "loopback failed ECONNREFUSED" in bare.out, bare.out  # nothing on that port inside
    assert "public failed ENETUNREACH" in bare.out, bare.out
    assert "public6 failed ENETUNREACH" in bare.out, bare.out
    for out in (run.out, bare.out):
        assert "udp failed ENETUNREACH" in out, out
        for family in ("AF_UNIX", "AF_NETLINK", "AF_PACKET"):
            assert f"{family} refused EPERM" in out, out
        assert "CONNECTED" not in out and "CREATED" not in out and "SENT" not in out, out
        # The workload holds no listener of its own (only its stdio and the fd listing).
        assert "fds [0, 1, 2, 3]" in out, out
    assert server.connections == 0
    assert run.decisions == [] and run.audit_ok, run.audit_detail


def test_private_ranges_are_refused_unless_an_entry_names_them(work: Path, tmp_path: Path) -> None:
    with serving("local") as server:
        port = server.port
        script = (
            f"{CURL} -sS -m 10 -o /dev/null -w 'localhost:%{{http_code}}\\n' "
            f"http://localhost:{port}/a; "
            f"{CURL} -sS -m 10 -o /dev/null -w 'wildcard:%{{http_code}}\\n' "
            f"http://127.0.0.1:{port}/b; "
            "echo done"
        )
        refused = run_allowed(
            allow_spec(_sh(script), [f"localhost:{port}", f"*:{port}"], work), tmp_path / "l1"
        )
        assert "localhost:403" in refused.out and "wildcard:403" in refused.out, refused.out
        assert server.connections == 0
        reasons = [(d.host, d.address, d.reason, d.entry) for d in refused.decisions]
        assert reasons == [
            ("localhost", "127.0.0.1", "refused-range", f"localhost:{port}"),
            ("127.0.0.1", "127.0.0.1", "refused-range", f"*:{port}"),
        ], refused.decisions
        assert refused.audit_ok, refused.audit_detail
        named = run_allowed(
            allow_spec(_sh(script), [f"localhost:{port}", f"127.0.0.0/8:{port}"], work),
            tmp_path / "l2",
        )
    assert "localhost:200" in named.out and "wildcard:200" in named.out, named.out
    assert sorted(server.paths) == ["/a", "/b"]
    assert [d.verdict for d in named.decisions] == ["allow", "allow"]
    assert named.audit_ok, named.audit_detail


LIMIT = 64 * 1024


def _past_budget(
    work: Path, tmp_path: Path, script: Callable[[str], str], names: Sequence[str] = ()
) -> tuple[AllowedRun, Server]:
    """A run under an Enforced network budget of :data:`LIMIT` bytes, its allow list a
    loopback server by address (and ``names`` on its port); ``script(url)`` is its workload."""
    with serving("big") as server:
        entries = [f"{host}:{server.port}" for host in ("127.0.0.1", *names)]
        budgets = BudgetRequirements(network_bytes=Budget(LIMIT, MinGuarantee.ENFORCED))
        spec = allow_spec(
            _sh(script(f"http://127.0.0.1:{server.port}")), entries, work, budgets=budgets
        )
        return run_allowed(spec, tmp_path / "ledger"), server


def test_an_enforced_network_budget_cuts_the_connection(work: Path, tmp_path: Path) -> None:
    run, server = _past_budget(
        work,
        tmp_path,
        lambda url: (
            f"{CURL} -sS -m 10 -o big.out {url}/big/1048576; echo first=$?; "
            f"wc -c < big.out; "
            f"{CURL} -sS -m 10 -o /dev/null -w 'second:%{{http_code}}\\n' {url}/after; echo done"
        ),
    )
    received = int((work / "big.out").stat().st_size)
    assert received < LIMIT, run.out
    assert "second:403" in run.out and "done" in run.out, run.out
    first, second = run.decisions
    assert first.verdict == "allow" and "budget" in (first.error or ""), first
    assert first.sent + first.received <= LIMIT
    assert (second.verdict, second.reason) == ("deny", "budget-exhausted")
    witness = next(
        w for w in run.report.body.budget_witnesses if w.dimension.value == "network_bytes"
    )
    assert witness.guarantee == "enforced" and witness.observed is not None
    assert witness.observed <= LIMIT and not witness.exceeded
    assert server.paths == ["/big/1048576"]
    assert run.audit_ok, run.audit_detail


def test_the_planted_lie_turns_the_oracles_red(work: Path, tmp_path: Path) -> None:
    """With the proxy allowing everything, the unlisted server is reached (the outside
    oracle goes red), the report is marked, and replay's re-judgement fails the run."""
    with serving("allowed") as allowed, serving("unlisted") as unlisted:
        script = f"{CURL} -sS -m 10 http://127.0.0.1:{unlisted.port}/secret"
        spec = allow_spec(_sh(script), [f"127.0.0.1:{allowed.port}"], work)
        honest = run_allowed(spec, tmp_path / "honest")
        assert unlisted.connections == 0 and honest.audit_ok, honest.audit_detail
        lie = run_allowed(spec, tmp_path / "lie", frozenset({"proxy_allow_all"}))
    assert unlisted.paths == ["/secret"], "oracle stayed green although the proxy lied"
    assert "hello from unlisted /secret" in lie.out
    assert ("test_hook_active", "proxy_allow_all") in {
        (f.kind, f.detail) for f in lie.report.body.observed
    }
    assert not lie.audit_ok
    assert "the allow list gives deny/not-listed" in lie.audit_detail, lie.audit_detail


def test_a_listener_outside_the_workload_namespace_is_never_served(
    work: Path, tmp_path: Path
) -> None:
    """With the namespace skipped (the lie switch), the child's listener would live in the
    host's namespace: the launcher's SIOCGSKNS check faults the launch instead, before the
    workload runs, and the host never serves it."""
    with serving("target") as server:
        script = f"{CURL} -sS -m 5 http://127.0.0.1:{server.port}/x; echo RAN"
        spec = allow_spec(_sh(script), [f"127.0.0.1:{server.port}"], work)
        run = run_allowed(spec, tmp_path / "ledger", frozenset({"skip_netns"}))
    assert run.report.body.outcome is Outcome.SUPERVISOR_FAULT, run.report.body.observed
    assert "RAN" not in run.out and server.connections == 0
    notes = [n for n in run.facts("launcher_note") if n.startswith("fault mechanism=netproxy")]
    # As root the launcher sees the listener is in its own namespace; as a normal user it
    # may not even inspect that namespace (EPERM: not one its user namespace owns).
    assert len(notes) == 1, run.facts("launcher_note")
    assert "not in the child's own" in notes[0] or "cannot tell the socket's" in notes[0]
    assert run.decisions == [] and not run.facts("network_listener")


def _fds() -> set[int]:
    return {int(fd) for fd in os.listdir("/proc/self/fd")}


def test_the_proxy_leaves_no_thread_and_no_socket_behind(work: Path, tmp_path: Path) -> None:
    with serving("target") as server:
        script = (
            f"{CURL} -sS -m 5 http://127.0.0.1:{server.port}/a; "
            f"{CURL} -sS -m 5 http://127.0.0.1:{server.port + 1}/b; "
            # a connection still open when the workload ends: the proxy must end it too
            f"{PYTHON} -c 'import socket, time; s = socket.create_connection"
            f'(("127.0.0.1", 3128)); s.sendall(b"CONNECT 127.0.0.1:{server.port} HTTP/1.1'
            f"\\r\\n\\r\\n\"); print(s.recv(100), flush=True); time.sleep(30)' & sleep 1; echo bye"
        )
        spec = allow_spec(_sh(script), [f"127.0.0.1:{server.port}"], work)
        run_allowed(spec, tmp_path / "warm")  # imports and caches settle first
        before_fds = _fds()
        before_threads = {t.ident for t in threading.enumerate()}
        run = run_allowed(spec, tmp_path / "ledger")
    assert run.report.body.outcome is Outcome.COMPLETED, run.out
    assert "bye" in run.out and "200 Connection established" in run.out, run.out
    assert [d.verdict for d in run.decisions] == ["allow", "deny", "allow"], run.decisions
    lingering = [t.name for t in threading.enumerate() if t.ident not in before_threads]
    assert not [name for name in lingering if name.startswith("bvisor-proxy")], lingering
    assert _fds() <= before_fds, sorted(_fds() - before_fds)
    assert run.audit_ok, run.audit_detail


def test_an_ipv4_compatible_address_is_never_connected_to(work: Path, tmp_path: Path) -> None:
    """``[::127.0.0.1]`` is allowed by ``*:port`` (the judgement is the recorded one) but
    the proxy never opens it: a sit tunnel would carry it to IPv4 127.0.0.1."""
    with serving("target") as server:
        script = f"{CURL} -sS -m 5 -o /dev/null 'http://[::127.0.0.1]:{server.port}/compat'; true"
        spec = allow_spec(_sh(script), [f"*:{server.port}"], work)
        run = run_allowed(spec, tmp_path / "ledger")
    assert server.connections == 0
    (decision,) = [d for d in run.decisions if d.port == server.port]
    assert (decision.verdict, decision.address) == ("allow", "::7f00:1"), decision
    assert decision.error is not None and "IPv4-compatible" in decision.error


# Asks the resolver for one name; prints its one answer or its rcode.
ASK = r"""
import socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
wire = b"".join(bytes([len(p)]) + p.encode() for p in sys.argv[1].split(".")) + b"\0"
s.sendto(struct.pack("!HHHHHH", 9, 0x0100, 1, 0, 0, 0) + wire + struct.pack("!HH", 1, 1),
         ("127.0.0.1", 53))
d = s.recv(600)
print(sys.argv[2] + "=" + (socket.inet_ntoa(d[-4:]) if d[7] else "rcode%d" % (d[3] & 15)))
"""


def test_a_spent_network_budget_refuses_dns_questions_too(work: Path, tmp_path: Path) -> None:
    """Once the budget is spent a name is no longer looked up, by a connection or by a
    question: the name would leave the host with the lookup, past the budget."""
    # localhost resolves to loopback, answered because the address entry names it
    run, _ = _past_budget(
        work,
        tmp_path,
        lambda url: (
            f"{PYTHON} -c '{ASK}' localhost before; "
            f"{CURL} -sS -m 10 -o /dev/null {url}/big/1048576; "
            f"{PYTHON} -c '{ASK}' localhost after"
        ),
        ["localhost"],
    )
    assert "before=127.0.0.1" in run.out and "after=rcode5" in run.out, run.out
    last = run.decisions[-1]
    assert (last.via, last.host, last.verdict, last.reason) == (
        "dns",
        "localhost",
        "deny",
        "budget-exhausted",
    ), run.decisions
    assert last.address is None
    assert run.audit_ok, run.audit_detail


# A public address no one here talks to, put on the host's loopback for one test: the host
# then holds it like a public interface address of its own.
HOST_OWN = "11.0.0.46"


@pytest.fixture
def host_own_address() -> Iterator[str]:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("adding an address to the host needs root and ip(8)")
    subprocess.run(["ip", "addr", "add", f"{HOST_OWN}/32", "dev", "lo"], check=True)
    try:
        yield HOST_OWN
    finally:
        subprocess.run(["ip", "addr", "del", f"{HOST_OWN}/32", "dev", "lo"], check=False)


def test_an_address_of_the_host_itself_is_opened_only_when_named(
    work: Path, tmp_path: Path, host_own_address: str
) -> None:
    """``*:port`` allows a public address (the judgement stands as recorded), but one the
    host itself holds would reach the host's own listeners from its namespace: the proxy
    does not connect unless an address entry names it."""
    with serving("host", host=host_own_address) as server:
        url = f"http://{host_own_address}:{server.port}"
        script = f"{CURL} -sS -m 5 -o /dev/null -w 'own:%{{http_code}}\\n' {url}/own; true"
        spec = allow_spec(_sh(script), [f"*:{server.port}"], work)
        run = run_allowed(spec, tmp_path / "any")
        assert server.connections == 0, server.paths
        (decision,) = run.decisions
        assert (decision.verdict, decision.address) == ("allow", host_own_address), decision
        assert decision.error is not None and "host itself" in decision.error, decision
        assert run.audit_ok, run.audit_detail
        named = allow_spec(_sh(script), [f"{host_own_address}:{server.port}"], work)
        reached = run_allowed(named, tmp_path / "named")
    assert "own:200" in reached.out and server.paths == ["/own"], reached.out
    assert reached.audit_ok, reached.audit_detail


# Opens one connection to each of 127.0.0.1 ... 127.0.0.<argv[2]> on port argv[1] through
# the proxy and writes nothing on any of them.
OPEN_MANY = r"""
import socket, sys
for i in range(1, int(sys.argv[2]) + 1):
    s = socket.create_connection(("127.0.0.1", 3128))
    s.sendall(b"CONNECT 127.0.0.%d:%s HTTP/1.1\r\n\r\n" % (i, sys.argv[1].encode()))
    s.recv(100)
    s.close()
"""


def test_every_connection_opened_pays_for_its_address(work: Path, tmp_path: Path) -> None:
    """The address a connection is opened to leaves the host whether or not a byte
    follows, and under a network entry the workload chooses it: 40 connections that carry
    nothing, each to an address of its choosing, are not opened past a 64-byte budget."""
    with serving("many", host="0.0.0.0") as server:
        script = f"{PYTHON} -c '{OPEN_MANY}' {server.port} 40"
        budgets = BudgetRequirements(network_bytes=Budget(64, MinGuarantee.ENFORCED))
        spec = allow_spec(_sh(script), [f"127.0.0.0/8:{server.port}"], work, budgets=budgets)
        run = run_allowed(spec, tmp_path / "ledger")
    opened = [d for d in run.decisions if d.verdict == "allow"]
    assert server.connections == len(opened) == 64 // 6, run.decisions
    assert all(d.sent == 6 and d.received == 0 for d in opened), opened
    refused = [d for d in run.decisions if d.verdict == "deny"]
    assert {d.reason for d in refused} == {"budget-exhausted"} and len(refused) == 40 - 10
    assert run.audit_ok, run.audit_detail
