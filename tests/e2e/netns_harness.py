"""Run inside a test network namespace of its own: names, wildcards and public addresses.

``python -m tests.e2e.netns_harness`` is started by ``test_network_names.py`` under
``unshare --mount --net`` (with ``--user --map-root-user`` for a normal user), so what it
sets up is the test's alone: HTTP servers listen on "public" addresses (93.184.216.34 and
friends) and a private one (10.9.9.9) in a second network namespace, a neighbour one veth
hop away that the harness's namespace routes them to (an address the proxy's own namespace
held would be the host's own, which the proxy does not open unless an entry names it),
and ``/etc/hosts`` is bound over with the test's names. The proxy of a real
bvisor run in here resolves those names with the host's own resolver (the hosts file),
exactly as it would any name. Prints one JSON line: per scenario, what each server saw
and what the ledger recorded, and whether replay verified it.
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from bvisor.contract.budgets import Budget, BudgetRequirements, MinGuarantee
from tests.e2e.netkit import CURL, PYTHON, allow_spec, run_allowed, serving

ADDRESSES = {
    "www": "93.184.216.34",
    "api": "93.184.216.35",
    "multi": "93.184.216.36",
    "private": "10.9.9.9",
}
HOSTS = """127.0.0.1 localhost
93.184.216.34 www.example.test example.test
93.184.216.35 api.example.test other.test
10.9.9.9 multi.example.test
93.184.216.36 multi.example.test
10.9.9.9 internal.test
"""
ASKS = [
    ("www", "http://www.example.test/w"),
    ("api", "http://api.example.test/a"),
    ("apex", "http://example.test/apex"),
    ("port", "http://other.test/o"),
    ("internal", "http://internal.test/i"),
    ("multi", "http://multi.example.test/m"),
    ("by-address", "http://93.184.216.34/by-address"),
]


_CLONE_NEWNET = 0x40000000
_LINK = ("10.200.0.1", "10.200.0.2")  # this namespace's end of the veth, the servers'


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, _CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "setns")


def _setup(scratch: Path) -> int:
    """Set the namespaces up; the servers' network namespace, as an open fd."""
    neighbour = subprocess.Popen(["unshare", "--net", "sleep", "600"])
    own = os.stat("/proc/self/ns/net").st_ino
    for _ in range(500):
        if os.stat(f"/proc/{neighbour.pid}/ns/net").st_ino != own:
            break
        time.sleep(0.01)
    servers = os.open(f"/proc/{neighbour.pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    pid = str(neighbour.pid)
    there = ["nsenter", "--target", pid, "--net"]
    commands = [
        ["ip", "link", "set", "lo", "up"],
        ["ip", "link", "add", "bvh", "type", "veth", "peer", "name", "bvs", "netns", pid],
        ["ip", "addr", "add", f"{_LINK[0]}/30", "dev", "bvh"],
        ["ip", "link", "set", "bvh", "up"],
        *(["ip", "route", "add", f"{a}/32", "via", _LINK[1]] for a in ADDRESSES.values()),
        [*there, "ip", "link", "set", "lo", "up"],
        [*there, "ip", "addr", "add", f"{_LINK[1]}/30", "dev", "bvs"],
        [*there, "ip", "link", "set", "bvs", "up"],
        [*there, "ip", "route", "add", "default", "via", _LINK[0]],
        *([*there, "ip", "addr", "add", f"{a}/32", "dev", "lo"] for a in ADDRESSES.values()),
    ]
    for command in commands:
        subprocess.run(command, check=True)
    neighbour.kill()  # the servers' fd keeps the namespace
    neighbour.wait()
    hosts = scratch / "hosts"
    hosts.write_text(HOSTS)
    subprocess.run(["mount", "--bind", str(hosts), "/etc/hosts"], check=True)
    return servers


@contextmanager
def _in_namespace(fd: int) -> Iterator[None]:
    """This thread in the namespace ``fd`` for the block: a socket made there stays there
    (and a thread started there does too), whatever the thread does next."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        _setns(fd)
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(home)


def _script() -> str:
    lines = [
        f"{CURL} -s -m 10 -o /dev/null -w '{name}=%{{http_code}}\\n' {url}" for name, url in ASKS
    ]
    lines.append(
        f"{CURL} -s -m 5 --noproxy '*' -o /dev/null http://{ADDRESSES['www']}/direct "
        "&& echo direct=REACHED || echo direct=no-route"
    )
    return "\n".join(lines)


# Asks the allow list's resolver directly (the workload's /etc/hosts is this harness's, so
# the C library would answer these names from it without asking): each question's answer
# or rcode, then HTTP through the proxy by an answered address and by one never answered.
DNS_SCRIPT = r"""
import socket, struct, urllib.error, urllib.request

def ask(name, qtype=1):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(5)
    wire = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    s.sendto(struct.pack("!HHHHHH", 7, 0x0100, 1, 0, 0, 0) + wire + struct.pack("!HH", qtype, 1),
             ("127.0.0.1", 53))
    d = s.recv(600)
    if struct.unpack("!H", d[6:8])[0] == 0:
        return "rcode%d" % (d[3] & 15)
    rdata = d[12 + len(wire) + 4 + 12:]
    return socket.inet_ntop(socket.AF_INET if len(rdata) == 4 else socket.AF_INET6, rdata)

def get(url):
    try:
        return str(urllib.request.urlopen(url, timeout=10).status)
    except urllib.error.HTTPError as e:
        return str(e.code)
    except Exception as e:
        return type(e).__name__

conf = open("/etc/resolv.conf").read()
print("resolv=" + ("ours" if "nameserver 127.0.0.1" in conf else "host"))
www = ask("www.example.test")
print("www=" + www)
print("unlisted=" + ask("other.test"))
print("private=" + ask("internal.test"))
print("txt=" + ask("www.example.test", 16))
print("by-answer=" + get("http://%s/dns" % www))
print("not-answered=" + get("http://93.184.216.35/na"))
"""


# Ten questions for one listed name under an Enforced budget that pays for six lookups:
# each lookup costs the name's 16 bytes (the name leaves the host in it).
DNS_BUDGET = 100
DNS_BUDGET_SCRIPT = (
    DNS_SCRIPT.split("conf = open")[0]
    + r"""
for i in range(10):
    print("ask%d=%s" % (i, ask("www.example.test")))
"""
)


def _scenario(
    scratch: Path,
    namespace: int,
    name: str,
    entries: list[str],
    command: list[str] | None = None,
    hooks: frozenset[str] = frozenset(),
    budgets: BudgetRequirements | None = None,
) -> dict[str, object]:
    work = scratch / name
    work.mkdir()
    with ExitStack() as stack:
        with _in_namespace(namespace):
            servers = {
                label: stack.enter_context(serving(label, address, 80))
                for label, address in ADDRESSES.items()
            }
        spec = allow_spec(command or ["/bin/sh", "-c", _script()], entries, work, budgets=budgets)
        run = run_allowed(spec, scratch / f"{name}-ledger", hooks)
    return {
        "out": run.out,
        "outcome": run.report.body.outcome.value,
        "hits": {label: server.paths for label, server in servers.items()},
        "decisions": [d.to_value() for d in run.decisions],
        "audit_ok": run.audit_ok,
        "audit_detail": run.audit_detail,
        "network_bytes": next(
            w.observed
            for w in run.report.body.budget_witnesses
            if w.dimension.value == "network_bytes"
        ),
    }


def main() -> int:
    with tempfile.TemporaryDirectory() as raw:
        scratch = Path(raw)
        try:
            namespace = _setup(scratch)
        except (OSError, subprocess.CalledProcessError) as exc:
            print(json.dumps({"setup_failed": str(exc)}))
            return 0
        result = {
            "names": _scenario(
                scratch,
                namespace,
                "names",
                ["*.example.test:80", "internal.test:80", "other.test:81"],
            ),
            "named_range": _scenario(
                scratch, namespace, "named_range", ["internal.test:80", "10.9.9.0/24:80"]
            ),
            "dns": _scenario(
                scratch,
                namespace,
                "dns",
                ["*.example.test:80", "internal.test:80"],
                [PYTHON, "-c", DNS_SCRIPT],
            ),
            "dns_budget": _scenario(
                scratch,
                namespace,
                "dns_budget",
                ["*.example.test:80"],
                [PYTHON, "-c", DNS_BUDGET_SCRIPT],
                budgets=BudgetRequirements(network_bytes=Budget(DNS_BUDGET, MinGuarantee.ENFORCED)),
            ),
            "dns_lie": _scenario(
                scratch,
                namespace,
                "dns_lie",
                ["*.example.test:80", "internal.test:80"],
                [PYTHON, "-c", DNS_SCRIPT],
                frozenset({"proxy_allow_all"}),
            ),
        }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
