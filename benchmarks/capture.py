"""Host memory against workload output size: the supervisor's peak RSS stays flat.

Each row runs the installed ``bvisor run`` command in a child process on a workload that
writes N bytes to stdout (``yes | head -c N``), and reads the child's peak resident set
(``ru_maxrss`` from ``wait4``: the kernel's high-water mark, file pages included). The
reference, measured in the same run, is ``bvisor run -- /bin/true`` in the same mode:
each row prints peak RSS and its ratio to that reference.

Modes: ``relay`` (output passed through to a pipe that a reader drains, recorded in a
ledger), ``no-record`` (relay, nothing recorded: the capture path alone) and ``json``
(output collected into the JSON document, recorded). Never asserts: numbers for notes.

Usage: python benchmarks/capture.py [--sizes 1M,16M,64M,256M,1G] [--modes relay,json] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BVISOR = [sys.executable, "-m", "bvisor.front.cli.main", "run"]
_UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def parse_size(text: str) -> int:
    text = text.strip().upper()
    if text[-1:] in _UNITS:
        return int(text[:-1]) * _UNITS[text[-1]]
    return int(text)


def _drain(fd: int, counter: list[int]) -> None:
    while True:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            break
        counter[0] += len(chunk)


def peak_rss(mode: str, size: int | None, ledger: Path, work: Path) -> tuple[int, int, int]:
    """(peak RSS in bytes, exit status, bytes the reader got) of one bvisor run."""
    command = ["/bin/true"] if size is None else ["/bin/sh", "-c", f"yes | head -c {size}"]
    args = [*BVISOR, "--ledger", str(ledger)]
    if mode == "no-record":
        args = [*BVISOR, "--no-record"]
    if mode == "json":
        args.append("--json")
    read_end, write_end = os.pipe()
    process = subprocess.Popen(
        [*args, "--", *command],
        stdout=write_end,
        stderr=subprocess.DEVNULL,
        cwd=work,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    os.close(write_end)
    got = [0]
    reader = threading.Thread(target=_drain, args=(read_end, got))
    reader.start()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    reader.join()
    os.close(read_end)
    return usage.ru_maxrss * 1024, process.returncode, got[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1M,16M,64M,256M,1G")
    parser.add_argument("--modes", default="relay,no-record,json")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sizes = [parse_size(item) for item in args.sizes.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bvisor-bench-capture-") as tmp:
        work = Path(tmp) / "work"
        work.mkdir()
        ledger = Path(tmp) / "ledger"
        for mode in args.modes.split(","):
            reference, _, _ = peak_rss(mode, None, ledger, work)
            for size in sizes:
                rss, status, got = peak_rss(mode, size, ledger, work)
                rows.append(
                    {
                        "mode": mode,
                        "output_bytes": size,
                        "peak_rss": rss,
                        "reference_rss": reference,
                        "ratio": round(rss / reference, 3),
                        "exit": status,
                        "reader_got": got,
                    }
                )
                if not args.json:
                    print(
                        f"{mode:<10} output {size / (1 << 20):>7.0f} MiB  peak RSS "
                        f"{rss / (1 << 20):6.1f} MiB  reference (/bin/true) "
                        f"{reference / (1 << 20):6.1f} MiB  ratio {rss / reference:5.2f}  "
                        f"exit {status}",
                        flush=True,
                    )
    if args.json:
        print(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
