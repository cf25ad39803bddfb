"""Statistics of a leaderboard row: mean and sample standard deviation over runs; paired tests against a baseline."""
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


# ---------------------------------------------------------------- paired comparison against a baseline

PairKey = tuple[str, int]  # (task order, seed)


@dataclass
class Paired:
    """A method against the baseline over the same (order, seed) runs: differences method - baseline."""

    n: int  # pairs where both runs have the metric
    mean_diff: float | None
    ci_low: float | None  # bootstrap percentile interval of the mean difference (None when n < 2)
    ci_high: float | None
    statistic: float | None  # Wilcoxon signed-rank W = min(W+, W-) (two-sided)
    p_value: float | None


def paired_differences(values: dict[PairKey, float | None], baseline: dict[PairKey, float | None]) -> list[float]:
    """``values[k] - baseline[k]`` for every (order, seed) both have, in key order."""
    keys = sorted(k for k in set(values) & set(baseline)
                  if values[k] is not None and baseline[k] is not None
                  and not math.isnan(float(values[k])) and not math.isnan(float(baseline[k])))
    return [float(values[k]) - float(baseline[k]) for k in keys]


def wilcoxon_signed_rank(diffs: Iterable[float]) -> tuple[float, float] | None:
    """Two-sided Wilcoxon signed-rank test of paired differences: (W, p).

    Zero differences are dropped (Wilcoxon's convention); the p-value is exact for small samples without
    ties (scipy's ``method="auto"``). All differences zero: (0, 1). No difference: None.
    """
    values = [float(d) for d in diffs]
    if not values:
        return None
    nonzero = [d for d in values if d != 0.0]
    if not nonzero:
        return 0.0, 1.0
    from scipy.stats import wilcoxon

    result = wilcoxon(nonzero, zero_method="wilcox", alternative="two-sided")
    return float(result.statistic), float(result.pvalue)


def bootstrap_mean_interval(diffs: Iterable[float], confidence: float = 0.95, resamples: int = 9999,
                            seed: int = 0) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the mean difference (seeded: the same runs give the same interval)."""
    values = np.asarray([float(d) for d in diffs])
    if len(values) < 2:
        return None
    if np.all(values == values[0]):
        return float(values[0]), float(values[0])
    from scipy.stats import bootstrap

    result = bootstrap((values,), np.mean, confidence_level=confidence, n_resamples=resamples, method="percentile",
                       rng=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def paired_comparison(values: dict[PairKey, float | None], baseline: dict[PairKey, float | None]) -> Paired:
    diffs = paired_differences(values, baseline)
    test = wilcoxon_signed_rank(diffs)
    interval = bootstrap_mean_interval(diffs)
    return Paired(n=len(diffs), mean_diff=float(np.mean(diffs)) if diffs else None,
                  ci_low=None if interval is None else interval[0], ci_high=None if interval is None else interval[1],
                  statistic=None if test is None else test[0], p_value=None if test is None else test[1])
