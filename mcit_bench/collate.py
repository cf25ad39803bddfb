"""Batching: records -> tensors through the backbone's own HF processor.

Sequences are LEFT-padded in training and in generation alike, so the same code inserts soft prompts
and the same position ids are used in both (positions come from the attention mask).

Families: the processor does the family-specific work (LLaVA expands ``<image>``; InstructBLIP prepends
its query tokens; Qwen2-VL's ``Qwen2VLLiteProcessor`` expands ``<|image_pad|>`` by the image grid).
Optional processor hooks: ``collate_pixels(list) -> Tensor`` (pixel rows of different shapes) and
``finish_batch(batch)`` (extra keys, e.g. Qwen2-VL's ``image_grid_thw`` and ``mm_token_type_ids``).
A processor with a ``qformer_tokenizer`` (InstructBLIP) also gets ``qformer_input_ids`` and
``qformer_attention_mask`` for the instruction-aware Q-Former.

Records without an image (``image`` None, e.g. text-only ScienceQA questions) get a text-only prompt,
as in the native pipelines, and a blank image in ``pixel_values`` so rows stay aligned; the backbone's
``embed`` drops the visual tokens of rows that have no image tokens.

Training targets: the answer's tokens are those of ``tokenize(prompt + answer_prefix + target)`` beyond
``tokenize(prompt)`` (the whole conversation tokenized at once, as LLaVA's preprocessing does), then EOS.
A multi-turn record (``turns``: the exchanges after the first) continues the sequence, as LLaVA does, with
each later exchange's ``template.turn(prompt)`` (masked: context) and its answer + EOS (labelled): every
answer is trained, each one seeing the conversation before it.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

IGNORE_INDEX = -100
BLANK_SIZE = 64  # side of the blank image given to text-only rows (the processor resizes it anyway)


class Collator:
    """Turns canonical records into a model batch.

    With ``train=True`` the target plus EOS (then any later exchanges) is appended and ``labels`` mask
    everything but the answers and their EOS with -100.
    Extra keys carried through: ``uids``, ``instructions`` (raw instruction text, for text towers),
    ``task_ids`` (if the records carry ``task_id``).
    """

    def __init__(self, processor: Any, template: Any, train: bool, image_token: str = "<image>",
                 cache_mb: float = 0) -> None:
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.template = template
        self.train = train
        self.image_token = image_token
        # Per-record encodings (token ids, pixels, answer ids) by uid, up to ``cache_mb`` MiB: a task is
        # seen for several epochs and image processing + tokenization were a quarter of a training step
        # on the built-in default. Records are immutable, so a hit equals a fresh encoding.
        self.cache_bytes = int(cache_mb * 2**20)
        self._cache: dict[tuple, tuple] = {}
        self._cached_bytes = 0

    def __call__(self, records: Sequence[dict[str, Any]]) -> dict[str, Any]:
        keys = [self._key(r) for r in records]
        entries = [self._cache.get(k) if k else None for k in keys]
        missing = [i for i, e in enumerate(entries) if e is None]
        if missing:
            for i, entry in zip(missing, self._encode_records([records[i] for i in missing])):
                entries[i] = entry
                self._remember(keys[i], entry)
        texts = [e[0] for e in entries]
        pixels = [e[2] for e in entries]
        sequences, label_seqs = [], []
        for _, ids, _, tail in entries:
            labels = [IGNORE_INDEX] * len(ids)
            if tail is not None:
                ids, labels = ids + tail[0], labels + tail[1]
            sequences.append(ids)
            label_seqs.append(labels)
        batch = left_pad(sequences, label_seqs, self.tokenizer.pad_token_id)
        collate_pixels = getattr(self.processor, "collate_pixels", None)
        batch["pixel_values"] = collate_pixels(pixels) if collate_pixels else \
            torch.from_numpy(np.stack([np.asarray(p) for p in pixels]))
        if not self.train:
            del batch["labels"]
        qformer_tokenizer = getattr(self.processor, "qformer_tokenizer", None)
        if qformer_tokenizer is not None:
            q = qformer_tokenizer(texts, padding=True, return_tensors="pt")
            batch["qformer_input_ids"], batch["qformer_attention_mask"] = q["input_ids"], q["attention_mask"]
        finish = getattr(self.processor, "finish_batch", None)
        if finish is not None:
            finish(batch)
        batch["uids"] = [r.get("uid", "") for r in records]
        batch["instructions"] = [r["prompt"] for r in records]
        if "task_id" in records[0]:
            batch["task_ids"] = torch.tensor([r["task_id"] for r in records])
        return batch

    def clear_cache(self) -> None:
        """Forget the cached encodings (the runner calls it per training stage: a finished task's
        records would only hold memory and the budget)."""
        self._cache.clear()
        self._cached_bytes = 0

    def _key(self, record: dict[str, Any]) -> tuple | None:
        uid = record.get("uid")
        if not (self.cache_bytes and uid):
            return None
        if not self.train:
            return (uid, record["prompt"], None)
        turns = tuple((t["prompt"], t["target"]) for t in record.get("turns") or ())
        return (uid, record["prompt"], record["target"], turns)

    def _remember(self, key: tuple | None, entry: tuple) -> None:
        size = getattr(entry[2], "nbytes", 0) + 8 * (len(entry[1]) + 2 * len(entry[3][0] if entry[3] else ()))
        if key and self._cached_bytes + size <= self.cache_bytes:
            self._cache[key] = entry
            self._cached_bytes += size

    def _encode_records(self, records: Sequence[dict[str, Any]]) -> list[tuple]:
        """(chat text, prompt token ids, pixels, tail) per record; tail (training only, else None): the
        (ids, labels) that follow the prompt: the answer + EOS, then any later exchanges."""
        images = [load_image(r.get("image")) for r in records]
        texts = [self.template.prompt(r["prompt"], self.image_token if im is not None else None)
                 for r, im in zip(records, images)]
        input_ids, pixels = self._encode(texts, images)
        tails: list[Any] = [None] * len(records)
        if self.train:
            for i, (record, answer) in enumerate(zip(records, self._answers(texts, [r["target"] for r in records]))):
                ids, labels = list(answer), list(answer)
                for turn in record.get("turns") or ():
                    context = self.template.turn(turn["prompt"])
                    context_ids = self.tokenizer(context, add_special_tokens=False)["input_ids"]
                    answer = self._answers([context], [turn["target"]], add_special_tokens=False)[0]
                    ids += list(context_ids) + answer
                    labels += [IGNORE_INDEX] * len(context_ids) + answer
                tails[i] = (ids, labels)
        return list(zip(texts, input_ids, pixels, tails))

    def _encode(self, texts: list[str], images: list[Any]) -> tuple[list[list[int]], list[Any]]:
        """Token ids (image tokens expanded) and one pixel entry per row; text-only rows get a blank image."""
        rows = [i for i, im in enumerate(images) if im is not None]
        blanks = [i for i, im in enumerate(images) if im is None]
        ids: list[list[int]] = [[] for _ in texts]
        pixels: list[Any] = [None] * len(texts)
        if rows:
            enc = self.processor(images=[images[i] for i in rows], text=[texts[i] for i in rows], return_tensors=None)
            for k, i in enumerate(rows):
                ids[i], pixels[i] = list(enc["input_ids"][k]), enc["pixel_values"][k]
        if blanks:
            from PIL import Image

            blank = Image.new("RGB", (BLANK_SIZE, BLANK_SIZE))
            enc = self.processor(images=[blank] * len(blanks), text=[self.image_token] * len(blanks), return_tensors=None)
            text_ids = self.tokenizer([texts[i] for i in blanks])["input_ids"]
            for k, i in enumerate(blanks):
                ids[i], pixels[i] = list(text_ids[k]), enc["pixel_values"][k]
        return ids, pixels

    def _answers(self, prompts: list[str], targets: list[str], add_special_tokens: bool = True) -> list[list[int]]:
        """Answer tokens + EOS per row, as the tail of the whole conversation's tokenization."""
        prefix = self.template.answer_prefix
        full = self.tokenizer([p + prefix + t for p, t in zip(prompts, targets)],
                              add_special_tokens=add_special_tokens)["input_ids"]
        head = self.tokenizer(prompts, add_special_tokens=add_special_tokens)["input_ids"]
        out = []
        for f, h, target in zip(full, head, targets):
            f, h = list(f), list(h)
            if f[:len(h)] == h:
                answer = f[len(h):]
            else:  # the tokenizer merged across the boundary: tokenize the answer on its own
                answer = self.tokenizer(prefix + target, add_special_tokens=False)["input_ids"]
            out.append(list(answer) + [self.tokenizer.eos_token_id])
        return out


