"""Tabular benchmarks (ground truth) for search spaces."""
