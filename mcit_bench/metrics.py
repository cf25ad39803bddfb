"""Continual-learning metrics as pure functions of the accuracy matrix R.

Specification: docs/reference.md, "Metrics" (mirrored in the docstrings below).

R is a float array of shape (T+1, T), scores in percent (0-100), NaN = not evaluated.
Row 0 is the zero-shot backbone; row t (1..T) is the model after training the t-th task;
column i-1 is the i-th task in training order. Formulas use the spec's 1-based notation
a[t][i] = R[t, i-1].

Every metric returns a Python float, or None when any cell it needs is NaN: a missing cell is
never read as 0 and never silently dropped from a mean (that would report a different metric).
Only numpy is imported here so the CLI stays fast.
"""
from __future__ import annotations

import warnings
from typing import Any, Optional, Sequence

import numpy as np

__all__ = [
    "ScaleWarning", "validate_matrix",
    "avg", "last", "mft", "diagonal", "bwt", "fgt", "fwd",
    "forgetting", "backward_transfer", "forward_transfer", "accuracy",
    "FORGETTING_VARIANTS", "BWT_VARIANTS", "FWD_VARIANTS", "ACCURACY_VARIANTS",
    "accuracy_curve", "forgetting_curve", "forward_transfer_curve", "A_t", "FGT_t", "FWD_t",
    "fgt_matrix", "fwd_matrix", "summarize",
]

FORGETTING_VARIANTS = ("chaudhry", "first_minus_last", "max_all_rows")
BWT_VARIANTS = ("lopez_paz", "diaz_rodriguez")
FWD_VARIANTS = ("zero_shot", "random_init", "finetune_reference")
ACCURACY_VARIANTS = ("avg", "diaz_rodriguez_A")

Matrix = Any  # anything np.asarray turns into a 2-D float array (None -> NaN)
Vector = Optional[Sequence[Optional[float]]]


class ScaleWarning(UserWarning):
    """The matrix looks like 0-1 fractions although mcit-bench scores are 0-100."""


# ---------------------------------------------------------------- validation and helpers

def validate_matrix(R: Matrix) -> np.ndarray:
    """Return R as a float array after checking shape (T+1, T), T >= 1, and values in [0, 100].

    Raises ValueError otherwise. A transposed matrix (T, T+1) fails the shape check, a matrix
    scaled twice (values > 100) fails the range check. All values <= 1 is legal (e.g. a model
    that scores near zero) but suspicious, so it emits a ScaleWarning.
    """
    arr = np.array(R, dtype=float)  # copy: callers' arrays are never modified
    if arr.ndim != 2:
        raise ValueError(f"accuracy matrix must be 2-D with shape (T+1, T), got {arr.ndim}-D")
    rows, cols = arr.shape
    if cols < 1 or rows != cols + 1:
        hint = " (transposed? rows are stages 0..T, columns are tasks)" if cols == rows + 1 else ""
        raise ValueError(
            f"accuracy matrix must have shape (T+1, T) with T >= 1, got {arr.shape}{hint}")
    present = arr[~np.isnan(arr)]
    bad = present[(present < 0) | (present > 100) | ~np.isfinite(present)]
    if bad.size:
        t, i = np.argwhere(arr == bad[0])[0]
        raise ValueError(
            f"accuracy matrix value {float(bad[0])!r} at stage {t}, task {i + 1} is outside [0, 100]: "
            "scores must be percentages (0-1 score scaled twice, or not scaled at all?)")
    # 0.0/1.0-only matrices are ambiguous; a fraction strictly between 0 and 1 everywhere
    # non-zero is the typical 0-1 scale mistake.
    if present.size and present.max() <= 1.0 and np.any((present > 0) & (present < 1)):
        warnings.warn("accuracy matrix has all values <= 1: scores must be on 0-100; "
                      "was a 0-1 accuracy passed without *100?", ScaleWarning, stacklevel=3)
    return arr


def _n_tasks(arr: np.ndarray) -> int:
    return arr.shape[1]


def _a(arr: np.ndarray, t: int, i: int) -> float:
    """a[t][i] with the spec's indices: t = stage 0..T, i = task 1..T."""
    return float(arr[t, i - 1])


def _mean(values: Sequence[float]) -> Optional[float]:
    """Mean of the terms, or None if there are none or any is NaN (never a partial mean)."""
    if not values or any(np.isnan(v) for v in values):
        return None
    return float(sum(values) / len(values))


def _ratio(total: Optional[float], denom: float) -> Optional[float]:
    if total is None or denom == 0:
        return None
    return float(total / denom)


