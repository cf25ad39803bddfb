"""Backbone families beyond the built-in LLaVA: dispatch on model_type, the adapter's forward equals the
stock HF model's own forward (so collation, image-token expansion, Q-Former inputs and M-RoPE positions
are what the model expects), text-only rows, and one quick continual run per family on CPU."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch

from mcit_bench.backbones.llava import Backbone
from mcit_bench.rundir.checkpoints import load_checkpoint
from mcit_bench.cli import main
from mcit_bench.collate import Collator
from mcit_bench.errors import UserError

from tiny_families import BUILDERS


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("families")
    return {name: build(root / name) for name, build in BUILDERS.items()}


def _records(n: int = 3, text_only: int | None = None) -> list[dict]:
    from mcit_bench.benchmarks.synthetic import generate_records

    records = [dict(r) for r in generate_records("chart", "test", n, 0)]
    if text_only is not None:
        records[text_only]["image"] = None
    return records


def _load(folder: Path) -> Backbone:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Backbone.from_pretrained(folder)


def _native_logits(bb: Backbone, batch: dict) -> torch.Tensor:
    """The stock model's forward on the collated batch (its own image merging and positions)."""
    mask = batch["attention_mask"]
    if bb.family == "qwen2_vl":
        from mcit_bench.backbones.qwen2vl import unpack_grids

        grids = unpack_grids(batch["pixel_values"])
        flat = torch.cat([batch["pixel_values"][i, 1:1 + int(g.prod())] for i, g in enumerate(grids)])
        return bb.model(input_ids=batch["input_ids"], attention_mask=mask, pixel_values=flat, image_grid_thw=grids,
                        mm_token_type_ids=batch["mm_token_type_ids"]).logits
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    extra = {k: batch[k] for k in ("qformer_input_ids", "qformer_attention_mask") if k in batch}
    return bb.model(input_ids=batch["input_ids"], attention_mask=mask, pixel_values=batch["pixel_values"],
                    position_ids=positions, **extra).logits


@pytest.mark.parametrize("family", ["llava", "instructblip", "qwen2_vl"])
def test_lm_loss_equals_cross_entropy_of_the_native_logits(checkpoints, family: str) -> None:
    # lm_loss runs the head on labelled positions only; the value must be the stock model's loss.
    bb = _load(checkpoints[family])
    batch = Collator(bb.processor, bb.template, train=True, image_token=bb.image_token)(_records())
    with torch.no_grad():
        embeds = bb.embed(batch["input_ids"], bb.visual_tokens(batch))
        ours = bb.lm_loss(embeds, batch["attention_mask"], batch["labels"], bb.position_ids(batch))
        logits = _native_logits(bb, batch)
    native = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), batch["labels"][:, 1:].flatten(),
                                               ignore_index=-100)
    assert torch.allclose(ours, native, atol=1e-5), (ours, native)


@pytest.mark.parametrize("family,cls_name,template", [
    ("llava", "Backbone", "vicuna_v1"),
    ("instructblip", "InstructBlipBackbone", "instructblip"),
    ("qwen2_vl", "Qwen2VLBackbone", "qwen2_vl"),
])
def test_dispatch_and_adapter_equals_native_forward(checkpoints, family: str, cls_name: str, template: str) -> None:
    bb = _load(checkpoints[family])
    assert type(bb).__name__ == cls_name and bb.family == family and bb.template.name == template
    batch = Collator(bb.processor, bb.template, train=True, image_token=bb.image_token)(_records())
    assert (batch["attention_mask"][:, 0] == 0).any()  # left padding is exercised
    with torch.no_grad():
        embeds = bb.embed(batch["input_ids"], bb.visual_tokens(batch))
        ours = bb.lm_forward(embeds, batch["attention_mask"], bb.position_ids(batch))
        native = _native_logits(bb, batch)
    real = batch["attention_mask"].bool()
    assert torch.allclose(ours[real], native[real], atol=1e-4), (ours[real] - native[real]).abs().max()
    # the family's vision path has the documented sizes
    assert bb.vision_features(batch["pixel_values"]).shape[-1] == bb.vision_hidden_size
    assert embeds.shape[-1] == bb.hidden_size


def test_qwen2vl_positions_are_mrope_not_sequential(checkpoints) -> None:
    bb = _load(checkpoints["qwen2_vl"])
    batch = Collator(bb.processor, bb.template, train=False, image_token=bb.image_token)(_records(2))
    pos = bb.position_ids(batch)
    assert pos.shape == (3,) + tuple(batch["input_ids"].shape)
    image = batch["input_ids"][0] == bb.image_token_id
    # image tokens sit on a 2D grid: height and width positions differ inside the image block
    assert not torch.equal(pos[1, 0][image], pos[2, 0][image])
    n_image = int(image.sum())
    assert n_image == int(batch["image_grid_thw"][0].prod()) // 4  # expanded by grid / merge^2
    assert batch["mm_token_type_ids"][0].sum() == n_image


