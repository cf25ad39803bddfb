"""InstructBLIP family adapter (``model_type: instructblip``, e.g. Salesforce/instructblip-vicuna-7b).

Mapping onto the ``Backbone`` API:

* ``vision_features``: the frozen ViT's last hidden state [B, N, Dv] (InstructBLIP reads the last layer);
* ``project(features, qformer_input_ids=..., qformer_attention_mask=...)``: the instruction-aware Q-Former
  (learned query tokens cross-attending to the features, the instruction read alongside) followed by
  ``language_projection`` -> [B, num_query_tokens, D]. Without ``qformer_input_ids`` the Q-Former runs on
  the queries alone (BLIP-2 style) and a warning says so: ``visual_tokens(batch)`` passes them;
* ``projector``: a view over what InstructBLIP instruction-tunes (query tokens, Q-Former, projection);
* ``language_model`` / ``lm_head``: the decoder body and head of the causal LM (Vicuna/LLaMA);
* the processor prepends ``num_query_tokens`` image tokens BEFORE BOS (native layout), so a strategy
  inserting prompts "after BOS" must skip them (``insert_after_bos(..., offset=num_query_tokens + 1)``).

Encoder-decoder InstructBLIP checkpoints (Flan-T5) are not supported (a UserError says so): the harness
decodes from embeddings with a causal LM.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .llava import Backbone
from ..errors import UserError


class _ProjectorView(nn.Module):
    """What InstructBLIP tunes between the ViT and the LM, as one module (not registered on the backbone,
    so the model's own parameter names stay the only ones in state dicts)."""

    def __init__(self, model: nn.Module, project: Any) -> None:
        super().__init__()
        self.parts = nn.ModuleList([model.qformer, model.language_projection])
        self.queries = nn.ParameterList([model.query_tokens])
        self._project = project

    def forward(self, features: torch.Tensor, **projector_inputs: Any) -> torch.Tensor:
        return self._project(features, **projector_inputs)


class InstructBlipBackbone(Backbone):
    family = "instructblip"
    default_template = "instructblip"
    takes_benchmark_template = False  # UCIT/CoIN's vicuna_v1 is LLaVA's conversation format
    _warned_no_instruction = False

    @classmethod
    def load_parts(cls, path: Path, dtype: torch.dtype) -> tuple[nn.Module, Any]:
        from transformers import AutoProcessor, InstructBlipForConditionalGeneration

        model = InstructBlipForConditionalGeneration.from_pretrained(path, dtype=dtype, use_safetensors=True)
        if not model.config.use_decoder_only_language_model:
            raise UserError(f"backbone {str(path)!r}: InstructBLIP with an encoder-decoder LM "
                            f"({model.config.text_config.model_type}) is not supported; use a Vicuna/LLaMA one")
        return model, AutoProcessor.from_pretrained(path)

    # ------------------------------------------------------------------ sizes and pieces
    @property
    def language_model(self) -> nn.Module:
        return self.model.language_model.model

    @property
    def lm_head(self) -> nn.Module:
        return self.model.language_model.lm_head

    @property
    def projector(self) -> nn.Module:
        return _ProjectorView(self.model, self.project)

    @property
    def num_query_tokens(self) -> int:
        return int(self.model.config.num_query_tokens)

    def _generator(self) -> nn.Module:
        return self.model.language_model

    # ------------------------------------------------------------------ vision path
    def vision_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.model.vision_model(pixel_values=pixel_values.to(self.dtype)).last_hidden_state

    def projector_inputs(self, batch: dict[str, Any]) -> dict[str, Any]:
        return {"qformer_input_ids": batch.get("qformer_input_ids"),
                "qformer_attention_mask": batch.get("qformer_attention_mask")}

    def project(self, features: torch.Tensor, qformer_input_ids: torch.Tensor | None = None,
                qformer_attention_mask: torch.Tensor | None = None, **_: Any) -> torch.Tensor:
        model = self.model
        batch = features.shape[0]
        queries = model.query_tokens.expand(batch, -1, -1)
        query_mask = torch.ones(queries.shape[:2], dtype=torch.long, device=features.device)
        if qformer_input_ids is None:
            if not InstructBlipBackbone._warned_no_instruction:
                warnings.warn("InstructBLIP Q-Former run without the instruction (pass qformer_input_ids, "
                              "or call backbone.visual_tokens(batch))", stacklevel=2)
                InstructBlipBackbone._warned_no_instruction = True
            # The Q-Former embeddings need some input ids: an empty instruction is the queries alone.
            qformer_input_ids = torch.zeros((batch, 0), dtype=torch.long, device=features.device)
            qformer_attention_mask = torch.zeros((batch, 0), dtype=torch.long, device=features.device)
        if qformer_attention_mask is None:
            qformer_attention_mask = torch.ones_like(qformer_input_ids)
        out = model.qformer(
            input_ids=qformer_input_ids, attention_mask=torch.cat([query_mask, qformer_attention_mask], dim=1),
            query_embeds=queries, encoder_hidden_states=features,
            encoder_attention_mask=torch.ones(features.shape[:2], dtype=torch.long, device=features.device),
            return_dict=True,
        )
        return model.language_projection(out.last_hidden_state[:, : queries.shape[1], :])
