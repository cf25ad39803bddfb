"""The tuning stream is disjoint from the reported one: other generated records on the built-in benchmark, a
validation split carved from the training records on UCIT/CoIN (never a test record)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from mcit_bench.benchmark import load_benchmark
from mcit_bench.errors import UserError

from native_fixtures import make_coin, make_ucit


def _rows(split) -> list[dict]:
    return split.remove_columns("image").to_list()


def test_synthetic_tuning_stream_has_other_images_and_records() -> None:
    report = load_benchmark("synthetic", train_size=16, test_size=16)
    tuning = load_benchmark("synthetic", train_size=16, test_size=16, stream="tuning")
    assert report.info["data_seed"] == 0 and tuning.info["data_seed"] == 1 and tuning.info["stream"] == "tuning"
    for task in ("styles", "chart", "scene_caption"):
        for split in ("train_split", "test_split"):
            a, b = getattr(report, split)(task), getattr(tuning, split)(task)
            pairs = [(x["prompt"], x["target"]) for x in _rows(a)]
            others = [(x["prompt"], x["target"]) for x in _rows(b)]
            assert pairs != others
            assert [x.tobytes() for x in a["image"]] != [x.tobytes() for x in b["image"]]


def test_ucit_validation_split_is_carved_from_training_records(tmp_path: Path) -> None:
    root, _ = make_ucit(tmp_path / "UCIT", "release")
    report = load_benchmark("ucit", data_root=str(root), strict_counts=False)
    tuning = load_benchmark("ucit", data_root=str(root), strict_counts=False, stream="tuning")
    for task in report.task_names:
        train_all = _rows(report.train_split(task))
        train, held = _rows(tuning.train_split(task)), _rows(tuning.test_split(task))
        assert len(held) == 1 and len(train) == len(train_all) - 1  # 5% of 4, at least one
        held_ids = {r["uid"].replace("/validation/", "/train/") for r in held}
        assert held_ids.isdisjoint(r["uid"] for r in train)  # never trained on in that trial
        assert held_ids | {r["uid"] for r in train} == {r["uid"] for r in train_all}
        test_ids = {r["uid"] for r in _rows(report.test_split(task))}
        assert test_ids.isdisjoint(r["uid"] for r in held) and all("/validation/" in r["uid"] for r in held)
        assert all(r["references"] == [r["target"]] for r in held)  # caption tasks score against the answer
    again = load_benchmark("ucit", data_root=str(root), strict_counts=False, stream="tuning")
    assert _rows(again.test_split("Flickr30k")) == _rows(tuning.test_split("Flickr30k"))  # deterministic


def test_coin_grounding_validation_needs_box_answers(tmp_path: Path) -> None:
    root, _ = make_coin(tmp_path / "CoIN", "checkout")
    tuning = load_benchmark("coin", data_root=str(root), stream="tuning")
    assert len(tuning.test_split("GQA")) == 1
    with pytest.raises(UserError, match="coin/Grounding: no training answer is a box"):
        tuning.test_split("Grounding")
    # with box answers (as CoIN's grounding instructions have) the held-out box is the gold box
    train = root / "Instructions_Original" / "Grounding" / "train.json"
    if not train.is_file():
        train = next(p for p in root.rglob("train.json") if "Grounding" in str(p))
    rows = json.loads(train.read_text())
    for i, row in enumerate(rows):
        row["conversations"][1]["value"] = f"[0.1{i}, 0.2, 0.5, 0.6{i}]"
    train.write_text(json.dumps(rows))
    bench = load_benchmark("coin", data_root=str(root), stream="tuning")
    from mcit_bench.scorers import get_scorer

    held = _rows(bench.test_split("Grounding"))
    assert len(held) == 1 and len(held[0]["bbox"]) == 4
    spec = bench.task("Grounding")
    assert get_scorer(spec.scorer, spec.scorer_variant).score([held[0]["target"]], held).score == 100.0
