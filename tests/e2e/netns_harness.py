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

from tests.e2e.netkit import CURL, allow_spec, run_allowed, serving

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


def _scenario(scratch: Path, name: str, entries: list[str]) -> dict[str, object]:
    work = scratch / name
    work.mkdir()
    with ExitStack() as stack:
        servers = {
            label: stack.enter_context(serving(label, address, 80))
            for label, address in ADDRESSES.items()
        }
        spec = allow_spec(["/bin/sh", "-c", _script()], entries, work)
        run = run_allowed(spec, scratch / f"{name}-ledger")
    return {
        "out": run.out,
        "outcome": run.report.body.outcome.value,
        "hits": {label: server.paths for label, server in servers.items()},
        "decisions": [d.to_value() for d in run.decisions],
        "audit_ok": run.audit_ok,
        "audit_detail": run.audit_detail,
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
        }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
