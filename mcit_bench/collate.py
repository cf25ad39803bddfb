"""Batching: records -> tensors through the backbone's own HF processor.

Sequences are LEFT-padded in training and in generation alike, so the same code inserts soft prompts
and the same position ids are used in both (positions come from the attention mask).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

IGNORE_INDEX = -100


class Collator:
    """Turns canonical records into a model batch.

    With ``train=True`` the target plus EOS is appended and ``labels`` mask everything else with -100.
    Extra keys carried through: ``uids``, ``instructions`` (raw instruction text, for text towers),
    ``task_ids`` (if the records carry ``task_id``).
    """

    def __init__(self, processor: Any, template: Any, train: bool, image_token: str = "<image>") -> None:
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.template = template
        self.train = train
        self.image_token = image_token

    def __call__(self, records: Sequence[dict[str, Any]]) -> dict[str, Any]:
        texts = [self.template.prompt(r["prompt"], self.image_token) for r in records]
        images = [r["image"].convert("RGB") for r in records]
        encoded = self.processor(images=images, text=texts, return_tensors=None)
        sequences, label_seqs = [], []
        for ids, record in zip(encoded["input_ids"], records):
            ids = list(ids)
            labels = [IGNORE_INDEX] * len(ids)
            if self.train:
                answer = self.tokenizer(" " + record["target"], add_special_tokens=False)["input_ids"]
                answer = answer + [self.tokenizer.eos_token_id]
                ids, labels = ids + answer, labels + answer
            sequences.append(ids)
            label_seqs.append(labels)
        batch = left_pad(sequences, label_seqs, self.tokenizer.pad_token_id)
        batch["pixel_values"] = torch.from_numpy(np.stack(encoded["pixel_values"]))
        if not self.train:
            del batch["labels"]
        batch["uids"] = [r.get("uid", "") for r in records]
        batch["instructions"] = [r["prompt"] for r in records]
        if "task_id" in records[0]:
            batch["task_ids"] = torch.tensor([r["task_id"] for r in records])
        return batch


def left_pad(sequences: list[list[int]], label_seqs: list[list[int]], pad_id: int) -> dict[str, torch.Tensor]:
    width = max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    labels = torch.full((len(sequences), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, (ids, labs) in enumerate(zip(sequences, label_seqs)):
        input_ids[row, width - len(ids):] = torch.tensor(ids)
        labels[row, width - len(labs):] = torch.tensor(labs)
        mask[row, width - len(ids):] = 1
    return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}


def insert_after_bos(
    embeds: torch.Tensor,
    mask: torch.Tensor,
    labels: torch.Tensor | None,
    prompts: torch.Tensor,
    offset: int = 1,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Insert per-sample soft prompts ``prompts`` [B, L, D] after the first ``offset`` real tokens.

    ``offset=1`` puts them right after BOS (ModalPrompt); ``offset=0`` prepends them (L2P-style
    prefix). Works on left-padded batches: each row's real tokens start at its own position.
    The new positions get attention 1 and label -100.
    """
    batch, length, _ = embeds.shape
    n_prompt = prompts.shape[1]
    start = (mask == 0).sum(dim=1) + offset  # index in each row where the prompt begins
    new_len = length + n_prompt
    positions = torch.arange(new_len, device=embeds.device).unsqueeze(0).expand(batch, -1)
    is_prompt = (positions >= start[:, None]) & (positions < start[:, None] + n_prompt)
    # Source index into the old sequence for non-prompt positions.
    src = torch.where(positions >= start[:, None] + n_prompt, positions - n_prompt, positions).clamp(max=length - 1)
    gathered = torch.gather(embeds, 1, src.unsqueeze(-1).expand(-1, -1, embeds.shape[-1]))
    prompt_idx = (positions - start[:, None]).clamp(0, n_prompt - 1)
    prompt_part = torch.gather(prompts.to(embeds.dtype), 1, prompt_idx.unsqueeze(-1).expand(-1, -1, embeds.shape[-1]))
    new_embeds = torch.where(is_prompt.unsqueeze(-1), prompt_part, gathered)
    new_mask = torch.where(is_prompt, torch.ones_like(src), torch.gather(mask, 1, src))
    new_labels = None
    if labels is not None:
        new_labels = torch.where(is_prompt, torch.full_like(src, IGNORE_INDEX), torch.gather(labels, 1, src))
    return new_embeds, new_mask, new_labels
