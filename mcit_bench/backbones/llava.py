"""Backbone adapter over Hugging Face multimodal LLMs: LLaVA here, other families beside it.

One code path for every LLaVA checkpoint: ``LlavaForConditionalGeneration.from_pretrained(path)`` and
``AutoProcessor.from_pretrained(path)``, whether the path is the built-in tiny backbone or
llava-1.5-7b-hf. ``Backbone.from_pretrained`` dispatches on ``config.json``'s ``model_type``:
``llava`` -> this class, ``instructblip`` -> ``backbones.instructblip.InstructBlipBackbone``,
``qwen2_vl`` -> ``backbones.qwen2vl.Qwen2VLBackbone`` (``FAMILIES``). Every family keeps the same
public API; a family overrides only the pieces that differ (where the LM, its head and the projector
live, how vision features are computed, the default template). The adapter exposes the pieces
continual-learning strategies need:

* ``vision_features``: frozen vision-tower features (the layer/selection of the LLaVA config);
* ``project``: the multimodal projector (strategies may replace it, e.g. MAny's CPM);
* ``embed``: LLM input embeddings with the image tokens filled in, ready for soft-prompt insertion;
* ``lm_loss`` / ``generate``: language model on embeddings (greedy decoding for evaluation);
* ``clip``: an optional CLIP model (image + text towers) for text-side guidance (ModalPrompt);
* ``visual_tokens(batch)``: projected visual tokens of a collated batch, family-aware (InstructBLIP's
  Q-Former reads the instruction; use it rather than ``project(vision_features(...))`` when you can);
* ``position_ids(batch)``: family position ids (Qwen2-VL's M-RoPE) or None (positions from the mask);
  ``lm_forward``/``lm_loss``/``generate`` take them as an optional ``position_ids``.

A checkpoint folder may carry ``mcit_bench_backbone.json`` (conversation template, CLIP subfolder,
``attn_implementation``); a stock checkpoint without it gets the vicuna_v1 template and transformers'
default attention (sdpa).
"""
from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from ..errors import UserError
from ..templates import Template, get_template

SIDECAR = "mcit_bench_backbone.json"

# config.json model_type -> "module:Class" of the family adapter (imported lazily).
FAMILIES: dict[str, str] = {
    "llava": "mcit_bench.backbones.llava:Backbone",
    "instructblip": "mcit_bench.backbones.instructblip:InstructBlipBackbone",
    "qwen2_vl": "mcit_bench.backbones.qwen2vl:Qwen2VLBackbone",
}


def family_class(path: Path) -> type["Backbone"]:
    """The adapter class for the checkpoint in ``path`` (by ``model_type``), or a UserError."""
    try:
        model_type = json.loads((path / "config.json").read_text()).get("model_type")
    except (OSError, ValueError) as exc:
        raise UserError(f"backbone {str(path)!r}: config.json is not readable JSON ({exc})") from exc
    if model_type not in FAMILIES:
        raise UserError(f"backbone {str(path)!r}: config.json model_type {model_type!r} is not supported; "
                        f"supported: {', '.join(FAMILIES)}")
    module_name, cls_name = FAMILIES[model_type].split(":")
    return getattr(importlib.import_module(module_name), cls_name)


