"""Namespaced as mcit_bench.task_orders."""
