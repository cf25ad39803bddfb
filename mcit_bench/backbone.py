"""Backbone adapter over Hugging Face multimodal LLMs (LLaVA family).

One code path for every checkpoint: ``LlavaForConditionalGeneration.from_pretrained(path)`` and
``AutoProcessor.from_pretrained(path)``, whether the path is the built-in tiny backbone or
llava-1.5-7b-hf. The adapter exposes the pieces continual-learning strategies need:

* ``vision_features``: frozen vision-tower features (the layer/selection of the LLaVA config);
* ``project``: the multimodal projector (strategies may replace it, e.g. MAny's CPM);
* ``embed``: LLM input embeddings with the image tokens filled in, ready for soft-prompt insertion;
* ``lm_loss`` / ``generate``: language model on embeddings (greedy decoding for evaluation);
* ``clip``: an optional CLIP model (image + text towers) for text-side guidance (ModalPrompt).

A checkpoint folder may carry ``mcit_bench_backbone.json`` (conversation template, CLIP subfolder);
a stock checkpoint without it gets the vicuna_v1 template.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import UserError
from .templates import Template, get_template

SIDECAR = "mcit_bench_backbone.json"


class Backbone(nn.Module):
    """A loaded MLLM plus its processor and the hooks strategies use."""

    def __init__(self, model: nn.Module, processor: Any, template: Template, clip: nn.Module | None = None,
                 clip_tokenizer: Any = None, source: str = "") -> None:
        super().__init__()
        self.model = model
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.template = template
        self.clip = clip
        self.clip_tokenizer = clip_tokenizer
        self.source = source
        self.image_token = getattr(processor, "image_token", "<image>")
        self.image_token_id = model.config.image_token_id

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, path: str | Path, dtype: torch.dtype = torch.float32, clip_path: str | None = None,
                        template: str | None = None) -> "Backbone":
        from transformers import AutoProcessor, LlavaForConditionalGeneration

        path = Path(path)
        if not (path / "config.json").is_file():
            raise UserError(f"backbone {str(path)!r}: no config.json there (expected a save_pretrained folder)")
        sidecar = json.loads((path / SIDECAR).read_text()) if (path / SIDECAR).is_file() else {}
        model = LlavaForConditionalGeneration.from_pretrained(path, dtype=dtype)
        processor = AutoProcessor.from_pretrained(path)
        clip = clip_tokenizer = None
        clip_dir = clip_path or (str(path / sidecar["clip"]) if "clip" in sidecar else None)
        if clip_dir:
            clip, clip_tokenizer = load_clip(clip_dir, dtype)
        model.requires_grad_(False)
        name = template or sidecar.get("template", "vicuna_v1")
        return cls(model, processor, get_template(name), clip=clip, clip_tokenizer=clip_tokenizer, source=str(path))

    # ------------------------------------------------------------------ sizes
    @property
    def hidden_size(self) -> int:
        return self.model.config.text_config.hidden_size

    @property
    def vision_hidden_size(self) -> int:
        return self.model.config.vision_config.hidden_size

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # ------------------------------------------------------------------ pieces
    @property
    def language_model(self) -> nn.Module:
        return self.model.model.language_model

    @property
    def projector(self) -> nn.Module:
        return self.model.model.multi_modal_projector

    def input_embeddings(self) -> nn.Embedding:
        return self.model.get_input_embeddings()

    def vision_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Frozen vision features [B, N, Dv] selected as the LLaVA config says (layer, CLS dropped)."""
        cfg = self.model.config
        with torch.no_grad():
            out = self.model.model.vision_tower(pixel_values.to(self.dtype), output_hidden_states=True)
            layers = cfg.vision_feature_layer
            if isinstance(layers, int):
                layers = [layers]
            states = [out.hidden_states[i] for i in layers]
            if cfg.vision_feature_select_strategy == "default":
                states = [s[:, 1:] for s in states]
            return torch.cat(states, dim=-1)

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def project(self, features: torch.Tensor) -> torch.Tensor:
        return self.projector(features)

    def embed(self, input_ids: torch.Tensor, visual_tokens: torch.Tensor) -> torch.Tensor:
        """Token embeddings with the ``<image>`` positions replaced by ``visual_tokens`` [B, N, D]."""
        embeds = self.input_embeddings()(input_ids)
        image_mask = (input_ids == self.image_token_id).unsqueeze(-1).expand_as(embeds)
        if image_mask.sum() != visual_tokens.numel():
            raise ValueError(f"{int(image_mask.sum()) // embeds.shape[-1]} image tokens in the text but "
                             f"{visual_tokens.shape[0] * visual_tokens.shape[1]} visual tokens")
        return embeds.masked_scatter(image_mask, visual_tokens.to(embeds.dtype))

    def lm_forward(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Logits [B, L, V] of the language model on embeddings (positions from the mask)."""
        position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
        hidden = self.language_model(inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                                     position_ids=position_ids).last_hidden_state
        return self.model.lm_head(hidden)

    def lm_loss(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean next-token cross-entropy over positions whose label is not -100."""
        logits = self.lm_forward(inputs_embeds, attention_mask)
        return nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(),
                                           ignore_index=-100)

    @torch.no_grad()
    def generate(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor, max_new_tokens: int) -> list[str]:
        """Greedy decoding from embeddings; returns the stripped decoded answers."""
        position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
        out = self.model.generate(
            inputs_embeds=inputs_embeds, attention_mask=attention_mask, position_ids=position_ids,
            max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
            pad_token_id=self.tokenizer.pad_token_id, eos_token_id=self.tokenizer.eos_token_id,
        )
        return [t.strip() for t in self.tokenizer.batch_decode(out, skip_special_tokens=True)]

    # ------------------------------------------------------------------ CLIP side (optional)
    def attach_clip(self, clip_dir: str | Path) -> None:
        """Load a CLIP model (both towers, frozen) from ``clip_dir`` for guidance, replacing any other."""
        self.clip, self.clip_tokenizer = load_clip(clip_dir, self.dtype)
        self.clip.to(self.device)

    def require_clip(self, who: str) -> nn.Module:
        if self.clip is None:
            raise UserError(f"{who} needs a CLIP model (image and text towers): pass --set clip_path=<folder> "
                            f"or use a backbone whose {SIDECAR} names one")
        return self.clip

    @torch.no_grad()
    def clip_text_embeds(self, texts: list[str]) -> torch.Tensor:
        """CLIP text-tower projected embeddings [B, C] of raw instruction texts."""
        clip = self.require_clip("CLIP text guidance")
        enc = self.clip_tokenizer(texts, padding=True, truncation=True, max_length=clip.config.text_config.max_position_embeddings,
                  return_tensors="pt")
        return clip.get_text_features(input_ids=enc["input_ids"].to(self.device),
                                      attention_mask=enc["attention_mask"].to(self.device)).pooler_output

    @torch.no_grad()
    def clip_image_embeds(self, pixel_values: torch.Tensor) -> torch.Tensor:
        clip = self.require_clip("CLIP image guidance")
        return clip.get_image_features(pixel_values=pixel_values.to(self.dtype)).pooler_output


def load_clip(clip_dir: str | Path, dtype: torch.dtype = torch.float32) -> tuple[nn.Module, Any]:
    """A frozen ``CLIPModel`` and its tokenizer from a ``save_pretrained`` folder (``clip_path``)."""
    from transformers import AutoTokenizer, CLIPModel

    if not (Path(clip_dir) / "config.json").is_file():
        raise UserError(f"clip_path {str(clip_dir)!r}: no config.json there (expected a CLIPModel folder)")
    clip = CLIPModel.from_pretrained(clip_dir, dtype=dtype)
    clip.requires_grad_(False).eval()
    return clip, AutoTokenizer.from_pretrained(clip_dir)
