"""Benchmarks: speed and memory of curation, data loading and training against their limits (see README, Performance)."""
