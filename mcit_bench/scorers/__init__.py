"""Task scorers for UCIT and CoIN, every score on 0-100.

    from mcit_bench.scorers import get_scorer
    result = get_scorer("caption").score(predictions, records)

No torch here; pycocoevalcap is imported only when the caption scorer runs its Java backend.
"""
from mcit_bench.scorers.base import BaseScorer, Scorer, ScoreResult
from mcit_bench.scorers.registry import get_scorer, list_scorers

__all__ = ["BaseScorer", "Scorer", "ScoreResult", "get_scorer", "list_scorers"]
