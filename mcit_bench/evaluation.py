"""Evaluation of one (stage, task) cell: batched greedy generation, then the task's scorer."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

from .collate import to_device
from .strategy import Strategy


@dataclass
class CellResult:
    score: float
    details: dict[str, Any]
    predictions: list[dict[str, str]]
    seconds: float


def predict(strategy: Strategy, records: Any, collate: Callable, batch_size: int, max_new_tokens: int,
            device: torch.device) -> list[str]:
    """Greedy answers for every record of ``records`` (a datasets.Dataset or a list of dicts)."""
    strategy.eval()
    answers: list[str] = []
    for start in range(0, len(records), batch_size):
        chunk = records[start:start + batch_size]
        if isinstance(chunk, dict):  # datasets slices are dicts of columns
            chunk = [dict(zip(chunk, values)) for values in zip(*chunk.values())]
        batch = collate(chunk)
        batch = to_device(batch, device)
        answers.extend(strategy.generate(batch, max_new_tokens))
    return answers


def evaluate_cell(strategy: Strategy, test_data: Any, task: Any, collate: Callable, batch_size: int,
                  max_new_tokens: int | None, device: torch.device) -> CellResult:
    import time

    from .scorers import get_scorer

    start = time.perf_counter()
    answers = predict(strategy, test_data, collate, batch_size, max_new_tokens or task.max_new_tokens, device)
    records = [{k: v for k, v in r.items() if k != "image"} for r in test_data.remove_columns("image")] \
        if hasattr(test_data, "remove_columns") else [{k: v for k, v in r.items() if k != "image"} for r in test_data]
    result = get_scorer(task.scorer, task.scorer_variant).score(answers, records)
    predictions = [{"uid": r["uid"], "text": a} for r, a in zip(records, answers)]
    return CellResult(float(result.score), dict(result.details), predictions, time.perf_counter() - start)
