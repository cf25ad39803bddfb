"""Scorer registry: `get_scorer(name, variant)` and `list_scorers()`."""
from __future__ import annotations

from typing import Optional

from mcit_bench.errors import UserError
from mcit_bench.scorers.base import BaseScorer
from mcit_bench.scorers.caption import Caption
from mcit_bench.scorers.choice_letter import ChoiceLetter, ScienceQA
from mcit_bench.scorers.grounding_iou import GroundingIoU
from mcit_bench.scorers.number_match import NumberMatch
from mcit_bench.scorers.string_match import ExactMatch, GqaMatch, OcrVqaMatch, VqaExact
from mcit_bench.scorers.substring_match import ImageNetSubstring
from mcit_bench.scorers.vqa_soft import VqaSoft

_SCORERS: dict[str, type[BaseScorer]] = {
    cls.name: cls
    for cls in (ExactMatch, ChoiceLetter, NumberMatch, Caption, ScienceQA, VqaSoft,
                ImageNetSubstring, GqaMatch, VqaExact, GroundingIoU, OcrVqaMatch)
}


def list_scorers() -> dict[str, list[str]]:
    """Scorer name -> its variants, the default first."""
    return {name: list(cls.variants) for name, cls in sorted(_SCORERS.items())}


def get_scorer(name: str, variant: Optional[str] = None) -> BaseScorer:
    """A fresh scorer; variant None means the scorer's default. Unknown names or variants raise
    UserError listing what exists."""
    cls = _SCORERS.get(name)
    if cls is None:
        raise UserError(f"unknown scorer {name!r}; known scorers: " + ", ".join(sorted(_SCORERS)))
    return cls(variant)