class Backbone(nn.Module):
    """A loaded MLLM plus its processor and the hooks strategies use (this class: the LLaVA family)."""

    family: ClassVar[str] = "llava"
    default_template: ClassVar[str] = "vicuna_v1"
    # Whether a benchmark's native template (UCIT/CoIN: vicuna_v1, written for LLaVA-1.5) applies.
    takes_benchmark_template: ClassVar[bool] = True

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
        token = getattr(processor, "image_token", "<image>")
        self.image_token = str(getattr(token, "content", token))  # InstructBLIP keeps an AddedToken there
        self.image_token_id = model.config.image_token_id

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, path: str | Path, dtype: torch.dtype = torch.float32, clip_path: str | None = None,
                        template: str | None = None, preferred_template: str | None = None) -> "Backbone":
        """Load a checkpoint folder; ``Backbone.from_pretrained`` picks the family from ``model_type``.

        ``template`` (explicit) wins over the sidecar's; ``preferred_template`` (a benchmark's native
        template) is used when neither is set and the family takes benchmark templates.
        """
        path = Path(path)
        if not (path / "config.json").is_file():
            raise UserError(f"backbone {str(path)!r}: no config.json there (expected a save_pretrained folder)")
        if cls is Backbone:
            cls = family_class(path)  # LLaVA, InstructBLIP or Qwen2-VL, from config.json's model_type
        sidecar = json.loads((path / SIDECAR).read_text()) if (path / SIDECAR).is_file() else {}
        model, processor = cls.load_parts(path, dtype)
        attention = sidecar.get("attn_implementation")  # how the harness runs that checkpoint fastest
        if attention:
            model.set_attn_implementation(attention)
        clip = clip_tokenizer = None
        clip_dir = clip_path or (str(path / sidecar["clip"]) if "clip" in sidecar else None)
        if clip_dir:
            clip, clip_tokenizer = load_clip(clip_dir, dtype)
            if attention:
                clip.set_attn_implementation(attention)
        model.requires_grad_(False)
        name = template or sidecar.get("template") or cls.pick_template(preferred_template)
        return cls(model, processor, get_template(name), clip=clip, clip_tokenizer=clip_tokenizer, source=str(path))

    @classmethod
    def load_parts(cls, path: Path, dtype: torch.dtype) -> tuple[nn.Module, Any]:
        """The family's model and processor from a ``save_pretrained`` folder."""
        from transformers import AutoProcessor, LlavaForConditionalGeneration

        return LlavaForConditionalGeneration.from_pretrained(path, dtype=dtype, use_safetensors=True), AutoProcessor.from_pretrained(path)

    @classmethod
    def pick_template(cls, preferred: str | None) -> str:
        return preferred if (preferred and cls.takes_benchmark_template) else cls.default_template

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

    @property
    def lm_head(self) -> nn.Module:
        return self.model.lm_head

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

    def project(self, features: torch.Tensor, **projector_inputs: Any) -> torch.Tensor:
        """Visual tokens [B, N, D] from ``vision_features``; ``projector_inputs`` are family extras from the
        batch (InstructBLIP's ``qformer_input_ids``); the LLaVA projector ignores them."""
        return self.projector(features)

    def visual_tokens(self, batch: dict[str, Any]) -> torch.Tensor:
        """Projected visual tokens [B, N, D] of a collated batch (the family-correct path)."""
        return self.project(self.vision_features(batch["pixel_values"]), **self.projector_inputs(batch))

    def projector_inputs(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Batch entries besides the vision features that the projector reads (LLaVA: none)."""
        return {}

    def position_ids(self, batch: dict[str, Any]) -> torch.Tensor | None:
        """Family position ids for the batch's own sequence; None: positions from the attention mask."""
        return None

    def embed(self, input_ids: torch.Tensor, visual_tokens: torch.Tensor) -> torch.Tensor:
        """Token embeddings with the image-token positions replaced by ``visual_tokens`` [B, N, D].

        Row b's visual tokens fill row b's image positions; a row without image tokens (a text-only
        record: the collator gave it a blank image) drops its visual tokens, as the native pipelines do.
        """
        embeds = self.input_embeddings()(input_ids)
        is_image = input_ids == self.image_token_id
        per_row = is_image.sum(dim=1)
        used = per_row > 0
        if visual_tokens.shape[0] != input_ids.shape[0] or bool((per_row[used] != visual_tokens.shape[1]).any()):
            raise ValueError(f"image tokens per row {per_row.tolist()} do not match the visual tokens "
                             f"{tuple(visual_tokens.shape[:2])}")
        image_mask = is_image.unsqueeze(-1).expand_as(embeds)
        return embeds.masked_scatter(image_mask, visual_tokens[used].to(embeds.dtype))

    def _positions(self, attention_mask: torch.Tensor, position_ids: torch.Tensor | None) -> torch.Tensor:
        return position_ids if position_ids is not None else (attention_mask.cumsum(-1) - 1).clamp(min=0)

    def lm_hidden(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor,
                  position_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Last hidden states [B, L, D] of the language model on embeddings (positions from the mask unless given)."""
        return self.language_model(inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                                   position_ids=self._positions(attention_mask, position_ids)).last_hidden_state

    def lm_forward(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor,
                   position_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Logits [B, L, V] of the language model on embeddings (positions from the mask unless given)."""
        return self.lm_head(self.lm_hidden(inputs_embeds, attention_mask, position_ids))

    def lm_loss(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor,
                position_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Mean next-token cross-entropy over positions whose label is not -100.

        The head runs only on the positions that predict a label: instruction-tuning batches label the
        answer alone (a few tokens of ~80), and the vocabulary projection and its log-softmax over every
        position were a tenth of a CPU training step on the built-in default. Same loss as the full
        logits (cross-entropy ignores the other positions).
        """
        hidden = self.lm_hidden(inputs_embeds, attention_mask, position_ids)[:, :-1]
        targets = labels[:, 1:]
        keep = targets != -100
        logits = self.lm_head(hidden[keep])
        return nn.functional.cross_entropy(logits.float(), targets[keep])

    def _generator(self) -> nn.Module:
        """The module whose ``generate`` decodes from embeddings."""
        return self.model

    @torch.no_grad()
    def generate(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor, max_new_tokens: int,
                 position_ids: torch.Tensor | None = None) -> list[str]:
        """Greedy decoding from embeddings; returns the stripped decoded answers."""
        out = self._generator().generate(
            inputs_embeds=inputs_embeds, attention_mask=attention_mask,
            position_ids=self._positions(attention_mask, position_ids),
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
    clip = CLIPModel.from_pretrained(clip_dir, dtype=dtype, use_safetensors=True)
    clip.requires_grad_(False).eval()
    return clip, AutoTokenizer.from_pretrained(clip_dir)
