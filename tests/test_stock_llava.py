"""A LLaVA checkpoint saved with save_pretrained from a stock transformers config (not built by our
tiny-backbone code) loads and runs through the same adapter path."""
from __future__ import annotations

import json
from pathlib import Path

from mcit_bench.cli import main


def _stock_checkpoint(folder: Path) -> None:
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import (CLIPImageProcessorPil, CLIPVisionConfig, LlamaConfig, LlavaConfig,
                              LlavaForConditionalGeneration, LlavaProcessor, PreTrainedTokenizerFast)

    words = ["<pad>", "<s>", "</s>", "<unk>", "<image>"] + [chr(c) for c in range(32, 127)]
    raw = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    raw.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                  unk_token="<unk>", extra_special_tokens={"image_token": "<image>"})
    torch.manual_seed(0)
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                                       image_size=32, patch_size=16),
        text_config=LlamaConfig(vocab_size=len(words), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                num_attention_heads=2, num_key_value_heads=1, pad_token_id=0, bos_token_id=1,
                                eos_token_id=2),
        image_token_id=4,
    )
    LlavaForConditionalGeneration(config).save_pretrained(folder)
    processor = LlavaProcessor(CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
                               tok, patch_size=16, vision_feature_select_strategy="default",
                               num_additional_image_tokens=1, image_token="<image>")
    processor.save_pretrained(folder)


def test_stock_llava_checkpoint_runs(tmp_path: Path) -> None:
    ckpt = tmp_path / "stock-llava"
    _stock_checkpoint(ckpt)
    out = tmp_path / "run"
    assert main(["run", "--method", "lora-ft", "--order", "1", "--backbone", str(ckpt), "--preset", "quick",
                 "--output", str(out), "--quiet", "--logger", "none", "--set", "eval_max_new_tokens=3"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] and summary["backbone"] == str(ckpt)
    assert summary["environment"]["dtype"] == "float32"
