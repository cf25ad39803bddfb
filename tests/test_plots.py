"""A run's own figures, and axes that do not draw noise as an effect."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from mcit_bench.plots import MIN_SPAN, _figure, _min_span, write_run_plots  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"


def test_a_tiny_effect_gets_at_least_the_minimum_span_around_zero():
    fig = _figure(4, 3)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot([2, 3, 4], [-0.01, -0.05, -0.02])  # autoscaled: -0.05..-0.01, a "dramatic" drop of 0.04 points
    _min_span(ax)
    low, high = ax.get_ylim()
    assert high - low == pytest.approx(MIN_SPAN) and low <= -0.05 and high >= 0.0
    wide = fig.add_subplot(2, 1, 2)
    wide.plot([1, 2], [5.0, 40.0])  # a real effect keeps its own range (with zero in view)
    _min_span(wide)
    assert wide.get_ylim()[0] <= 0.0 and wide.get_ylim()[1] >= 40.0


def test_run_plots_are_written_and_missing_matplotlib_is_one_line(tmp_path: Path, monkeypatch):
    R = np.array([[10.0, 20.0], [80.0, 30.0], [60.0, 90.0]])
    curves = {"A_t": [80.0, 75.0], "FGT_t": [None, 20.0], "FWD_t": [None, 10.0]}
    line = write_run_plots(tmp_path, R, ["a", "b"], curves, "m, order 1, seed 0")
    assert line == f"plots: {tmp_path / 'plots' / 'heatmap.png'}, {tmp_path / 'plots' / 'curves.png'}"
    assert all((tmp_path / "plots" / name).read_bytes()[:8] == PNG for name in ("heatmap.png", "curves.png"))
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if not installed
    other = tmp_path / "other"
    assert write_run_plots(other, R, ["a", "b"], curves, "m") == (
        "plots: none (matplotlib is not installed: pip install 'mcit-bench[plots]')")
    assert not other.exists()
