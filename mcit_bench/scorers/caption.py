"""UCIT caption score: the mean of BLEU-1..4, METEOR, ROUGE-L and CIDEr, each x 100.

Captions (candidate and references) are PTB-tokenised, lower-cased, punctuation removed, as
coco-caption does; no SPICE. Corpus-level BLEU and METEOR have no per-sample form, so
`per_sample` is None. Every record is one image; `references` holds its reference captions.

Backends (the variant):
  auto:   `coco` when pycocoevalcap is importable and `java` is on PATH, else `python`.
  coco:   pycocoevalcap's PTBTokenizer, Bleu(4), Meteor(), Rouge(), Cider() (UserError if missing).
  python: our tokenizer approximation and our BLEU/ROUGE-L/CIDEr-D. METEOR has no pure-Python
          implementation here: details["meteor"] is None, the score is the mean of the other
          six (details["n_metrics"] == 6) and details["warning"] says so.
  synthetic: the built-in benchmark's BOUNDED caption score: mean of BLEU-1..4, ROUGE-L and
          CIDEr-D / 10 (CIDEr-D's maximum), x 100, pure Python. It stays on 0-100 like every other
          task score (UCIT's CIDEr x 100 can exceed 100 for a near-perfect captioner). Not
          comparable to UCIT numbers, by design.
"""
from __future__ import annotations

import subprocess
from typing import Optional

from mcit_bench.errors import UserError
from mcit_bench.scorers import caption_coco, caption_metrics
from mcit_bench.scorers.base import BaseScorer, ScoreResult, require_str_list
from mcit_bench.scorers.caption_tokenize import ptb_like_tokenize

METRICS = ("bleu_1", "bleu_2", "bleu_3", "bleu_4", "meteor", "rouge_l", "cider")
_METEOR_MISSING = ("METEOR unavailable (needs pycocoevalcap and Java): the score is the mean of "
                   "6 metrics, not UCIT's 7; do not compare it with 7-metric numbers")
# Failures of the Java side that `auto` survives by falling back; `coco` re-raises them.
_JAVA_ERRORS = (OSError, ValueError, RuntimeError, subprocess.SubprocessError)


def python_metrics(candidates: list[str], references: list[list[str]]) -> dict:
    """BLEU-1..4, ROUGE-L, CIDEr-D (coco scale) from the pure-Python implementation."""
    bleus = caption_metrics.bleu(candidates, references, 4)
    rouge, _ = caption_metrics.rouge_l(candidates, references)
    cider, _ = caption_metrics.cider_d(candidates, references)
    return {"bleu_1": bleus[0], "bleu_2": bleus[1], "bleu_3": bleus[2], "bleu_4": bleus[3],
            "rouge_l": rouge, "cider": cider}


class Caption(BaseScorer):
    """Mean of the available caption metrics x 100 (7 with METEOR, else 6 and a warning)."""

    name = "caption"
    variants = ("auto", "coco", "python", "synthetic")

    def _score(self, predictions: list[Optional[str]], records: list[dict]) -> ScoreResult:
        references = [require_str_list(rec, "references", self.name) for rec in records]
        candidates = ["" if p is None else p for p in predictions]
        if self.variant == "synthetic":
            return _bounded_score(candidates, references)
        warnings: list[str] = []

        backend = self.variant
        if backend == "auto":
            backend = "coco" if caption_coco.coco_available() else "python"
        elif backend == "coco" and not caption_coco.coco_available():
            raise UserError("scorer caption/coco needs pycocoevalcap (pip install pycocoevalcap) "
                            "and `java` on PATH; use variant 'auto' or 'python' without them")

        flat = candidates + [r for refs in references for r in refs]
        tokenized: Optional[list[str]] = None
        if backend == "coco":
            try:
                tokenized = caption_coco.ptb_tokenize(flat)
            except _JAVA_ERRORS as exc:
                if self.variant == "coco":
                    raise
                warnings.append(f"PTBTokenizer failed ({exc!r}); used the pure-Python path")
                backend = "python"
        if tokenized is None:
            tokenized = [ptb_like_tokenize(t) for t in flat]
        cand_tok, ref_tok = _unflatten(tokenized, len(candidates), references)

        meteor: Optional[float] = None
        if backend == "coco":
            values = caption_coco.coco_bleu_rouge_cider(cand_tok, ref_tok)
            try:
                meteor = caption_coco.coco_meteor(cand_tok, ref_tok)
            except _JAVA_ERRORS as exc:
                if self.variant == "coco":
                    raise
                warnings.append(f"METEOR failed ({exc!r})")
        else:
            values = python_metrics(cand_tok, ref_tok)
        values["meteor"] = meteor

        details: dict = {m: (None if values[m] is None else 100.0 * values[m]) for m in METRICS}
        available = [details[m] for m in METRICS if details[m] is not None]
        if meteor is None:
            warnings.insert(0, _METEOR_MISSING)
        details.update({
            "n_metrics": len(available),
            "backend": backend,
            "tokenizer": "ptb_java" if backend == "coco" else "ptb_like_python",
            "n": len(records),
            "n_missing": sum(1 for p in predictions if p is None),
        })
        if warnings:
            details["warning"] = "; ".join(warnings)
        return ScoreResult(score=sum(available) / len(available), details=details, per_sample=None)


def _unflatten(tokens: list[str], n_cand: int,
               references: list[list[str]]) -> tuple[list[str], list[list[str]]]:
    cand = tokens[:n_cand]
    refs = []
    pos = n_cand
    for group in references:
        refs.append(tokens[pos:pos + len(group)])
        pos += len(group)
    return cand, refs


def _bounded_score(candidates: list[str], references: list[list[str]]) -> ScoreResult:
    flat = [ptb_like_tokenize(t) for t in candidates + [r for refs in references for r in refs]]
    cand_tok, ref_tok = _unflatten(flat, len(candidates), references)
    values = python_metrics(cand_tok, ref_tok)
    parts = [values[k] for k in ("bleu_1", "bleu_2", "bleu_3", "bleu_4", "rouge_l")] + [values["cider"] / 10.0]
    details = {k: 100.0 * v for k, v in values.items()}
    details.update({"cider_over_10": 10.0 * values["cider"], "n": len(candidates), "n_metrics": 6})
    return ScoreResult(score=100.0 * sum(parts) / len(parts), details=details, per_sample=None)
