"""Statistics of a leaderboard row: mean and sample standard deviation over runs."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

import numpy as np


@dataclass
class Stat:
    mean: float | None
    std: float | None  # sample std (ddof=1); None when n < 2
    n: int


def stat(values: Iterable[float | None]) -> Stat:
    """Mean and sample std (ddof=1) of the non-null values; n counts them."""
    vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not vals:
        return Stat(None, None, 0)
    arr = np.array(vals)
    return Stat(float(arr.mean()), float(arr.std(ddof=1)) if len(vals) > 1 else None, len(vals))