@pytest.mark.parametrize("family", ["llava", "instructblip", "qwen2_vl"])
def test_text_only_row_reads_no_image(checkpoints, family: str) -> None:
    bb = _load(checkpoints[family])
    records = _records(3, text_only=1)
    collate = Collator(bb.processor, bb.template, train=False, image_token=bb.image_token)
    batch = collate(records)
    assert (batch["input_ids"][1] == bb.image_token_id).sum() == 0 and (batch["input_ids"][0] == bb.image_token_id).any()
    assert batch["pixel_values"].shape[0] == 3  # rows stay aligned
    with torch.no_grad():
        embeds = bb.embed(batch["input_ids"], bb.visual_tokens(batch))
        ours = bb.lm_forward(embeds, batch["attention_mask"], bb.position_ids(batch))[1]
        alone = collate([records[1]])  # the same text-only record on its own, no images anywhere
        ids = alone["input_ids"]
        lm_alone = bb.lm_forward(bb.input_embeddings()(ids), alone["attention_mask"])[0]
    n = ids.shape[1]
    assert torch.allclose(ours[-n:], lm_alone, atol=1e-4)


def test_training_labels_cover_answer_and_eos_only(checkpoints) -> None:
    bb = _load(checkpoints["llava"])
    records = _records(2)
    batch = Collator(bb.processor, bb.template, train=True, image_token=bb.image_token)(records)
    for row, record in enumerate(records):
        labels = batch["labels"][row][batch["labels"][row] != -100].tolist()
        assert labels[-1] == bb.tokenizer.eos_token_id
        assert bb.tokenizer.decode(labels[:-1]).replace(" ", "") == record["target"].replace(" ", "")


@pytest.mark.parametrize("family", sorted(BUILDERS))
def test_every_answer_of_a_multi_turn_conversation_is_labelled(checkpoints, family: str) -> None:
    """Each family's template continues the conversation; labels cover the three answers (+ EOS) only."""
    bb = _load(checkpoints[family])
    record = {**_records(1)[0], "prompt": "Which bar is tallest?", "target": "B",
              "turns": [{"prompt": "And the shortest?", "target": "D"}, {"prompt": "How many bars?", "target": "four"}]}
    labels = Collator(bb.processor, bb.template, train=True, image_token=bb.image_token)([record])["labels"][0].tolist()
    runs, current = [], []
    for value in labels + [-100]:
        if value != -100:
            current.append(value)
        elif current:
            runs.append(current)
            current = []
    # (some tiny tokenizers decode with spaces between tokens, as the test above allows)
    assert [bb.tokenizer.decode(run[:-1]).replace(" ", "") for run in runs] == ["B", "D", "four"]
    assert all(run[-1] == bb.tokenizer.eos_token_id for run in runs)


def test_unsupported_model_type_is_a_user_error(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "idefics2"}))
    with pytest.raises(UserError, match="model_type 'idefics2' is not supported"):
        Backbone.from_pretrained(tmp_path)


def test_benchmark_template_applies_to_llava_only(checkpoints) -> None:
    assert _load(checkpoints["llava"]).template.name == "vicuna_v1"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = Backbone.from_pretrained(checkpoints["llava"], preferred_template="plain_chat")
        qwen = Backbone.from_pretrained(checkpoints["qwen2_vl"], preferred_template="vicuna_v1")
        forced = Backbone.from_pretrained(checkpoints["qwen2_vl"], template="vicuna_v1")
    assert plain.template.name == "plain_chat" and qwen.template.name == "qwen2_vl"
    assert forced.template.name == "vicuna_v1"


@pytest.mark.parametrize("family", ["instructblip", "qwen2_vl"])  # LLaVA: tests/test_stock_llava.py
def test_quick_continual_run_per_family(checkpoints, tmp_path: Path, family: str) -> None:
    # three tasks keep CPU time small; the full (T+1) x T matrix is still evaluated
    order = tmp_path / "three.yaml"
    order.write_text("tasks: [styles, chart, count_math]\n")
    out = tmp_path / "run"
    assert main(["run", "--method", "lora-ft", "--order", str(order), "--backbone", str(checkpoints[family]),
                 "--preset", "quick", "--output", str(out), "--quiet", "--logger", "none",
                 "--set", "eval_max_new_tokens=3", "--set", "test_size=4"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] and summary["trainable_parameters"] > 0 and summary["fwd"] is not None
    assert len(list((out / "checkpoints").glob("*.safetensors"))) == 3
    # LoRA reached the language model of this family and the projector trained with it
    ckpt = load_checkpoint(out, 1)["tensors"]
    assert any("lora_A" in k and "language_model" in k for k in ckpt)
