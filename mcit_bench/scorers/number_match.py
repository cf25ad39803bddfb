"""Counting answers (CLEVR-Math style): the first integer in the prediction equals the target."""
from __future__ import annotations

import re
from typing import Optional

from mcit_bench.errors import UserError
from mcit_bench.scorers.base import AccuracyScorer, require_str

# An optional minus sign glued to digits; "3.5" yields 3 (only integers are counts).
_INT = re.compile(r"-?\d+")


def first_int(text: str) -> Optional[int]:
    """The first integer written with digits in `text`, or None. Number words are not read."""
    m = _INT.search(text)
    return int(m.group()) if m else None


class NumberMatch(AccuracyScorer):
    """Correct iff first_int(pred) == int(target). The target must be an integer string."""

    name = "number"
    variants = ("first_int",)

    def is_correct(self, prediction: str, record: dict) -> bool:
        target = require_str(record, "target", self.name).strip()
        try:
            gold = int(target)
        except ValueError:
            raise UserError(
                f"scorer number: record {record.get('uid', '?')} target {target!r} is not an integer"
            ) from None
        return first_int(prediction) == gold