def _sum(values: Sequence[float]) -> Optional[float]:
    if any(np.isnan(v) for v in values):
        return None
    return float(sum(values))


def _max_or_nan(values: Sequence[float]) -> float:
    # NaN if any is NaN: a max over a partly-missing column is not the max the spec means.
    return float("nan") if any(np.isnan(v) for v in values) else max(values)


def _vector(v: Vector, T: int, what: str) -> np.ndarray:
    if v is None:
        raise ValueError(f"{what} is required for this variant: a vector of T={T} scores (0-100)")
    arr = np.array([np.nan if x is None else x for x in v], dtype=float)
    if arr.shape != (T,):
        raise ValueError(f"{what} must have T={T} scores (one per task, training order), "
                         f"got shape {arr.shape}")
    present = arr[~np.isnan(arr)]
    if np.any((present < 0) | (present > 100) | ~np.isfinite(present)):
        raise ValueError(f"{what} has values outside [0, 100]: scores must be percentages")
    return arr


# ---------------------------------------------------------------- accuracy

def _acc_stage(arr: np.ndarray, t: int) -> Optional[float]:
    return _mean([_a(arr, t, i) for i in range(1, t + 1)])


def avg(R: Matrix) -> Optional[float]:
    """avg (MAA, "Avg") = (1/T) Σ_{t=1..T} (1/t) Σ_{i≤t} a[t][i]."""
    arr = validate_matrix(R)
    stages = [_acc_stage(arr, t) for t in range(1, _n_tasks(arr) + 1)]
    return None if any(s is None for s in stages) else float(np.mean(stages))


def last(R: Matrix) -> Optional[float]:
    """last (MFN, FAA, "Last") = (1/T) Σ_{i=1..T} a[T][i]."""
    arr = validate_matrix(R)
    T = _n_tasks(arr)
    return _mean([_a(arr, T, i) for i in range(1, T + 1)])


def mft(R: Matrix) -> Optional[float]:
    """mft (mean fine-tune accuracy, plasticity) = (1/T) Σ_{i=1..T} a[i][i]."""
    arr = validate_matrix(R)
    return _mean([_a(arr, i, i) for i in range(1, _n_tasks(arr) + 1)])


def diagonal(R: Matrix) -> list[Optional[float]]:
    """a[t][t] for t = 1..T: each task's score right after it was learned, by its position in the order
    (the terms of mft); None where the cell was not evaluated."""
    arr = validate_matrix(R)
    cells = [_a(arr, t, t) for t in range(1, _n_tasks(arr) + 1)]
    return [None if np.isnan(c) else c for c in cells]


def _diaz_rodriguez_A(arr: np.ndarray) -> Optional[float]:
    # A = Σ_{1≤i≤t≤T} a[t][i] / (T(T+1)/2): the whole lower triangle incl. the diagonal.
    T = _n_tasks(arr)
    total = _sum([_a(arr, t, i) for t in range(1, T + 1) for i in range(1, t + 1)])
    return _ratio(total, T * (T + 1) / 2)


def accuracy(R: Matrix, variant: str = "avg") -> Optional[float]:
    """Average accuracy by variant.

    - "avg" (default): see `avg`.
    - "diaz_rodriguez_A": A = Σ_{t≥i} a[t][i] / (T(T+1)/2), over 1 ≤ i ≤ t ≤ T.
    """
    _check_variant(variant, ACCURACY_VARIANTS, "accuracy")
    if variant == "avg":
        return avg(R)
    return _diaz_rodriguez_A(validate_matrix(R))


# ---------------------------------------------------------------- forgetting / backward transfer

def _fgt_term(arr: np.ndarray, t: int, i: int) -> float:
    """Chaudhry forgetting of task i at stage t: max_{i≤l<t} a[l][i] - a[t][i] (needs t > i)."""
    return _max_or_nan([_a(arr, l, i) for l in range(i, t)]) - _a(arr, t, i)


def _forgetting(arr: np.ndarray, variant: str) -> Optional[float]:
    T = _n_tasks(arr)
    if T < 2:
        return None  # (1/(T-1)) has no terms
    old = range(1, T)  # tasks i < T
    if variant == "chaudhry":
        terms = [_fgt_term(arr, T, i) for i in old]
    elif variant == "first_minus_last":
        terms = [_a(arr, i, i) - _a(arr, T, i) for i in old]
    else:  # max_all_rows: the max includes row T itself, so each term is clipped at 0
        terms = [_max_or_nan([_a(arr, l, i) for l in range(i, T + 1)]) - _a(arr, T, i)
                 for i in old]
    return _mean(terms)


