"""Tests for bvisor.canonical and bvisor.digest (a package so module names stay unique)."""
