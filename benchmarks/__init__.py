"""Benchmarks: scripts that print figures (not tests, not library code)."""