def forgetting(R: Matrix, variant: str = "chaudhry") -> Optional[float]:
    """Average forgetting over the old tasks i < T (positive = accuracy was lost).

    - "chaudhry" (default, Chaudhry et al. 2018):
        (1/(T-1)) Σ_{i<T} (max_{i≤l≤T-1} a[l][i] - a[T][i])
    - "first_minus_last" (Avalanche "forgetting", = -bwt):
        (1/(T-1)) Σ_{i<T} (a[i][i] - a[T][i])
    - "max_all_rows" (PyCIL, Mammoth): (1/(T-1)) Σ_{i<T} (max_{i≤l≤T} a[l][i] - a[T][i]);
        the max includes row T, so each term is max(chaudhry term, 0).
    None for T = 1 or when a needed cell is missing.
    """
    _check_variant(variant, FORGETTING_VARIANTS, "forgetting")
    return _forgetting(validate_matrix(R), variant)


def fgt(R: Matrix) -> Optional[float]:
    """fgt (Chaudhry 2018) = (1/(T-1)) Σ_{i<T} (max_{i≤l≤T-1} a[l][i] - a[T][i])."""
    return forgetting(R, "chaudhry")


def backward_transfer(R: Matrix, variant: str = "lopez_paz") -> Optional[float]:
    """Backward transfer (negative = forgetting).

    - "lopez_paz" (default, Lopez-Paz & Ranzato 2017): (1/(T-1)) Σ_{i<T} (a[T][i] - a[i][i])
    - "diaz_rodriguez" (all pairs): Σ_{t=2..T} Σ_{i<t} (a[t][i] - a[i][i]) / (T(T-1)/2)
    None for T = 1 or when a needed cell is missing.
    """
    _check_variant(variant, BWT_VARIANTS, "bwt")
    arr = validate_matrix(R)
    T = _n_tasks(arr)
    if T < 2:
        return None
    if variant == "lopez_paz":
        return _mean([_a(arr, T, i) - _a(arr, i, i) for i in range(1, T)])
    total = _sum([_a(arr, t, i) - _a(arr, i, i) for t in range(2, T + 1) for i in range(1, t)])
    return _ratio(total, T * (T - 1) / 2)


def bwt(R: Matrix) -> Optional[float]:
    """bwt (Lopez-Paz & Ranzato 2017) = (1/(T-1)) Σ_{i<T} (a[T][i] - a[i][i])."""
    return backward_transfer(R, "lopez_paz")


# ---------------------------------------------------------------- forward transfer

def forward_transfer(R: Matrix, variant: str = "zero_shot",
                     baseline: Vector = None) -> Optional[float]:
    """Forward transfer.

    - "zero_shot" (default): (1/(T-1)) Σ_{i=2..T} (a[i-1][i] - a[0][i]); baseline unused.
    - "random_init" (GEM): (1/(T-1)) Σ_{i=2..T} (a[i-1][i] - b_i), with `baseline` = the
        vector b (T scores, training order) of a randomly initialised model; b_1 is unused.
    - "finetune_reference": (1/T) Σ_{i=1..T} (a[i][i] - f_i), with `baseline` = the vector f
        of single-task fine-tune scores (T extra runs). Defined for T = 1 (no T-1 denominator).
    None when a needed cell or baseline entry is missing, and for T = 1 (except
    finetune_reference). Needs the first super-diagonal, so a lower-triangle-only matrix gives None.
    """
    _check_variant(variant, FWD_VARIANTS, "fwd")
    arr = validate_matrix(R)
    T = _n_tasks(arr)
    if variant == "finetune_reference":
        f = _vector(baseline, T, "baseline (single-task fine-tune scores)")
        return _mean([_a(arr, i, i) - f[i - 1] for i in range(1, T + 1)])
    if variant == "random_init":
        b = _vector(baseline, T, "baseline (random-init scores)")
    else:
        b = arr[0]  # the zero-shot row
    if T < 2:
        return None
    return _mean([_a(arr, i - 1, i) - float(b[i - 1]) for i in range(2, T + 1)])


def fwd(R: Matrix) -> Optional[float]:
    """fwd (zero-shot baseline) = (1/(T-1)) Σ_{i=2..T} (a[i-1][i] - a[0][i])."""
    return forward_transfer(R, "zero_shot")


# ---------------------------------------------------------------- per-stage curves

def accuracy_curve(R: Matrix) -> list[Optional[float]]:
    """A_t = mean_{i≤t} a[t][i], for t = 1..T (list of length T)."""
    arr = validate_matrix(R)
    return [_acc_stage(arr, t) for t in range(1, _n_tasks(arr) + 1)]


