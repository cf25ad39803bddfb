"""TextVQA soft accuracy (the official VQA metric, as CoIN's m4c evaluator computes it)."""
from __future__ import annotations

from typing import Optional

from mcit_bench.scorers.base import BaseScorer, ScoreResult, require_str_list
from mcit_bench.scorers.vqa_normalize import normalize_vqa_answer


def soft_accuracy(prediction: str, answers: list[str]) -> float:
    """Soft accuracy in [0, 1] of one prediction against the human answers.

    After EvalAI normalisation of all strings: for each answer i, leave it out and count the
    other answers equal to the prediction, acc_i = min(1, count / 3); return the mean over i.
    With 10 answers: 3+ matches -> 1.0, 2 -> 0.6, 1 -> 0.3, 0 -> 0.
    """
    pred = normalize_vqa_answer(prediction)
    gold = [normalize_vqa_answer(a) for a in answers]
    n_match = sum(1 for g in gold if g == pred)
    # Leaving out a matching answer leaves n_match - 1 matches, any other leaves n_match.
    total = sum(min(1.0, (n_match - (g == pred)) / 3.0) for g in gold)
    return total / len(gold)


class VqaSoft(BaseScorer):
    """TextVQA: mean soft accuracy x 100; references = the (normally 10) human answers.

    The reference script asserts exactly 10 answers; other counts are scored with the same
    leave-one-out rule and reported in `details["n_not_10_refs"]`.
    """

    name = "vqa_soft"
    variants = ("textvqa",)

    def _score(self, predictions: list[Optional[str]], records: list[dict]) -> ScoreResult:
        per_sample: list[Optional[float]] = []
        n_not_10 = 0
        for pred, rec in zip(predictions, records):
            answers = require_str_list(rec, "references", self.name)
            n_not_10 += len(answers) != 10
            per_sample.append(0.0 if pred is None else 100.0 * soft_accuracy(pred, answers))
        return ScoreResult(
            score=sum(per_sample) / len(per_sample),
            details={
                "n": len(records),
                "n_missing": sum(1 for p in predictions if p is None),
                "n_not_10_refs": n_not_10,
            },
            per_sample=per_sample,
        )
