"""Qwen2-VL family adapter (``model_type: qwen2_vl``, e.g. Qwen/Qwen2-VL-7B-Instruct).

Qwen2-VL sees each image at its own resolution: the image processor cuts it into 14 px patches
(2 frames deep), the vision tower reads the patch grid (t, h, w), and the merger joins 2x2 patches
into one LLM token, so the number of ``<|image_pad|>`` tokens depends on the image.

* Processor: ``Qwen2VLLiteProcessor`` = the PIL image processor (``Qwen2VLImageProcessorPil``, no
  torchvision needed) + the tokenizer; it repeats ``<|image_pad|>`` grid.prod() // merge^2 times per image.
* ``pixel_values`` in a batch are SELF-DESCRIBING so that ``vision_features(pixel_values)`` needs nothing
  else: [B, 1 + Pmax, D] where row 0 of each image is a header holding its (t, h, w) grid in base-16
  digits (exact in bf16) and rows 1..P its flattened patches (zero padding after). The batch also
  carries ``image_grid_thw`` [B, 3] and ``mm_token_type_ids`` (1 at image tokens), as the HF model expects.
* ``vision_features``: the vision tower's patch features before the merger [B, Pmax, embed_dim];
  ``project``/``projector``: the merger (2x2 patches -> one token); ``embed`` puts each row's first n
  visual tokens at its n image tokens.
* Positions: ``position_ids(batch)`` gives Qwen2-VL's M-RoPE ids [3, B, L] (image tokens on their 2D
  grid); the default Strategy passes them to ``lm_loss``/``generate``. A strategy that builds its own
  sequence (soft prompts) and passes none gets 1D positions from the mask in training and generation
  alike (consistent, but not M-RoPE for the image tokens).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from .llava import Backbone

IMAGE_PAD = "<|image_pad|>"
_DIGITS = 3  # base-16 digits per grid number in the header: up to 4095 patches per side


def pack_pixels(patches: list[torch.Tensor], grids: list[torch.Tensor]) -> torch.Tensor:
    """[B, 1 + Pmax, D]: per image a header row (grid t, h, w in base-16 digits) then its patches."""
    width = patches[0].shape[-1]
    longest = max(p.shape[0] for p in patches)
    out = torch.zeros((len(patches), 1 + longest, width), dtype=torch.float32)
    for row, (p, grid) in enumerate(zip(patches, grids)):
        digits = [(int(v) // 16 ** k) % 16 for v in grid.tolist() for k in range(_DIGITS)]
        out[row, 0, :len(digits)] = torch.tensor(digits, dtype=torch.float32)
        out[row, 1:1 + p.shape[0]] = p
    return out


def unpack_grids(pixel_values: torch.Tensor) -> torch.Tensor:
    """The [B, 3] (t, h, w) grids written by ``pack_pixels``."""
    digits = pixel_values[:, 0, :3 * _DIGITS].float().round().long().view(-1, 3, _DIGITS)
    scale = torch.tensor([16 ** k for k in range(_DIGITS)], device=digits.device)
    return (digits * scale).sum(-1)


class Qwen2VLLiteProcessor:
    """Qwen2-VL processor without torchvision: image processor + tokenizer, image tokens expanded by grid."""

    def __init__(self, image_processor: Any, tokenizer: Any, image_token: str = IMAGE_PAD) -> None:
        self.image_processor = image_processor
        self.tokenizer = tokenizer
        self.image_token = image_token
        self.image_token_id = tokenizer.convert_tokens_to_ids(image_token)
        self.merge = int(getattr(image_processor, "merge_size", 2))

    @classmethod
    def from_pretrained(cls, path: str | Path) -> "Qwen2VLLiteProcessor":
        from transformers import AutoTokenizer, Qwen2VLImageProcessorPil

        return cls(Qwen2VLImageProcessorPil.from_pretrained(path), AutoTokenizer.from_pretrained(path))

    def save_pretrained(self, path: str | Path) -> None:
        self.image_processor.save_pretrained(path)
        self.tokenizer.save_pretrained(path)

    def __call__(self, images: list[Any], text: list[str], return_tensors: Any = None) -> dict[str, Any]:
        out = self.image_processor(images=images, return_tensors="pt")
        grids = out["image_grid_thw"]
        sizes = (grids.prod(-1)).tolist()
        patches = list(torch.split(out["pixel_values"], sizes))
        expanded = []
        for t, grid in zip(text, grids):
            if t.count(self.image_token) != 1:
                raise ValueError(f"expected one {self.image_token} per text, found {t.count(self.image_token)}")
            expanded.append(t.replace(self.image_token, self.image_token * (int(grid.prod()) // self.merge ** 2)))
        enc = self.tokenizer(expanded)
        # one self-describing pixel entry per image (see the module docstring)
        pixels = [pack_pixels([p], [g])[0, :1 + p.shape[0]] for p, g in zip(patches, grids)]
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "pixel_values": pixels}

    def collate_pixels(self, pixels: list[torch.Tensor]) -> torch.Tensor:
        longest = max(p.shape[0] for p in pixels)
        out = torch.zeros((len(pixels), longest, pixels[0].shape[-1]), dtype=torch.float32)
        for row, p in enumerate(pixels):
            out[row, :p.shape[0]] = p
        return out

    def finish_batch(self, batch: dict[str, Any]) -> None:
        batch["image_grid_thw"] = unpack_grids(batch["pixel_values"])
        batch["mm_token_type_ids"] = (batch["input_ids"] == self.image_token_id).long()


class Qwen2VLBackbone(Backbone):
    family = "qwen2_vl"
    default_template = "qwen2_vl"
    takes_benchmark_template = False  # UCIT/CoIN's vicuna_v1 is LLaVA's format, not Qwen's chat format

    @classmethod
    def load_parts(cls, path: Path, dtype: torch.dtype) -> tuple[nn.Module, Any]:
        from transformers import Qwen2VLForConditionalGeneration

        return Qwen2VLForConditionalGeneration.from_pretrained(path, dtype=dtype, use_safetensors=True), \
            Qwen2VLLiteProcessor.from_pretrained(path)

    @property
    def vision_hidden_size(self) -> int:
        return self.model.config.vision_config.embed_dim

    @property
    def projector(self) -> nn.Module:
        return self.model.model.visual.merger

    @property
    def _merge(self) -> int:
        return int(self.model.config.vision_config.spatial_merge_size)

    def vision_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Patch features before the merger [B, Pmax, embed_dim] (zero rows after each image's patches)."""
        grids = unpack_grids(pixel_values)
        sizes = grids.prod(-1).tolist()
        flat = torch.cat([pixel_values[row, 1:1 + n] for row, n in enumerate(sizes)])
        visual = self.model.model.visual
        with torch.no_grad():
            hidden = visual(flat.to(visual.dtype), grid_thw=grids).last_hidden_state
        out = hidden.new_zeros((len(sizes), max(sizes), hidden.shape[-1]))
        for row, part in enumerate(torch.split(hidden, sizes)):
            out[row, :part.shape[0]] = part
        return out

    def project(self, features: torch.Tensor, **_: Any) -> torch.Tensor:
        """Merger on each image's patches (groups of merge^2 rows) -> [B, Pmax / merge^2, D]."""
        batch, patches, width = features.shape
        merged = self.projector(features.reshape(batch * patches, width))
        return merged.view(batch, patches // self._merge ** 2, -1)

    def embed(self, input_ids: torch.Tensor, visual_tokens: torch.Tensor) -> torch.Tensor:
        embeds = self.input_embeddings()(input_ids)
        is_image = input_ids == self.image_token_id
        counts = is_image.sum(dim=1).tolist()
        if max(counts) > visual_tokens.shape[1]:
            raise ValueError(f"image tokens per row {counts} exceed the {visual_tokens.shape[1]} visual tokens")
        parts = [visual_tokens[row, :n] for row, n in enumerate(counts) if n]
        if not parts:
            return embeds
        mask = is_image.unsqueeze(-1).expand_as(embeds)
        return embeds.masked_scatter(mask, torch.cat(parts).to(embeds.dtype))

    def position_ids(self, batch: dict[str, Any]) -> torch.Tensor | None:
        """M-RoPE position ids [3, B, L] of the batch's own sequence (HF's ``get_rope_index``)."""
        input_ids, mask = batch["input_ids"], batch["attention_mask"]
        types = (input_ids == self.image_token_id).long()
        with_image = types.sum(dim=1) > 0
        if not bool(with_image.any()):
            return None
        grids = batch["image_grid_thw"][with_image.to(batch["image_grid_thw"].device)]
        positions, _ = self.model.model.get_rope_index(input_ids, mm_token_type_ids=types, image_grid_thw=grids,
                                                       attention_mask=mask)
        return positions

    def _positions(self, attention_mask: torch.Tensor, position_ids: torch.Tensor | None) -> torch.Tensor:
        if position_ids is not None:
            return position_ids
        flat = (attention_mask.cumsum(-1) - 1).clamp(min=0)
        return flat.unsqueeze(0).expand(3, -1, -1)  # text-style positions in all three M-RoPE sections
