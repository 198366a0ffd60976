"""Helpers for the benchmarks in scripts/: the original implementations restated as reference
loops, timing harnesses, and a bare PyTorch training loop. Not imported by the plugin itself."""
