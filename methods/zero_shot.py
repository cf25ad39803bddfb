"""zero-shot: the untouched backbone (row 0 for everyone; every row equals it)."""
from __future__ import annotations

from mcit_bench.registry import register_method
from mcit_bench.strategy import Strategy


@register_method("zero-shot", "zeroshot")
class ZeroShot(Strategy):
    """Trains nothing. Every stage is evaluated anyway, so the matrix shows the backbone as it is."""

    trains = False
