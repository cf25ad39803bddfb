"""LoRA on the language model of a LLaVA-family backbone, through peft.

The target regex is anchored on ``language_model``: a bare ``q_proj`` would also hit the CLIP tower.
"""
from __future__ import annotations

from torch import nn

DEFAULT_TARGETS = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"


def target_regex(targets: str) -> str:
    names = "|".join(t.strip() for t in targets.split(",") if t.strip())
    return rf".*language_model.*\.({names})"


def add_lora(model: nn.Module, r: int, alpha: float, dropout: float, targets: str = DEFAULT_TARGETS,
             adapter_name: str = "default") -> list[str]:
    """Inject a LoRA adapter in place (no wrapper object); returns the adapted module names."""
    from peft import LoraConfig, inject_adapter_in_model

    config = LoraConfig(r=int(r), lora_alpha=float(alpha), lora_dropout=float(dropout),
                        target_modules=target_regex(targets), bias="none")
    inject_adapter_in_model(config, model, adapter_name=adapter_name)
    return [name for name, module in model.named_modules() if hasattr(module, "lora_A") and
            adapter_name in getattr(module, "lora_A", {})]

