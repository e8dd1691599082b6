"""Metrics shared by training, evaluation and benchmarks."""
