"""Multi-turn LLaVA conversations: every answer is trained (labels on each answer and its EOS, the earlier
exchanges as context), read from CoIN's and UCIT's native files, kept through conversion, and cached by the
training collator under a key that includes the later turns."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
from PIL import Image

from mcit_bench.backbones.llava import Backbone
from mcit_bench.benchmark import load_benchmark
from mcit_bench.cli import main
from mcit_bench.collate import IGNORE_INDEX, Collator
from mcit_bench.errors import UserError

from native_fixtures import coin_task_dir, make_coin, make_ucit, ucit_task_dir

EXCHANGES = [("What colour is the square?", "red"), ("How many squares are there?", "two squares"),
             ("Where is the circle?", "on the left, near the top")]


def _record(uid: str = "conv/0", exchanges=EXCHANGES) -> dict:
    (prompt, target), later = exchanges[0], exchanges[1:]
    return {"uid": uid, "image": Image.new("RGB", (24, 16), "red"), "prompt": prompt, "target": target,
            "turns": [{"prompt": p, "target": t} for p, t in later]}


def _runs(labels: list[int]) -> list[tuple[int, int]]:
    """[start, end) of each run of labelled positions."""
    runs, start = [], None
    for i, value in enumerate(labels + [IGNORE_INDEX]):
        if value != IGNORE_INDEX and start is None:
            start = i
        elif value == IGNORE_INDEX and start is not None:
            runs.append((start, i))
            start = None
    return runs


def test_three_turn_conversation_labels_exactly_the_three_answers(tiny_backbone: Path) -> None:
    backbone = Backbone.from_pretrained(tiny_backbone)
    tok = backbone.tokenizer
    collate = Collator(backbone.processor, backbone.template, train=True, image_token=backbone.image_token)
    batch = collate([_record()])
    ids, labels = batch["input_ids"][0].tolist(), batch["labels"][0].tolist()
    runs = _runs(labels)
    assert len(runs) == 3  # one labelled span per answer, nothing else labelled
    for (start, end), (question, answer) in zip(runs, EXCHANGES):
        span = labels[start:end]
        assert span == ids[start:end]  # labels are the input tokens themselves (the model shifts them)
        assert span[-1] == tok.eos_token_id  # each answer ends with EOS, as LLaVA's "</s>"
        assert tok.decode(span[:-1]).strip() == answer
        # the answer's question comes right before it, as context (unlabelled)
        assert tok.decode(ids[max(0, start - 30):start]).rstrip().endswith(
            f"{question}{backbone.template.assistant}".rstrip())
    # the whole conversation, in LLaVA's layout: answer + EOS, then the next USER turn
    text = tok.decode([i for i in ids if i != tok.convert_tokens_to_ids(backbone.image_token)])
    assert f"{EXCHANGES[0][1]}{tok.eos_token}{backbone.template.user}{EXCHANGES[1][0]}" in text
    assert text.index(EXCHANGES[1][0]) < text.index(EXCHANGES[2][0])
    # a single-exchange record labels only its answer, unchanged
    single = collate([_record(exchanges=EXCHANGES[:1])])
    assert len(_runs(single["labels"][0].tolist())) == 1


def test_cache_key_includes_the_later_turns(tiny_backbone: Path) -> None:
    backbone = Backbone.from_pretrained(tiny_backbone)
    fresh = Collator(backbone.processor, backbone.template, train=True, image_token=backbone.image_token)
    cached = Collator(backbone.processor, backbone.template, train=True, image_token=backbone.image_token,
                      cache_mb=64)
    first = cached([_record()])
    torch.testing.assert_close(cached([_record()])["labels"], fresh([_record()])["labels"], rtol=0, atol=0)
    # same uid, prompt and target, another later answer: a new encoding, not the cached one
    other = _record(exchanges=EXCHANGES[:2] + [(EXCHANGES[2][0], "at the bottom")])
    changed = cached([other])
    assert len(cached._cache) == 2
    torch.testing.assert_close(changed["labels"], fresh([other])["labels"], rtol=0, atol=0)
    assert changed["labels"].tolist() != first["labels"].tolist()


def _conversation(exchanges) -> list[dict]:
    turns = []
    for k, (question, answer) in enumerate(exchanges):
        turns += [{"from": "human", "value": f"<image>\n{question}" if k == 0 else question},
                  {"from": "gpt", "value": answer}]
    return turns


def _set_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_coin_and_ucit_keep_every_turn_without_a_warning(tmp_path: Path) -> None:
    coin, _ = make_coin(tmp_path / "CoIN")
    _set_json(coin_task_dir(coin, "GQA") / "train.json", lambda d: d[0].update(conversations=_conversation(EXCHANGES)))
    ucit, _ = make_ucit(tmp_path / "UCIT")
    _set_json(ucit_task_dir(ucit, "IconQA") / "train.json",
              lambda d: d[2].update(conversations=_conversation(EXCHANGES[:2])))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the old "later turns are not trained" warning is gone
        bench = load_benchmark("coin", data_root=str(coin))
        ucit_bench = load_benchmark("ucit", data_root=str(ucit), strict_counts=False)
    row = bench.train_split("GQA")[0]
    assert (row["prompt"], row["target"]) == EXCHANGES[0]
    assert row["turns"] == [{"prompt": q, "target": a} for q, a in EXCHANGES[1:]]
    assert bench.train_split("GQA")[1]["turns"] == []
    assert bench.info["later_turns_trained"]["GQA"] == 2
    assert ucit_bench.train_split("IconQA")[2]["turns"] == [{"prompt": EXCHANGES[1][0], "target": EXCHANGES[1][1]}]
    assert ucit_bench.info["later_turns_trained"] == {"ImageNet-R": 0, "ArxivQA": 0, "VizWiz-caption": 0,
                                                      "IconQA": 1, "CLEVR-Math": 0, "Flickr30k": 0}
    # the canonical format keeps the turns
    out = tmp_path / "canonical"
    assert main(["convert", "coin", "--data-root", str(coin), "--output", str(out)]) == 0
    canonical = load_benchmark("coin", data_root=str(out))
    assert canonical.train_split("GQA").remove_columns("image").to_list() == \
        bench.train_split("GQA").remove_columns("image").to_list()


@pytest.mark.parametrize("conversation", [
    _conversation(EXCHANGES)[:-1],  # a question without its answer
    _conversation(EXCHANGES)[:2] + [{"from": "gpt", "value": "again"}, {"from": "human", "value": "?"}],
])
def test_conversations_must_alternate_human_and_gpt(tmp_path: Path, conversation) -> None:
    coin, _ = make_coin(tmp_path / "CoIN")
    _set_json(coin_task_dir(coin, "VQAv2") / "train.json", lambda d: d[1].update(conversations=conversation))
    with pytest.raises(UserError, match=r"VQAv2/train\.json: record 1 'conversations' must alternate human and gpt"):
        load_benchmark("coin", data_root=str(coin))
