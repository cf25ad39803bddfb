"""Multiple-choice letter scorers: a generic `choice_letter` and CoIN's `scienceqa`.

The target is the correct option's letter ("B"); a digit string is read as a 0-based option
index ("1" -> "B") because ScienceQA's problems.json stores the answer as an index.
"""
from __future__ import annotations

import re
import string
from typing import Optional

from mcit_bench.errors import UserError
from mcit_bench.scorers.base import AccuracyScorer, ScoreResult, require_str

LETTERS = string.ascii_uppercase

# "(B)" or "B" followed by one of . ) : , or the end, then whitespace or the end.
# A bare capital followed by a word ("A cat") is NOT a letter answer: it reads as an article.
_LEADING_LETTER = re.compile(r"^(?:\(([A-Z])\)|([A-Z])(?:[.):,]|$))(?=\s|$)")
# "The answer is B." / "the answer is: (B)": the letter must be a whole word.
_ANSWER_IS = re.compile(r"[Tt]he answer is:?\s*\(?([A-Z])\b")


def leading_letter(text: str) -> Optional[str]:
    """The option letter a stripped answer starts with: "b", "B", "B.", "B) cat", "(B) cat"."""
    s = text.strip()
    if len(s) == 1 and s in string.ascii_letters:
        return s.upper()
    m = _LEADING_LETTER.match(s)
    return (m.group(1) or m.group(2)) if m else None


def answer_is_letter(text: str) -> Optional[str]:
    """The letter of the first "The answer is X" phrase, or None."""
    m = _ANSWER_IS.search(text)
    return m.group(1) if m else None


def target_letter(record: dict, scorer: str) -> str:
    """The gold letter of a record: a letter, "(B)"/"B." forms, or a 0-based index string."""
    raw = require_str(record, "target", scorer).strip()
    if raw.isdigit():
        idx = int(raw)
        if idx < len(LETTERS):
            return LETTERS[idx]
    letter = leading_letter(raw)
    if letter is None:
        raise UserError(
            f"scorer {scorer}: record {record.get('uid', '?')} target {raw!r} is not an option letter"
        )
    return letter


def _n_choices(record: dict) -> Optional[int]:
    choices = record.get("choices")
    return len(choices) if isinstance(choices, (list, tuple)) and choices else None


class ChoiceLetter(AccuracyScorer):
    """Option-letter accuracy. The parsed letter must equal the target letter and, when the record
    has `choices`, name one of them.

    Variants:
      strict: the stripped prediction IS the letter ("B", "b") or starts with a delimited letter
              ("B.", "B) text", "(B) text", "B: text"); anything else is wrong.
      regex:  "The answer is X" (HiDe/SEFE style, anywhere in the text, X a whole-word capital);
              when absent, fall back to the `strict` reading.
    """

    name = "choice_letter"
    variants = ("strict", "regex")

    def parse(self, prediction: str) -> Optional[str]:
        if self.variant == "regex":
            return answer_is_letter(prediction) or leading_letter(prediction)
        return leading_letter(prediction)

    def is_correct(self, prediction: str, record: dict) -> bool:
        gold = target_letter(record, self.name)
        letter = self.parse(prediction)
        if letter is None:
            return False
        n = _n_choices(record)
        if n is not None and LETTERS.index(letter) >= n:
            return False
        return letter == gold


# CoIN/SEFE scripts hard-code five options.
_SQA_OPTIONS = ["A", "B", "C", "D", "E"]
_SQA_FIRST_SINGLE_CHAR_WORD = re.compile(r"\b(\w)\b")
_SQA_ANSWER_IS = re.compile(r"The answer is ([A-Z]).")


class ScienceQA(AccuracyScorer):
    """CoIN ScienceQA letter match, reproducing the native parsers.

    Every variant first accepts a prediction that is exactly "A".."E", then one starting with
    "<letter>. ". Then:
      coin:  the first single-character word (regex \\b(\\w)\\b), upper-cased ("a" counts as A).
             Denominator: ALL test problems (a None prediction counts wrong), as CoIN's scorer, which
             counts every pid of pid_splits["test"]: a problem absent from test.json (a record flagged
             ``absent``, prediction None) scores as failed.
      coin_skip_absent: as coin, but records flagged ``absent`` are left out of the denominator (the
             problems test.json lacks are skipped, not failed).
      regex: exactly one match of "The answer is ([A-Z])." (the "." is any character, so
             "The answer is B" at the very end does not match), as HiDe/SEFE's script.
             Denominator: the predictions given (None predictions are left out), as SEFE.
    The letter must be among the first len(choices) of A-E (all five when `choices` is None).
    """

    name = "scienceqa"
    variants = ("coin", "coin_skip_absent", "regex")

    def parse(self, prediction: str) -> Optional[str]:
        if prediction in _SQA_OPTIONS:
            return prediction
        if len(prediction) >= 3 and prediction[0] in _SQA_OPTIONS and prediction[1:3] == ". ":
            return prediction[0]
        if self.variant in ("coin", "coin_skip_absent"):
            found = _SQA_FIRST_SINGLE_CHAR_WORD.findall(prediction)
            return found[0].upper() if found else None
        found = _SQA_ANSWER_IS.findall(prediction)
        return found[0] if len(found) == 1 else None

    def is_correct(self, prediction: str, record: dict) -> bool:
        if record.get("absent"):  # never asked: failed (coin) or left out (coin_skip_absent)
            return False
        gold = target_letter(record, self.name)
        letter = self.parse(prediction)
        n = _n_choices(record)
        allowed = _SQA_OPTIONS[:n] if n is not None else _SQA_OPTIONS
        return letter in allowed and letter == gold

    def _score(self, predictions: list[Optional[str]], records: list[dict]) -> ScoreResult:
        result = super()._score(predictions, records)
        n_absent = sum(1 for r in records if r.get("absent"))
        result.details["n_absent"] = n_absent
        if self.variant == "coin_skip_absent":
            per = result.per_sample or []
            result.per_sample = [None if r.get("absent") else v for v, r in zip(per, records)]
            n_scored = len(records) - n_absent
            result.score = 100.0 * result.details["n_correct"] / n_scored if n_scored else 0.0
            result.details["n_scored"] = n_scored
        elif self.variant == "regex":
            # SEFE divides by the number of predictions, not of problems.
            n_scored = sum(1 for p in predictions if p is not None)
            per = result.per_sample or []
            result.per_sample = [v if p is not None else None for v, p in zip(per, predictions)]
            result.score = 100.0 * result.details["n_correct"] / n_scored if n_scored else 0.0
            result.details["n_scored"] = n_scored
        else:
            result.details["n_scored"] = len(records)
        return result
