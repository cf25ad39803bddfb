"""Whole-string answer matches: UCIT exact match and the CoIN VizWiz/VQAv2, GQA and OCR-VQA rules.

Each class states its normalisation; none strips punctuation unless the native script does.
"""
from __future__ import annotations

from mcit_bench.scorers.base import AccuracyScorer, require_str


def upper_match(prediction: str, target: str) -> bool:
    """pred.strip().upper() == target.strip().upper()."""
    return prediction.strip().upper() == target.strip().upper()


class ExactMatch(AccuracyScorer):
    """UCIT (ImageNet-R, ArxivQA, IconQA, CLEVR-Math): pred.strip().upper() == target.strip().upper().

    The native script compares pred.upper() == answer.upper() on an already stripped model
    output; there is no punctuation stripping, so "Cat." != "cat".
    """

    name = "exact_match"
    variants = ("ucit",)

    def is_correct(self, prediction: str, record: dict) -> bool:
        return upper_match(prediction, require_str(record, "target", self.name))


class VqaExact(AccuracyScorer):
    """CoIN VizWiz and VQAv2: case-insensitive exact match against the single `answer`.

    Native: pred.upper() == answer.upper(); the same rule as `exact_match`.
    """

    name = "vqa_exact"
    variants = ("coin",)

    def is_correct(self, prediction: str, record: dict) -> bool:
        return upper_match(prediction, require_str(record, "target", self.name))


class GqaMatch(AccuracyScorer):
    """CoIN GQA (testdev balanced): pred.rstrip('.').lower() == target.lower().

    Only trailing periods are removed (CoIN's convert_gqa_for_eval), nothing else.
    """

    name = "gqa"
    variants = ("coin",)

    def is_correct(self, prediction: str, record: dict) -> bool:
        return prediction.rstrip(".").lower() == require_str(record, "target", self.name).lower()


class OcrVqaMatch(AccuracyScorer):
    """CoIN OCR-VQA: pred.lower() == target.lower(); a prediction containing 'Unanswerable'
    (case-sensitive, anywhere) is wrong whatever the target.
    """

    name = "ocrvqa"
    variants = ("coin",)

    def is_correct(self, prediction: str, record: dict) -> bool:
        if "Unanswerable" in prediction:
            return False
        return prediction.lower() == require_str(record, "target", self.name).lower()
