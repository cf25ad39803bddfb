"""The built-in tiny backbone ``tiny-llava``: a real LLaVA, pre-trained by the harness on CPU.

Architecture (real transformers classes): ``LlavaForConditionalGeneration`` with a CLIP vision tower
(64 px images, 16 px patches: 16 image tokens, one per cell of the synthetic world's 4x4 grid) and a
Llama language model, a byte-level BPE tokenizer, and a ``CLIPModel`` (vision + text towers) kept
beside it for text-side guidance.

Recipe (deterministic by seed):
1. train the BPE tokenizer on the synthetic world's texts;
2. pre-train the CLIP towers contrastively on image-caption pairs (``clip_pair``);
3. copy the CLIP vision tower into LLaVA and train projector + language model (vision frozen, as in
   LLaVA-1.5) on the pre-training mixture, which is disjoint from the six benchmark tasks. Each
   record is tokenized and its vision features computed once, before the steps. Batches are grouped
   by length (as ``group_by_length`` does): mixed question types, little padding, less CPU time. (Measured: batches of a single
   question type made the model answer unseen prompts in the last type's format.)

The result is written with ``save_pretrained`` into the user cache and loaded with
``from_pretrained`` exactly like a real checkpoint.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from .manifest import write_manifest

NAME = "tiny-llava"
ATTENTION = "eager"
RECIPE_VERSION = "6"  # bump whenever the recipe code or the synthetic world changes


@dataclass(frozen=True)
class TinyRecipe:
    seed: int = 0
    vocab_size: int = 512
    image_size: int = 64
    patch_size: int = 16
    vision_hidden: int = 64
    vision_layers: int = 2
    text_hidden: int = 128
    text_layers: int = 3
    clip_text_hidden: int = 64
    clip_text_layers: int = 2
    clip_steps: int = 800
    clip_batch: int = 64
    clip_lr: float = 1e-3
    lm_steps: int = 1500
    lm_batch: int = 32
    lm_lr: float = 6e-4
    warmup: int = 100
    pretrain_pool: int = 16000


def cache_root() -> Path:
    """``$MCIT_BENCH_CACHE`` or ``~/.cache/mcit-bench``."""
    return Path(os.environ.get("MCIT_BENCH_CACHE", Path.home() / ".cache" / "mcit-bench"))


def recipe_tag(recipe: TinyRecipe | None = None, name: str = NAME) -> str:
    """``<name>-r<version>-<hash of the recipe>``: the folder name of a build, kept in run summaries."""
    import hashlib

    digest = hashlib.sha256(json.dumps(asdict(recipe or TinyRecipe()), sort_keys=True).encode()).hexdigest()[:10]
    return f"{name}-r{RECIPE_VERSION}-{digest}"


def tiny_backbone_path(recipe: TinyRecipe | None = None, name: str = NAME, build: bool = True,
                       progress: bool = True) -> Path:
    """Folder of the cached tiny backbone; builds it on first use.

    The folder name carries a hash of the recipe: changing the recipe never reuses a stale build.
    """
    recipe = recipe or TinyRecipe()
    folder = cache_root() / "backbones" / recipe_tag(recipe, name)
    if not (folder / "config.json").is_file() and build:
        build_tiny_backbone(folder, recipe, progress=progress)
    return folder


# --------------------------------------------------------------------------- construction
def build_tokenizer(corpus: list[str], vocab_size: int):
    """Byte-level BPE, Llama-style (BOS prepended, no EOS): the language model's tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    # EOS is NOT id 2: transformers' CLIP text tower treats eos_token_id == 2 as a legacy config and
    # pools at the highest token id instead of at EOS (measured: every caption then pooled at the same
    # word, and the contrastive stage learned no shapes at all).
    specials = ["<pad>", "<s>", "<unk>", "</s>", "<image>"]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                                         initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return _wrap_tokenizer(tok, append_eos=False)


def clip_tokenizer_for(tokenizer: Any):
    """The CLIP text tower's tokenizer: the same vocabulary, every text ended with EOS (CLIP pools there)."""
    from tokenizers import Tokenizer

    return _wrap_tokenizer(Tokenizer.from_str(tokenizer.backend_tokenizer.to_str()), append_eos=True)


def _wrap_tokenizer(tok: Any, append_eos: bool):
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    bos, eos = tok.token_to_id("<s>"), tok.token_to_id("</s>")
    tok.post_processor = processors.TemplateProcessing(single="<s> $A </s>" if append_eos else "<s> $A",
                                                       pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", bos), ("</s>", eos)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>", extra_special_tokens={"image_token": "<image>"},
                                   model_max_length=256)


