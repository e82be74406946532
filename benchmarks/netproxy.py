"""The allow list's proxy, side by side with a direct connection, in one process.

A test HTTP server on the host's loopback. The same curl command runs twice per round:
on the host, straight to the server (the reference), and inside a bvisor run whose allow
list names the server, so every byte crosses the host's proxy (accept in the workload's
namespace, judge, connect, relay). Measured by curl itself (``%{time_total}``, so the
run's own set-up is not counted): a bulk download (throughput) and a batch of small
requests, one connection each (per-connection cost: judgement, outbound connect, the
decision recorded durably in the ledger). Prints medians and ratios; never asserts.

Usage: python benchmarks/netproxy.py [--rounds N] [--mib M] [--requests K] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.e2e.netkit import CURL, allow_spec, run_allowed, serving


def _curl_lines(url: str, requests: int, size: int) -> str:
    big = f"{CURL} -s -o /dev/null -w 'bulk %{{time_total}}\\n' {url}/big/{size}"
    small = " ".join(f"{url}/s{i}" for i in range(requests))
    each = f"{CURL} -s -o /dev/null -w 'small %{{time_total}}\\n' --no-keepalive {small}"
    return f"{big}; {each}"


def _parse(out: str) -> tuple[float, float]:
    bulk = [float(line.split()[1]) for line in out.splitlines() if line.startswith("bulk ")]
    small = [float(line.split()[1]) for line in out.splitlines() if line.startswith("small ")]
    if len(bulk) != 1 or not small:
        raise RuntimeError(f"unexpected curl output: {out!r}")
    return bulk[0], statistics.median(small)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    size = args.mib << 20
    direct: list[tuple[float, float]] = []
    proxied: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory() as raw, serving("bench") as server:
        scratch = Path(raw)
        url = f"http://127.0.0.1:{server.port}"
        script = _curl_lines(url, args.requests, size)
        for round_ in range(args.rounds):
            done = subprocess.run(
                ["/bin/sh", "-c", script], capture_output=True, text=True, check=True
            )
            direct.append(_parse(done.stdout))
            work = scratch / f"w{round_}"
            work.mkdir()
            spec = allow_spec(["/bin/sh", "-c", script], [f"127.0.0.1:{server.port}"], work)
            proxied.append(_parse(run_allowed(spec, scratch / f"l{round_}").out))
    bulk_direct = statistics.median(b for b, _ in direct)
    bulk_proxy = statistics.median(b for b, _ in proxied)
    small_direct = statistics.median(s for _, s in direct)
    small_proxy = statistics.median(s for _, s in proxied)
    result = {
        "rounds": args.rounds,
        "bulk_mib": args.mib,
        "direct_mib_per_s": round(args.mib / bulk_direct, 1),
        "proxy_mib_per_s": round(args.mib / bulk_proxy, 1),
        "bulk_time_ratio": round(bulk_proxy / bulk_direct, 2),
        "small_requests": args.requests,
        "direct_ms_per_request": round(small_direct * 1000, 2),
        "proxy_ms_per_request": round(small_proxy * 1000, 2),
        "per_request_ratio": round(small_proxy / small_direct, 2),
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"bulk {args.mib} MiB: direct {result['direct_mib_per_s']} MiB/s, through the "
            f"proxy {result['proxy_mib_per_s']} MiB/s ({result['bulk_time_ratio']}x the time)"
        )
        print(
            f"one small request per connection: direct {result['direct_ms_per_request']} ms, "
            f"through the proxy {result['proxy_ms_per_request']} ms "
            f"({result['per_request_ratio']}x)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
