"""The divergence message: stage, task, step, the settings that size an update, and how to go on."""
from __future__ import annotations

import pytest

from mcit_bench.engine.divergence import Diverged, check_losses


def test_a_non_finite_loss_names_where_and_how_to_continue():
    check_losses({"lm": 1.5}, 2, "chart", 10, 100, {"lr": 1e-3})  # finite: nothing happens
    with pytest.raises(Diverged) as caught:
        check_losses({"lm": float("nan"), "align": 0.3}, 3, "chart", 17, 100,
                     {"lr": 1e-3, "proj_lr": 5e-4, "batch_size": 8, "rank": 16})
    message = str(caught.value)
    assert "non-finite loss (lm=nan) at stage 3 (task 'chart'), step 17 of 100" in message
    assert "with lr=0.001, proj_lr=0.0005, batch_size=8;" in message and "rank" not in message
    assert "stages 1-2 are kept" in message and "--resume --set lr=<smaller>" in message
    assert caught.value.exit_code == 1
