"""Evaluation of one (stage, task) cell: batched greedy generation, then the task's scorer.

Decoding budget: the task's own ``max_new_tokens`` (its native scripts'), capped by the run's
``eval_max_new_tokens`` when that is set (``--preset quick`` sets 32: a tiny model rarely stops early and
CoIN's 1024-token budgets would dominate a smoke test).

Records flagged ``absent`` (a question the native scorer counts but the test file lacks, see
benchmarks/native.py) are not generated for: their prediction is None, which the task's scorer variant
counts as failed (CoIN's ScienceQA) or leaves out.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

from ..collate import to_device
from ..strategy import Strategy

SHUFFLE_SHIFTS = 19  # the smallest p-value is then 1/20 = 0.05 (the runner's default `chance_shifts`)
ALPHA = 0.05


@dataclass
class CellResult:
    score: float
    details: dict[str, Any]
    predictions: list[dict[str, str]]
    seconds: float


def predict(strategy: Strategy, records: Any, collate: Callable, batch_size: int, max_new_tokens: int,
            device: torch.device, untouched: bool = False) -> list[str]:
    """Greedy answers for every record of ``records`` (a datasets.Dataset or a list of dicts); ``untouched``:
    the backbone's own (``Strategy.generate_untouched``), not the method's."""
    from .. import distributed

    generate = strategy.generate_untouched if untouched else strategy.generate
    strategy.eval()
    # On several ranks the batches are dealt round-robin and come back in sample order. A batch is the one a
    # single process builds (same answers) unless there are fewer batches than ranks: then they shrink to one
    # per rank (answers then differ at most through float round-off of the other padding).
    world = distributed.world_size()
    if world > 1:
        batch_size = max(1, min(batch_size, -(-len(records) // world)))
    starts = list(range(0, len(records), batch_size))
    mine: dict[int, list[str]] = {}
    for start in starts[distributed.rank()::world]:
        chunk = records[start:start + batch_size]
        if isinstance(chunk, dict):  # datasets slices are dicts of columns
            chunk = [dict(zip(chunk, values)) for values in zip(*chunk.values())]
        batch = collate(chunk)
        batch = to_device(batch, device)
        mine[start] = generate(batch, max_new_tokens)
    gathered = {start: part for parts in distributed.all_gather(mine) for start, part in parts.items()}
    return [answer for start in starts for answer in gathered[start]]


def decoding_budget(task: Any, cap: int | None) -> int:
    """New tokens a task's answers may take: its own budget, capped by ``cap`` (None: no cap)."""
    return min(int(task.max_new_tokens), int(cap)) if cap else int(task.max_new_tokens)


def shuffled_baseline(scorer: Any, answers: list[str], records: list[dict[str, Any]], score: float,
                      shifts: int = SHUFFLE_SHIFTS) -> dict[str, float | None]:
    """The chance level of this model's OWN answers: the same answers scored against other samples.

    Shift k pairs answer i with record (i + k) mod n, for k = 1..``shifts`` (every answer meets another
    sample). ``shuffled`` is the mean score over the shifts: a backbone that answers one letter to every
    question scores its share of that letter on its own samples and exactly as much here. ``p_value`` is
    the shift-permutation test of "the answers do not depend on their sample": (1 + number of shifts
    scoring at least ``score``) / (shifts + 1); 0.05 with 19 shifts means the answers beat every shift.
    Both None with fewer than two records. ``shifts``: the pairings used (n - 1 at most), so the smallest
    p-value the test can give is 1 / (shifts + 1): 8 records (7 shifts) can never reach 0.05.
    """
    n = len(records)
    if n < 2:
        return {"shuffled": None, "p_value": None, "shifts": 0}
    shifts = min(shifts, n - 1)
    scores = [float(scorer.score(answers, [records[(i + k) % n] for i in range(n)]).score) for k in range(1, shifts + 1)]
    return {"shuffled": sum(scores) / shifts, "p_value": (1 + sum(s >= score for s in scores)) / (shifts + 1),
            "shifts": shifts}