def build_models(recipe: TinyRecipe, tokenizer: Any):
    from transformers import (CLIPConfig, CLIPModel, CLIPTextConfig, CLIPVisionConfig, LlamaConfig, LlavaConfig,
                              LlavaForConditionalGeneration)

    vocab = len(tokenizer)
    vision = CLIPVisionConfig(hidden_size=recipe.vision_hidden, intermediate_size=4 * recipe.vision_hidden,
                              num_hidden_layers=recipe.vision_layers, num_attention_heads=4,
                              image_size=recipe.image_size, patch_size=recipe.patch_size, projection_dim=64)
    text = CLIPTextConfig(vocab_size=vocab, hidden_size=recipe.clip_text_hidden,
                          intermediate_size=4 * recipe.clip_text_hidden, num_hidden_layers=recipe.clip_text_layers,
                          num_attention_heads=4, max_position_embeddings=64, projection_dim=64,
                          bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                          pad_token_id=tokenizer.pad_token_id)
    clip = CLIPModel(CLIPConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=64))
    llama = LlamaConfig(vocab_size=vocab, hidden_size=recipe.text_hidden, intermediate_size=2 * recipe.text_hidden,
                        num_hidden_layers=recipe.text_layers, num_attention_heads=4, num_key_value_heads=2,
                        max_position_embeddings=256, bos_token_id=tokenizer.bos_token_id,
                        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                        tie_word_embeddings=False)
    config = LlavaConfig(vision_config=vision, text_config=llama, image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
                         vision_feature_layer=-1, vision_feature_select_strategy="default",
                         projector_hidden_act="gelu")
    return clip, LlavaForConditionalGeneration(config)


def build_processor(recipe: TinyRecipe, tokenizer: Any):
    from transformers import CLIPImageProcessorPil, LlavaProcessor

    size = recipe.image_size
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    return LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=recipe.patch_size,
                          vision_feature_select_strategy="default", num_additional_image_tokens=1,
                          image_token="<image>")


# --------------------------------------------------------------------------- pre-training
def _schedule(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def pretrain_clip(clip: Any, processor: Any, clip_tokenizer: Any, recipe: TinyRecipe,
                  tick: Callable[[dict], None]) -> float:
    import torch

    from mcit_bench.benchmarks.synthetic import clip_pair

    tok = clip_tokenizer
    opt = torch.optim.AdamW(clip.parameters(), lr=recipe.clip_lr, weight_decay=0.01)
    clip.train()
    loss = torch.tensor(0.0)
    for step in range(recipe.clip_steps):
        pairs = [clip_pair(recipe.seed, step * recipe.clip_batch + i) for i in range(recipe.clip_batch)]
        pixels = processor.image_processor([p[0] for p in pairs], return_tensors="pt")["pixel_values"]
        enc = tok([p[1] for p in pairs], padding=True, return_tensors="pt", add_special_tokens=True)
        for group in opt.param_groups:
            group["lr"] = recipe.clip_lr * _schedule(step, recipe.clip_steps, recipe.warmup)
        loss = clip(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], pixel_values=pixels,
                    return_loss=True).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        tick({"stage": "clip", "loss": loss.item()})
    clip.eval()
    return float(loss.detach())


def _length_grouped_batches(lengths: list[int], batch: int, steps: int, gen: Any, group: int = 8):
    """Random batches, grouped by length: draw ``group`` batches' worth, sort by length, split."""
    import torch

    made = 0
    while made < steps:
        idx = torch.randint(len(lengths), (batch * group,), generator=gen).tolist()
        idx.sort(key=lengths.__getitem__)
        chunks = [idx[k * batch:(k + 1) * batch] for k in range(group)]
        for k in torch.randperm(group, generator=gen).tolist():
            if made == steps:
                return
            made += 1
            yield chunks[k]


def _encode_pool(backbone: Any, pool: list[dict], chunk: int = 256) -> tuple[list, list, Any]:
    """Each pool record tokenized once (ids and labels without padding) and its frozen vision features
    computed once: per-step collation and vision passes would repeat the same work (they were about a
    third of the build time)."""
    import torch

    from mcit_bench.collate import Collator

    collate = Collator(backbone.processor, backbone.template, train=True)
    ids, labels, features = [], [], []
    for start in range(0, len(pool), chunk):
        batch = collate(pool[start:start + chunk])
        for row, mask in enumerate(batch["attention_mask"].bool()):
            ids.append(batch["input_ids"][row][mask].tolist())
            labels.append(batch["labels"][row][mask].tolist())
        features.append(backbone.vision_features(batch["pixel_values"]))
    return ids, labels, torch.cat(features)


