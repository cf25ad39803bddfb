"""The built-in world: the synthetic benchmark's construction and the tiny backbone's recipe."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mcit_bench.benchmarks.drawing import CELL, COLOURS
from mcit_bench.benchmarks.synthetic import PRETRAIN_MAKERS, TASK_MAKERS, _rng, generate_records, pretraining_record


def test_clip_text_tower_pools_at_the_eos_token(tiny_backbone):
    """transformers' CLIP pools at the highest token id when eos_token_id == 2 (a legacy config): the
    recipe's tokenizer must give EOS another id and end every CLIP text with it."""
    from mcit_bench.backbones.llava import load_clip

    clip, tokenizer = load_clip(tiny_backbone / "clip")
    assert clip.config.text_config.eos_token_id == tokenizer.eos_token_id != 2
    enc = tokenizer(["a big red circle", "a red"], padding=True, return_tensors="pt")
    ends = enc["attention_mask"].sum(-1) - 1
    assert enc["input_ids"][torch.arange(2), ends].tolist() == [tokenizer.eos_token_id] * 2
    out = clip.text_model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
    torch.testing.assert_close(out.pooler_output, out.last_hidden_state[torch.arange(2), ends])


def test_cached_features_give_llavas_own_loss(tiny_backbone):
    """The pre-training loop embeds vision features computed beforehand (through the Backbone adapter);
    the loss equals LLaVA's own forward on the pixels."""
    from mcit_bench.backbones.llava import Backbone
    from mcit_bench.collate import Collator

    backbone = Backbone.from_pretrained(tiny_backbone)
    model = backbone.model
    batch = Collator(backbone.processor, backbone.template, train=True)([pretraining_record(0, i) for i in range(6)])
    positions = (batch["attention_mask"].cumsum(-1) - 1).clamp(min=0)
    common = {"attention_mask": batch["attention_mask"], "labels": batch["labels"], "position_ids": positions}
    with torch.no_grad():
        native = model(input_ids=batch["input_ids"], pixel_values=batch["pixel_values"], **common).loss
        embeds = backbone.embed(batch["input_ids"], backbone.project(backbone.vision_features(batch["pixel_values"])))
        cached = model(inputs_embeds=embeds, **common).loss
    torch.testing.assert_close(cached, native)


def _centre(image, colour: str) -> tuple[float, float]:
    ys, xs = np.nonzero((np.asarray(image) == COLOURS[colour]).all(-1))
    return float(xs.mean()), float(ys.mean())


def test_scene_captions_name_the_objects_in_reading_order():
    """'above' pairs share a column, 'to the left of' pairs share a row; the first-named object comes first."""
    for record in generate_records("scene_caption", "test", 60, seed=3):
        words = record["target"].split()  # "a <c1> <s1> <relation...> a <c2> <s2>"
        (x1, y1), (x2, y2) = _centre(record["image"], words[1]), _centre(record["image"], words[-2])
        if " above " in record["target"]:
            assert abs(x1 - x2) < CELL / 2 and y1 < y2, record["target"]
        else:
            assert "to the left of" in record["target"]
            assert abs(y1 - y2) < CELL / 2 and x1 < x2, record["target"]


def test_pretraining_mixture_asks_none_of_the_task_questions():
    task_questions = {TASK_MAKERS[t](_rng(0, t, "probe", i))["prompt"].split("\n")[0]
                      for t in TASK_MAKERS for i in range(40)}
    pretrain_questions = {pretraining_record(0, i)["prompt"].split("\n")[0] for i in range(40 * len(PRETRAIN_MAKERS))}
    assert not task_questions & pretrain_questions


def test_chart_lists_colours_in_canonical_order_and_answers_the_asked_bar():
    from mcit_bench.benchmarks.synthetic import COLOUR_NAMES, LETTERS

    for record in generate_records("chart", "test", 40, 0):
        options = record["choices"]
        assert options == sorted(options, key=COLOUR_NAMES.index)
        pixels = np.asarray(record["image"])
        heights = {c: int((pixels == COLOURS[c]).all(-1).sum()) for c in options}  # bars share one width
        asked = max if "tallest" in record["prompt"] else min
        assert record["target"] == LETTERS[options.index(asked(heights, key=heights.get))]


def test_pretraining_asks_captions_and_counts_in_several_phrasings():
    from mcit_bench.benchmarks.synthetic import CAPTION_PROMPTS, COUNT_PROMPTS

    prompts = {pretraining_record(0, i)["prompt"] for i in range(60 * len(PRETRAIN_MAKERS))}
    assert set(CAPTION_PROMPTS) <= prompts and set(COUNT_PROMPTS) <= prompts


def test_nearest_prototype_accuracy_by_hand():
    from mcit_bench.backbones.calibration import nearest_prototype_accuracy

    train = {"a": torch.tensor([[1.0, 0.0], [1.0, 0.2]]), "b": torch.tensor([[0.0, 1.0], [0.2, 1.0]])}
    # prototypes (1, .1) and (.1, 1): (1, .5) is nearer a, (.6, 1) nearer b, (1, .9) nearer a (cosine)
    test = {"a": torch.tensor([[1.0, 0.5], [0.6, 1.0]]), "b": torch.tensor([[0.6, 1.0], [1.0, 0.9], [0.0, 3.0]])}
    assert nearest_prototype_accuracy(train, test) == {"a": 50.0, "b": pytest.approx(200 / 3)}


def test_each_task_draws_in_a_domain_of_its_own(monkeypatch: pytest.MonkeyPatch):
    """UCIT's tasks come from six image sources. Even a coarse colour histogram routes most built-in test
    images to their own task's prototype, far more than when every task draws in one shared domain (the
    vision tower's routing is measured by `mcit-bench backbone build`)."""
    from mcit_bench.backbones.calibration import nearest_prototype_accuracy
    from mcit_bench.benchmarks import synthetic

    def histograms(task: str, split: str) -> torch.Tensor:
        """A coarse colour histogram (4 levels per channel: 64 bins) of each image."""
        rows = []
        for record in generate_records(task, split, 60, 0):
            levels = np.asarray(record["image"], dtype=np.int64).reshape(-1, 3) // 64
            rows.append(np.bincount(levels @ np.array([16, 4, 1]), minlength=64))
        return torch.tensor(np.stack(rows), dtype=torch.float32)

    def mean_routing() -> float:
        accuracy = nearest_prototype_accuracy({t: histograms(t, "train") for t in TASK_MAKERS},
                                              {t: histograms(t, "test") for t in TASK_MAKERS})
        return sum(accuracy.values()) / len(accuracy)

    own = mean_routing()
    monkeypatch.setattr(synthetic, "TASK_DOMAINS", dict.fromkeys(synthetic.TASK_DOMAINS, "plain"))
    shared = mean_routing()
    assert own >= 85 and own >= shared + 20, (own, shared)
