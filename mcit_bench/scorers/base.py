"""The scorer interface: `Scorer`, `ScoreResult` and the accuracy base class.

A record is a canonical test record dict: `uid`, `target` (str), `references` (list[str]),
`choices` (list[str] | None), `bbox`, `image_size`, `meta` (dict). Predictions are aligned with
records by position. A prediction may be None: the model produced nothing for that record
(e.g. a crashed shard); it counts as wrong and stays in the denominator unless a variant says
otherwise (see `scienceqa/regex`).

Predictions are scored as given: the generation pipeline strips model output, as the native
UCIT/CoIN pipelines do, so scorers only strip where the native formula does.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Optional, Protocol, Sequence, runtime_checkable

from mcit_bench.errors import UserError


@dataclass
class ScoreResult:
    """One scorer's verdict on one task.

    score: 0-100. details: scorer-specific numbers (n, n_correct, per-metric caption scores...).
    per_sample: one value per record on the same 0-100 scale, None where a sample is not scored
    (or the whole list is None when the metric is corpus-level and has no per-sample form).
    """

    score: float
    details: dict[str, Any] = field(default_factory=dict)
    per_sample: Optional[list[Optional[float]]] = None


@runtime_checkable
class Scorer(Protocol):
    """Anything with a name, a variant and `score(predictions, records) -> ScoreResult`."""

    name: str
    variant: str

    def score(self, predictions: Sequence[Optional[str]], records: Sequence[dict]) -> ScoreResult:
        ...


class BaseScorer:
    """Common plumbing: variant checking and input validation.

    Subclasses set `name` and `variants` (the first variant is the default) and implement
    `_score`.
    """

    name: ClassVar[str] = ""
    variants: ClassVar[tuple[str, ...]] = ("default",)

    def __init__(self, variant: Optional[str] = None) -> None:
        if variant is None:
            variant = self.variants[0]
        if variant not in self.variants:
            raise UserError(
                f"scorer {self.name!r} has no variant {variant!r}; known variants: "
                + ", ".join(self.variants)
            )
        self.variant = variant

    def __repr__(self) -> str:
        return f"{type(self).__name__}(variant={self.variant!r})"

    def score(self, predictions: Sequence[Optional[str]], records: Sequence[dict]) -> ScoreResult:
        """Validate the inputs, then score them."""
        predictions = list(predictions)
        records = list(records)
        if len(predictions) != len(records):
            raise UserError(
                f"scorer {self.name}: {len(predictions)} predictions for {len(records)} records "
                "(they are matched by position and must have the same length)"
            )
        if not records:
            raise UserError(f"scorer {self.name}: nothing to score (no records)")
        for i, pred in enumerate(predictions):
            if pred is not None and not isinstance(pred, str):
                raise UserError(
                    f"scorer {self.name}: prediction {i} (uid {_uid(records[i])}) is "
                    f"{type(pred).__name__}, expected a string or None"
                )
        for rec in records:
            if not isinstance(rec, dict):
                raise UserError(f"scorer {self.name}: a record is {type(rec).__name__}, expected a dict")
        return self._score(predictions, records)

    def _score(self, predictions: list[Optional[str]], records: list[dict]) -> ScoreResult:
        raise NotImplementedError


class AccuracyScorer(BaseScorer):
    """Accuracy: percentage of records whose prediction `is_correct`.

    Denominator: all records (a None prediction counts wrong).
    """

    def is_correct(self, prediction: str, record: dict) -> bool:
        raise NotImplementedError

    def _score(self, predictions: list[Optional[str]], records: list[dict]) -> ScoreResult:
        per_sample: list[Optional[float]] = []
        for pred, rec in zip(predictions, records):
            ok = pred is not None and self.is_correct(pred, rec)
            per_sample.append(100.0 if ok else 0.0)
        n_correct = sum(1 for v in per_sample if v)
        n_missing = sum(1 for p in predictions if p is None)
        return ScoreResult(
            score=100.0 * n_correct / len(records),
            details={"n": len(records), "n_correct": n_correct, "n_missing": n_missing},
            per_sample=per_sample,
        )


def _uid(record: Any) -> str:
    if isinstance(record, dict):
        return str(record.get("uid", "?"))
    return "?"


def require_str(record: dict, key: str, scorer: str) -> str:
    """record[key] as a string, or a UserError naming the record."""
    value = record.get(key)
    if not isinstance(value, str):
        raise UserError(
            f"scorer {scorer}: record {_uid(record)} needs a string {key!r}, got {type(value).__name__}"
        )
    return value


def require_str_list(record: dict, key: str, scorer: str) -> list[str]:
    """record[key] as a non-empty list of strings, or a UserError naming the record."""
    value = record.get(key)
    if not isinstance(value, (list, tuple)) or not value or not all(isinstance(v, str) for v in value):
        raise UserError(
            f"scorer {scorer}: record {_uid(record)} needs a non-empty list of strings in {key!r}"
        )
    return list(value)
