"""Run inside a test network namespace of its own: names, wildcards and public addresses.

``python -m tests.e2e.netns_harness`` is started by ``test_network_names.py`` under
``unshare --mount --net`` (with ``--user --map-root-user`` for a normal user), so what it
sets up is the test's alone: the namespace's loopback carries "public" addresses
(93.184.216.34 and friends) and a private one (10.9.9.9), ``/etc/hosts`` is bound over
with the test's names, and HTTP servers listen on those addresses. The proxy of a real
bvisor run in here resolves those names with the host's own resolver (the hosts file),
exactly as it would any name. Prints one JSON line: per scenario, what each server saw
and what the ledger recorded, and whether replay verified it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from contextlib import ExitStack
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


def _setup(scratch: Path) -> None:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    for address in ADDRESSES.values():
        subprocess.run(["ip", "addr", "add", f"{address}/32", "dev", "lo"], check=True)
    hosts = scratch / "hosts"
    hosts.write_text(HOSTS)
    subprocess.run(["mount", "--bind", str(hosts), "/etc/hosts"], check=True)


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
    name: str,
    entries: list[str],
    command: list[str] | None = None,
    hooks: frozenset[str] = frozenset(),
    budgets: BudgetRequirements | None = None,
) -> dict[str, object]:
    work = scratch / name
    work.mkdir()
    with ExitStack() as stack:
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
            _setup(scratch)
        except (OSError, subprocess.CalledProcessError) as exc:
            print(json.dumps({"setup_failed": str(exc)}))
            return 0
        result = {
            "names": _scenario(
                scratch, "names", ["*.example.test:80", "internal.test:80", "other.test:81"]
            ),
            "named_range": _scenario(
                scratch, "named_range", ["internal.test:80", "10.9.9.0/24:80"]
            ),
            "dns": _scenario(
                scratch,
                "dns",
                ["*.example.test:80", "internal.test:80"],
                [PYTHON, "-c", DNS_SCRIPT],
            ),
            "dns_budget": _scenario(
                scratch,
                "dns_budget",
                ["*.example.test:80"],
                [PYTHON, "-c", DNS_BUDGET_SCRIPT],
                budgets=BudgetRequirements(network_bytes=Budget(DNS_BUDGET, MinGuarantee.ENFORCED)),
            ),
            "dns_lie": _scenario(
                scratch,
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
