"""A separate appender process for the crash and concurrency tests.

``ledger_appender.py DIR loop``: append forever, alternating single appends and batches,
printing one ``SEQ:HASH`` line per acknowledged event (flushed only after ``append``
returned, so every printed line is an acknowledged, durable event).
``ledger_appender.py DIR count N NAME``: wait for a line on stdin (a start barrier), then
append N events of run NAME (hex) and exit.
"""

from __future__ import annotations

import random
import sys

from bvisor.ledger import Ledger


def main() -> None:
    path, mode = sys.argv[1], sys.argv[2]
    out = sys.stdout
    with Ledger.open(path, create=True, map_size=128 * 1024) as ledger:
        if mode == "count":
            total, run = int(sys.argv[3]), bytes.fromhex(sys.argv[4])
            sys.stdin.readline()  # a start barrier: all appenders begin together
            for index in range(total):
                receipt = ledger.append("note.concurrent", {"run": run, "index": index}, run)
                out.write(f"{receipt.seq}:{receipt.hash.hex()}\n")
            out.flush()
            return
        rng = random.Random()
        run = rng.randbytes(16)
        index = 0
        while True:
            size = rng.choice((1, 1, 3, 17))
            items = [
                ("note.crash", {"index": index + k, "pad": rng.randbytes(rng.randrange(600))}, run)
                for k in range(size)
            ]
            receipts = ledger.append_many(items) if size > 1 else [ledger.append(*items[0])]
            index += size
            out.write("".join(f"{r.seq}:{r.hash.hex()}\n" for r in receipts))
            out.flush()


if __name__ == "__main__":
    main()
