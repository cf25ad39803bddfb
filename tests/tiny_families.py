"""Tiny random-init checkpoints of each backbone family, built from the STOCK transformers configs and
written with ``save_pretrained`` (never by the harness's own tiny-backbone code): LLaVA-1.5, InstructBLIP
(Vicuna-style LLaMA LM) and Qwen2-VL. A character-level tokenizer keeps them offline and fast."""
from __future__ import annotations

from pathlib import Path

SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]


def char_tokenizer(extra: list[str], bos: bool = True):
    """Character-level tokenizer: the specials, ``extra`` special tokens, then printable ASCII and newline."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    words = SPECIALS + extra + ["\n"] + [chr(c) for c in range(32, 127)]
    raw = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    if bos:
        raw.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                  unk_token="<unk>")
    tok.add_special_tokens({"additional_special_tokens": extra})
    return tok


def _text_config(vocab: int) -> dict:
    return dict(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                num_key_value_heads=1, pad_token_id=0, bos_token_id=1, eos_token_id=2, max_position_embeddings=1024)


def build_llava(folder: Path) -> Path:
    import torch
    from transformers import (CLIPImageProcessorPil, CLIPVisionConfig, LlamaConfig, LlavaConfig,
                              LlavaForConditionalGeneration, LlavaProcessor)

    tok = char_tokenizer(["<image>"])
    tok.add_special_tokens({"additional_special_tokens": ["<image>"]})
    torch.manual_seed(0)
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                       num_attention_heads=2, image_size=32, patch_size=16),
        text_config=LlamaConfig(**_text_config(len(tok))), image_token_id=tok.convert_tokens_to_ids("<image>"))
    LlavaForConditionalGeneration(config).save_pretrained(folder)
    LlavaProcessor(CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}), tok,
                   patch_size=16, vision_feature_select_strategy="default", num_additional_image_tokens=1,
                   image_token="<image>").save_pretrained(folder)
    return folder


def build_instructblip(folder: Path) -> Path:
    import torch
    from transformers import (AddedToken, BlipImageProcessorPil, InstructBlipConfig,
                              InstructBlipForConditionalGeneration, InstructBlipProcessor, InstructBlipQFormerConfig,
                              InstructBlipVisionConfig, LlamaConfig)

    tok = char_tokenizer(["<image>"])
    qtok = char_tokenizer([], bos=False)
    torch.manual_seed(0)
    config = InstructBlipConfig(
        vision_config=InstructBlipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                               num_attention_heads=2, image_size=32, patch_size=16).to_dict(),
        qformer_config=InstructBlipQFormerConfig(vocab_size=len(qtok), hidden_size=32, num_hidden_layers=1,
                                                 num_attention_heads=2, intermediate_size=64,
                                                 encoder_hidden_size=32, pad_token_id=0).to_dict(),
        text_config=LlamaConfig(**_text_config(len(tok))).to_dict(),
        num_query_tokens=4, image_token_index=tok.convert_tokens_to_ids("<image>"))
    InstructBlipForConditionalGeneration(config).save_pretrained(folder)
    processor = InstructBlipProcessor(BlipImageProcessorPil(size={"height": 32, "width": 32}), tok, qtok,
                                      num_query_tokens=4)
    # transformers 5.23 needs an AddedToken here (a plain string crashes on save/load)
    processor.image_token = AddedToken("<image>", normalized=False, special=True)
    processor.save_pretrained(folder)
    return folder


def build_qwen2vl(folder: Path) -> Path:
    import torch
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLImageProcessorPil

    extra = ["<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>", "<|im_start|>", "<|im_end|>"]
    tok = char_tokenizer(extra, bos=False)
    ids = {t: tok.convert_tokens_to_ids(t) for t in extra}
    torch.manual_seed(0)
    text = _text_config(len(tok))
    text["rope_parameters"] = {"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 10000.0}
    config = Qwen2VLConfig(
        vision_config=dict(depth=1, embed_dim=32, hidden_size=32, num_heads=2, patch_size=14, spatial_merge_size=2,
                           temporal_patch_size=2),
        text_config=text, image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"])
    Qwen2VLForConditionalGeneration(config).save_pretrained(folder)
    # Qwen2VLProcessor needs torchvision (unusable here): save its two parts, as a hub checkpoint holds them.
    Qwen2VLImageProcessorPil(min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 16).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


BUILDERS = {"llava": build_llava, "instructblip": build_instructblip, "qwen2_vl": build_qwen2vl}
