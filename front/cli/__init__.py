"""Command-line front ends: `bvisor`, `bvisor-ledger`, `bvisor-replay`."""
