"""The bvisor contract: pure, frozen value types with canonical forms (no I/O)."""