def pretrain_llava(model: Any, processor: Any, recipe: TinyRecipe, tick: Callable[[dict], None]) -> float:
    import torch

    from mcit_bench.backbones.llava import Backbone
    from mcit_bench.benchmarks.synthetic import pretraining_record
    from mcit_bench.collate import left_pad
    from mcit_bench.templates import get_template

    backbone = Backbone(model, processor, get_template("plain_chat"))
    model.requires_grad_(False)
    trainable = list(model.model.multi_modal_projector.parameters()) + list(model.model.language_model.parameters()) \
        + list(model.lm_head.parameters())
    for p in trainable:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(trainable, lr=recipe.lm_lr, weight_decay=0.01)
    gen = torch.Generator().manual_seed(recipe.seed)
    pool = [pretraining_record(recipe.seed, i) for i in range(recipe.pretrain_pool)]
    model.eval()
    pool_ids, pool_labels, pool_features = _encode_pool(backbone, pool)
    pad = processor.tokenizer.pad_token_id
    model.train()
    loss = torch.tensor(0.0)
    for step, idx in enumerate(_length_grouped_batches([len(i) for i in pool_ids], recipe.lm_batch,
                                                       recipe.lm_steps, gen)):
        batch = left_pad([pool_ids[i] for i in idx], [pool_labels[i] for i in idx], pad)
        for group in opt.param_groups:
            group["lr"] = recipe.lm_lr * _schedule(step, recipe.lm_steps, recipe.warmup)
        embeds = backbone.embed(batch["input_ids"], backbone.project(pool_features[idx]))
        out = model(inputs_embeds=embeds, attention_mask=batch["attention_mask"], labels=batch["labels"],
                    position_ids=(batch["attention_mask"].cumsum(-1) - 1).clamp(min=0))
        opt.zero_grad()
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        opt.step()
        loss = out.loss.detach()
        tick({"stage": "lm", "loss": loss.item()})
    model.eval()
    model.requires_grad_(False)
    return float(loss.detach())


def build_tiny_backbone(folder: Path, recipe: TinyRecipe | None = None, progress: bool = True) -> Path:
    """Build, pre-train and save the tiny backbone into ``folder`` (atomically: temp dir + rename)."""
    import torch
    from tqdm.auto import tqdm

    from mcit_bench.benchmarks.synthetic import tokenizer_corpus
    from mcit_bench.seeding import seed_everything

    recipe = recipe or TinyRecipe()
    start = time.time()
    seed_everything(recipe.seed)
    tokenizer = build_tokenizer(tokenizer_corpus(recipe.seed), recipe.vocab_size)
    clip_tokenizer = clip_tokenizer_for(tokenizer)
    processor = build_processor(recipe, tokenizer)
    clip, llava = build_models(recipe, tokenizer)
    for model in (clip, llava):
        # Eager attention: at these sizes sdpa's CPU kernel costs more than it saves (a lora-ft step on
        # the chart task: 76 ms with sdpa, 62 ms eager). The sidecar makes every later load use it too.
        model.set_attn_implementation(ATTENTION)
    bar = tqdm(total=recipe.clip_steps + recipe.lm_steps, desc=f"building {NAME} (one-time)", disable=not progress,
               unit="step")

    def tick(info: dict) -> None:
        bar.set_postfix(stage=info["stage"], loss=f"{info['loss']:.3f}", refresh=False)
        bar.update(1)

    clip_loss = pretrain_clip(clip, processor, clip_tokenizer, recipe, tick)
    llava.model.vision_tower.load_state_dict(clip.vision_model.state_dict())
    lm_loss = pretrain_llava(llava, processor, recipe, tick)
    bar.close()

    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    # Shards below 5 MB: the build ships as package data, where every file stays small.
    llava.save_pretrained(tmp, max_shard_size="4MB")
    processor.save_pretrained(tmp)
    clip.save_pretrained(tmp / "clip", max_shard_size="4MB")
    clip_tokenizer.save_pretrained(tmp / "clip")
    sidecar = {"name": NAME, "recipe_version": RECIPE_VERSION, "recipe": asdict(recipe), "template": "plain_chat",
               "clip": "clip", "attn_implementation": ATTENTION, "final_clip_loss": clip_loss, "final_lm_loss": lm_loss,
               "build_seconds": round(time.time() - start, 1), "torch": torch.__version__}
    (tmp / "mcit_bench_backbone.json").write_text(json.dumps(sidecar, indent=2))
    write_manifest(tmp)  # sha256 of every file: a shipped or copied build is checked when loaded
    folder.parent.mkdir(parents=True, exist_ok=True)
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)
    return folder
