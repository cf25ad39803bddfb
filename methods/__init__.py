"""Namespaced as mcit_bench.methods."""