def forgetting_curve(R: Matrix) -> list[Optional[float]]:
    """FGT_t = mean_{i<t} (max_{i≤l<t} a[l][i] - a[t][i]), t = 1..T; FGT_1 = None (no terms)."""
    arr = validate_matrix(R)
    return [_mean([_fgt_term(arr, t, i) for i in range(1, t)])
            for t in range(1, _n_tasks(arr) + 1)]


def forward_transfer_curve(R: Matrix) -> list[Optional[float]]:
    """FWD_t = mean_{2≤i≤t} (a[i-1][i] - a[0][i]), t = 1..T; FWD_1 = None (no terms)."""
    arr = validate_matrix(R)
    return [_mean([_a(arr, i - 1, i) - _a(arr, 0, i) for i in range(2, t + 1)])
            for t in range(1, _n_tasks(arr) + 1)]


# Spec names (Fwd-Prompt style): FGT_t(R)[-1] == fgt(R), FWD_t(R)[-1] == fwd(R).
A_t = accuracy_curve
FGT_t = forgetting_curve
FWD_t = forward_transfer_curve


# ---------------------------------------------------------------- matrices

def fgt_matrix(R: Matrix) -> np.ndarray:
    """F[t][i] = max_{i≤l<t} a[l][i] - a[t][i] for t > i (forgetting of task i at stage t).

    Shape (T+1, T) like R; NaN where t ≤ i or where a needed cell is missing.
    """
    arr = validate_matrix(R)
    T = _n_tasks(arr)
    F = np.full_like(arr, np.nan)
    for i in range(1, T + 1):
        for t in range(i + 1, T + 1):
            F[t, i - 1] = _fgt_term(arr, t, i)
    return F


def fwd_matrix(R: Matrix) -> np.ndarray:
    """W[t][i] = a[t][i] - a[0][i] for 1 ≤ t < i (effect of the tasks learned so far on the
    still-unseen task i, against zero-shot).

    Shape (T+1, T) like R; NaN elsewhere. Row 0 is NaN on purpose: the spec's "t < i" would
    include t = 0, but a[0][i] - a[0][i] is 0 by construction and says nothing about transfer.
    """
    arr = validate_matrix(R)
    T = _n_tasks(arr)
    W = np.full_like(arr, np.nan)
    for i in range(1, T + 1):
        for t in range(1, i):
            W[t, i - 1] = _a(arr, t, i) - _a(arr, 0, i)  # NaN propagates if either is missing
    return W


# ---------------------------------------------------------------- summary

def summarize(R: Matrix, random_baseline: Vector = None,
              finetune_scores: Vector = None) -> dict[str, Any]:
    """All metrics of R as a JSON-ready dict (floats or None, never NaN).

    Keys: avg, last, mft, bwt, fgt, fwd; curves {A_t, FGT_t, FWD_t}; variants {"<metric>.<name>":
    value} for every named variant computable from R alone, plus "fwd.random_init" /
    "fwd.finetune_reference" when `random_baseline` / `finetune_scores` are given.
    """
    arr = validate_matrix(R)
    with warnings.catch_warnings():
        # warn once (from validate_matrix above), not once per metric
        warnings.simplefilter("ignore", ScaleWarning)
        variants: dict[str, Optional[float]] = {}
        for name in FORGETTING_VARIANTS:
            variants[f"fgt.{name}"] = forgetting(arr, name)
        for name in BWT_VARIANTS:
            variants[f"bwt.{name}"] = backward_transfer(arr, name)
        variants["fwd.zero_shot"] = forward_transfer(arr, "zero_shot")
        if random_baseline is not None:
            variants["fwd.random_init"] = forward_transfer(arr, "random_init", random_baseline)
        if finetune_scores is not None:
            variants["fwd.finetune_reference"] = forward_transfer(
                arr, "finetune_reference", finetune_scores)
        for name in ACCURACY_VARIANTS:
            variants[f"acc.{name}"] = accuracy(arr, name)
        return {
            "avg": avg(arr), "last": last(arr), "mft": mft(arr),
            "bwt": bwt(arr), "fgt": fgt(arr), "fwd": fwd(arr),
            "curves": {"A_t": accuracy_curve(arr), "FGT_t": forgetting_curve(arr),
                       "FWD_t": forward_transfer_curve(arr)},
            "variants": variants,
        }


def _check_variant(variant: str, known: Sequence[str], metric: str) -> None:
    if variant not in known:
        raise ValueError(f"unknown {metric} variant {variant!r}; known: {', '.join(known)}")

