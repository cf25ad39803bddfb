"""Namespaced as mcit_bench.benchmarks."""
