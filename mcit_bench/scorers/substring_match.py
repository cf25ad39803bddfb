"""CoIN ImageNet: the class name and the prediction match when either contains the other."""
from __future__ import annotations

from typing import Optional

from mcit_bench.scorers.base import AccuracyScorer, ScoreResult, require_str


class ImageNetSubstring(AccuracyScorer):
    """CoIN ImageNet: correct iff target in pred or pred in target (case-sensitive, no stripping).

    CoIN pairs predictions with answers BY POSITION in the test file, which is what this
    interface does. Native quirk kept: an empty prediction is a substring of every target and
    counts correct; `details["n_empty"]` reports how many there were.
    """

    name = "imagenet_substring"
    variants = ("coin",)

    def is_correct(self, prediction: str, record: dict) -> bool:
        target = require_str(record, "target", self.name)
        return target in prediction or prediction in target

    def _score(self, predictions: list[Optional[str]], records: list[dict]) -> ScoreResult:
        result = super()._score(predictions, records)
        result.details["n_empty"] = sum(1 for p in predictions if p == "")
        return result