def load_image(value: Any) -> Any:
    """An RGB PIL image from a record's ``image``: a PIL image, or the ``{"bytes", "path"}`` dict of a
    ``datasets.Image(decode=False)`` column (decoded here, only when the encoding is not cached)."""
    if value is None:
        return None
    if isinstance(value, dict):
        import io

        from PIL import Image

        value = Image.open(io.BytesIO(value["bytes"])) if value.get("bytes") else Image.open(value["path"])
    return value.convert("RGB")


def left_pad(sequences: list[list[int]], label_seqs: list[list[int]], pad_id: int) -> dict[str, torch.Tensor]:
    # Filled in numpy, converted once: a torch.tensor per row cost 1.5 ms of a 2.5 ms cached collation.
    width = max(len(s) for s in sequences)
    input_ids = np.full((len(sequences), width), pad_id, dtype=np.int64)
    labels = np.full((len(sequences), width), IGNORE_INDEX, dtype=np.int64)
    mask = np.zeros((len(sequences), width), dtype=np.int64)
    for row, (ids, labs) in enumerate(zip(sequences, label_seqs)):
        input_ids[row, width - len(ids):] = ids
        labels[row, width - len(labs):] = labs
        mask[row, width - len(ids):] = 1
    return {"input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(mask),
            "labels": torch.from_numpy(labels)}


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


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """The collated batch with its tensors on ``device`` (texts and lists left as they are)."""
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