def evaluate_cell(strategy: Strategy, test_data: Any, task: Any, collate: Callable, batch_size: int,
                  max_new_tokens: int | None, device: torch.device, untouched: bool = False,
                  chance_shifts: int = 0) -> CellResult | None:
    """Score one (stage, task) cell; ``untouched``: the backbone's own answers (stage 0); ``chance_shifts``
    > 0 adds ``details["shuffled"]`` and ``details["p_value"]`` over that many shifted pairings (see
    ``shuffled_baseline``). On several ranks each generates its share and rank 0 alone scores (None
    elsewhere)."""
    import time

    from .. import distributed
    from ..scorers import get_scorer

    start = time.perf_counter()
    records = [{k: v for k, v in r.items() if k != "image"} for r in test_data.remove_columns("image")] \
        if hasattr(test_data, "remove_columns") else [{k: v for k, v in r.items() if k != "image"} for r in test_data]
    present = [i for i, r in enumerate(records) if not r.get("absent")]
    if len(present) < len(records):
        test_data = test_data.select(present) if hasattr(test_data, "select") else [test_data[i] for i in present]
    answers: list[str | None] = [None] * len(records)
    generated = predict(strategy, test_data, collate, batch_size, decoding_budget(task, max_new_tokens), device,
                        untouched) if present else []
    for i, answer in zip(present, generated):
        answers[i] = answer
    if distributed.rank() != 0:  # every rank generated its share; rank 0 scores and writes
        return None
    scorer = get_scorer(task.scorer, task.scorer_variant)
    result = scorer.score(answers, records)
    details = dict(result.details)
    if len(present) < len(records):
        details["n_absent"] = len(records) - len(present)
    if chance_shifts > 0:
        details.update(shuffled_baseline(scorer, answers, records, float(result.score), chance_shifts))
    predictions = [{"uid": r["uid"], "text": a} for r, a in zip(records, answers)]
    return CellResult(float(result.score), details, predictions, time.perf_counter() - start)


def zero_shot_report(cells: dict[str, dict[str, Any]], tasks: list[Any]) -> dict[str, dict[str, Any]]:
    """Stage 0 (the untouched backbone) against the chance levels of each task.

    ``chance``: uniform guessing over a closed answer set (None for open answers, e.g. captions);
    ``shuffled`` / ``p_value``: the backbone's own answers scored against other samples
    (``shuffled_baseline``). ``above_chance``: above uniform chance where it is defined AND
    ``p_value`` <= 0.05 (with 19 shifts: the answers beat every shifted pairing; with fewer shifts, or
    none, it cannot be shown and is False). A backbone that answers every question
    of a task with one letter scores that letter's share, perhaps above uniform chance, but never
    beats its shifted pairings: it is not above chance there. ``judgeable``: whether the test could show
    it at all (False when too few records or shifts keep the smallest p-value above ALPHA; None when the
    cell predates the recorded shift count).
    """
    out: dict[str, dict[str, Any]] = {}
    for task in tasks:
        cell = cells.get(task.name)
        if cell is None:
            continue
        details = cell.get("details", {})
        p_value = details.get("p_value")
        above = p_value is not None and p_value <= ALPHA and (task.chance is None or cell["score"] > task.chance)
        shifts = details.get("shifts")
        judgeable = None if shifts is None and p_value is not None else bool(shifts) and 1 / (shifts + 1) <= ALPHA
        out[task.name] = {"score": cell["score"], "chance": task.chance, "shuffled": details.get("shuffled"),
                          "p_value": p_value, "above_chance": above, "judgeable": judgeable, "shifts": shifts}
    return out


def stages_to_evaluate(stage: int, n_tasks: int, eval_mode: str, evaluated: bool = True) -> list[int]:
    """Column indices evaluated at ``stage`` (0-based columns); none where the strategy skips the stage
    (``Strategy.evaluates_stage``: the joint model exists only after all tasks)."""
    if not evaluated:
        return []
    if stage == 0 or eval_mode == "full":
        return list(range(n_tasks))
    return list(range(stage))
