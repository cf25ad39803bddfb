"""fwd-prompt: prompt tuning with positive forward transfer (Zheng et al. 2024, arXiv 2401.09181).

Everything in the backbone stays frozen; only a multimodal prompt pool (M prompts of n_p tokens in
the LLM embedding space, each with a key) learns. Per sample, a query from frozen image AND
instruction-text features selects the top-N prompts by cosine to their keys; the selected prompts
are inserted at the front of the LLM input embeddings. Loss = LM loss + key_loss_weight * sum over
the selected prompts of (1 - cos(query, key)). Selection is task-agnostic at inference.

Gradient projection (GPM, Saha et al. 2021) on the prompt gradients, every step, between backward and
the optimiser step:

* ``U_pre``: core space of the LLM input embeddings (text token embeddings + projected visual tokens)
  of the backbone's pre-training data, computed once before the first task (threshold
  ``threshold_pre``);
* ``U``: memory of the tasks' core spaces, extended after each task by the GPM rule (threshold
  ``threshold``);
* residual step ``g_res = g - g U U^T`` (stay out of old tasks' core spaces), then the forward step
  ``g_fwd = g_res U_pre U_pre^T`` (``forward_mode=project``, reuse the pre-trained space) or
  ``g_res + beta g_res U_pre U_pre^T`` (``forward_mode=additive``). Keys are not projected.

RECONSTRUCTED (the paper publishes no code and its hyper-parameters were not accessible); each of
these is a named hyper-parameter below:

* pool size, prompt length, top-N, key-loss weight, learning rate (``pool_size``, ``prompt_length``,
  ``top_n``, ``key_loss_weight``, ``lr``): L2P-style values, not the paper's. ``pool_size=20`` (the top of
  the spec's 10..20) holds ``top_n`` entries for each of six tasks, so with ``diversify_selection`` every
  task of a UCIT-length order trains entries of its own;
* query = concatenation of the L2-normalised mean-pooled frozen vision features and the L2-normalised
  instruction-text features (``query_image``: vision | clip | none; ``query_text``: llm = mean-pooled
  frozen LLM token embeddings of the instruction, clip = CLIP text tower, none);
* ``diversify_selection=true`` (default): while training task t > 1 the selection ranks pool entries by
  a frequency-penalised distance in the spirit of L2P (``select_diversified``): entries the earlier tasks trained rank
  last, so each task trains entries of its own while the pool has unused ones; inference selects by
  cosine alone. Without it (``false``) every task trained the same ``top_n`` entries on the built-in
  default (pool collapse) and their norms grew with every task (0.25 -> 19 over six tasks), which left the
  later tasks far below the method's single-task ceiling (docs/methods.md);
* selected prompts are concatenated in pool-index order and inserted after BOS (``insert_offset``
  1, like L2P's prompts after CLS; 0 puts them before BOS); prompts start as copies of random
  vocabulary embeddings (``prompt_init``: vocab | normal), keys uniform in [-1, 1];
* the embedding sample behind each subspace (``subspace_samples``, ``pretrain_samples``, all
  non-padding positions of the training-format sequence) and the pre-training data
  (``pretrain_data``: auto | benchmark | first_task | path to a JSONL of {image, prompt, target});
* ``compose=sequential`` (default): the spec's literal formulas, g_fwd = g_res U_pre U_pre^T, the
  update confined to span(U_pre); it can re-enter span(U) where the spaces are not nested.
  ``compose=exact`` composes the two projections exactly (update in span(U_pre) ∩ span(U)^⊥); on the
  built-in default that space is empty from the third task on for every choice of rows and threshold
  tried (docs/records/r5/ablations/fwd_prompt_free_space.md): the prompts would be frozen, so it is a variant;
* ``memory_space``: ``full`` (default, the spec) applies the GPM rule to X_t as it is;
  ``outside_pretrained`` counts span(U_pre) as already covered, so U holds only task-specific
  directions orthogonal to U_pre (then the exact and the sequential composition coincide);
* ``project_update=true`` (default): with AdamW the update is not the projected gradient (per-
  coordinate scaling leaves the subspace), so after each optimiser step the prompt UPDATE is
  projected onto the same subspace: the update then obeys the guarantee GPM gets from plain SGD.
* ``project_first_task=false`` (default, the paper: "When adapting to task 1, we train the prompt pool
  without gradient projection"): the first task of the order trains unprojected; ``true`` projects it
  onto U_pre as well (the behaviour of earlier versions of this port).
* ``subspace_rows``: which rows of the input-embedding matrix enter every SVD (U_pre and each task's
  core space). ``text`` (default): the text positions only (BOS, template, instruction, answer), the
  space the prompts live in: they start as vocabulary rows and are inserted among text tokens.
  ``all``: every non-padding position; on an MLLM the projected visual tokens then carry most of the
  energy (measured on the built-in backbone: ~96% at 46x the squared norm of a text token) and U_pre
  becomes the visual-token space, which leaves the prompts almost no room (see docs/methods.md).
  ``normalized``: every position scaled to unit norm (each token counts once, whatever its norm).

Room to learn: ``free_dims`` is the dimension of the subspace the prompt updates are confined to;
``effective_dims`` is the squared Frobenius norm of the gradient map (equal to its rank when the map is
an orthogonal projector, as with ``compose=exact``; smaller with ``compose=sequential``, where the
residual step first removes the old tasks' directions and only the remainder is projected onto U_pre:
measured on the built-in default, 44 free dimensions carried 16 effective ones before task 2 and 4 before
task 5). When either is smaller than a prompt's token count (``prompt_length``: a prompt can then not even
change its n_p token vectors independently; 0 = frozen), the method warns once on the console and records
every such task under ``free_space_warnings`` in summary.json; it never freezes silently.

Ablations: ``projection``: none | residual | residual+pretrained | random (control: projection onto a
random subspace of the same dimension as the default's free space, redrawn per task, seeded);
``forward_mode``: project | additive with ``beta``; ``threshold`` / ``threshold_pre`` (epsilon). ``analysis=true`` writes ``fwd_prompt_analysis.json`` (ranks of each task's input
embedding matrix, overlaps of the tasks' core spaces with each other and with U_pre) into the run
folder.
"""
from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import fwd_prompt_subspace as subspace
from mcit_bench.backbones.llava import SIDECAR
from mcit_bench.collate import insert_after_bos, to_device
from mcit_bench.errors import UserError
from mcit_bench.registry import register_method
from mcit_bench.strategy import ModelInputs, RunContext, Strategy

ANALYSIS_FILE = "fwd_prompt_analysis.json"
PROJECTIONS = ("none", "residual", "residual+pretrained", "random")
CHOICES: dict[str, tuple[str, ...]] = {
    "projection": PROJECTIONS,
    "forward_mode": ("project", "additive"),
    "compose": ("exact", "sequential"),
    "query_image": ("vision", "clip", "none"),
    "query_text": ("llm", "clip", "none"),
    "prompt_init": ("vocab", "normal"),
    "memory_space": ("full", "outside_pretrained"),
    "subspace_rows": ("text", "all", "normalized"),
}


def projection_maps(memory: torch.Tensor, pretrained: torch.Tensor, projection: str, forward_mode: str = "project",
                    beta: float = 1.0, compose: str = "exact") -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(gradient map, update projector), d x d float64 each, both applied on the right of row vectors;
    None = identity.

    The update projector is the orthogonal projector onto the subspace the gradient map lands in,
    so that projecting an SGD step again changes nothing while an AdamW step is confined to it.
    """
    dim = memory.shape[0]
    eye = torch.eye(dim, dtype=torch.float64, device=memory.device)
    residual = eye - subspace.projector(memory)
    if projection == "none":
        return None, None
    if projection == "random":
        raise ValueError("projection='random' draws its subspace per task: use random_projector")
    if projection == "residual":
        return residual, residual
    pre = subspace.projector(pretrained)
    if forward_mode == "project":
        if compose == "exact":
            free = subspace.projector(subspace.intersection_basis(pretrained, memory))
            return free, free
        return residual @ pre, pre
    if compose == "exact":
        return residual + beta * residual @ pre @ residual, residual
    return residual + beta * residual @ pre, None


def random_projector(dim: int, k: int, seed: int) -> torch.Tensor:
    """Orthogonal projector (d x d, float64) onto a random k-dimensional subspace (Haar, seeded): the
    control for "does WHICH subspace matter, or only how many dimensions it has"."""
    g = torch.Generator().manual_seed(seed)
    if k <= 0:
        return torch.zeros(dim, dim, dtype=torch.float64)
    basis = torch.linalg.qr(torch.randn(dim, k, generator=g, dtype=torch.float64)).Q
    return subspace.projector(basis)


def select_top(query: torch.Tensor, keys: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample indices [B, n] of the ``n`` keys most cosine-similar to the query (in pool-index
    order) and the full similarity matrix [B, M]."""
    sim = nn.functional.normalize(query, dim=-1) @ nn.functional.normalize(keys, dim=-1).T
    idx = sim.topk(n, dim=-1).indices.sort(dim=-1).values
    return idx, sim


def select_diversified(query: torch.Tensor, keys: torch.Tensor, n: int,
                       frequency: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Training-time selection with a prompt-frequency penalty in the spirit of L2P's "diversifying
    prompt-selection" (Wang et al. 2022): entry i is ranked by h_i * (2 - cos(q, k_i)), h = how often each
    entry was selected while training the earlier tasks, normalised to sum 1. Entries no earlier task used
    (h = 0) rank first, by cosine; used ones follow by frequency-weighted distance (the +1 keeps a used key
    that matches perfectly behind every unused one, which L2P's h_i * (1 - cos) does not). So a new task
    trains fresh prompts while the pool has some. Returns what ``select_top`` returns; the similarities are
    the plain cosines (the key loss pulls on them)."""
    sim = nn.functional.normalize(query, dim=-1) @ nn.functional.normalize(keys, dim=-1).T
    distance = 1.0 - sim.double()
    h = frequency.to(distance) / frequency.sum().clamp(min=1)
    score = h * (1.0 + distance) + 1e-9 * distance  # the small term orders the entries of equal frequency
    idx = score.topk(n, dim=-1, largest=False).indices.sort(dim=-1).values
    return idx, sim


def pool_use(train: dict[str, list[int]], inference: dict[str, list[int]], top_n: int) -> dict[str, Any]:
    """Which pool entries each task trained and which are selected at inference (pool collapse shows as
    every task training the same ``top_n`` entries). An entry counts as used by a task when it was picked
    for at least 5% of that task's selections (selections = samples x top_n). ``own_selection_pct``: per
    task, the share of its test samples' selections that picked entries its own training used (the
    method's task identification; entries shared by several tasks count as own for each)."""
    def used(counts: list[int]) -> list[int]:
        total = sum(counts)
        return [i for i, c in enumerate(counts) if total and c / total >= 0.05]

    trained = {task: used(c) for task, c in train.items()}
    distinct = sorted(set().union(*trained.values())) if trained else []
    own = {task: round(100.0 * sum(c[i] for i in trained[task]) / sum(c), 2)
           for task, c in inference.items() if task in trained and sum(c)}
    return {"trained": trained, "selected_at_inference": {task: used(c) for task, c in inference.items()},
            "own_selection_pct": own,
            "distinct_trained": len(distinct),
            "collapsed": len(trained) > 1 and len({tuple(v) for v in trained.values()}) == 1 and
            all(len(v) <= top_n for v in trained.values())}


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    from PIL import Image

    records = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}:{number}: not valid JSON ({exc.msg})") from exc
        for key in ("image", "prompt", "target"):
            if not isinstance(row.get(key), str):
                raise UserError(f"{path}:{number}: field {key!r} must be a string (image: a path relative to the file)")
        image_path = (path.parent / row["image"]).expanduser()
        if not image_path.is_file():
            raise UserError(f"{path}:{number}: field 'image': no file {str(image_path)!r}")
        records.append({"image": Image.open(image_path), "prompt": row["prompt"], "target": row["target"]})
    if not records:
        raise UserError(f"{path}: no records (expected one JSON object per line with image, prompt, target)")
    return records


@register_method("fwd-prompt", "fwd_prompt", "fwdprompt")
class FwdPrompt(Strategy):
    defaults = {
        "lr": 1e-2, "pool_size": 20, "prompt_length": 5, "top_n": 3, "key_loss_weight": 0.1,
        "query_image": "vision", "query_text": "llm", "insert_offset": 1, "prompt_init": "vocab",
        "projection": "residual+pretrained", "forward_mode": "project", "beta": 1.0, "compose": "sequential",
        "project_update": True, "memory_space": "full", "threshold": 0.97, "threshold_pre": 0.97,
        "project_first_task": False, "subspace_rows": "text", "diversify_selection": True,
        "subspace_samples": 128, "pretrain_samples": 256, "pretrain_data": "auto", "subspace_batch_size": 32,
        "analysis": True,
    }

    # ------------------------------------------------------------------ construction
    @classmethod
    def check_hparams(cls, hp: dict[str, Any]) -> None:
        for key, allowed in CHOICES.items():
            if hp[key] not in allowed:
                raise UserError(f"fwd-prompt: --set {key}={hp[key]!r}: expected one of {', '.join(allowed)}")
        if hp["query_image"] == "none" and hp["query_text"] == "none":
            raise UserError("fwd-prompt: query_image and query_text are both 'none': the query needs a modality")
        for key in ("pool_size", "prompt_length", "top_n", "subspace_samples", "pretrain_samples",
                    "subspace_batch_size"):
            if not isinstance(hp[key], int) or hp[key] < 1:
                raise UserError(f"fwd-prompt: --set {key}={hp[key]!r}: expected a positive integer")
        if hp["top_n"] > hp["pool_size"]:
            raise UserError(f"fwd-prompt: --set top_n={hp['top_n']}: expected at most pool_size={hp['pool_size']}")
        for key in ("threshold", "threshold_pre"):
            if not 0.0 < float(hp[key]) <= 1.0:
                raise UserError(f"fwd-prompt: --set {key}={hp[key]!r}: expected a number in (0, 1]")
        if not isinstance(hp["diversify_selection"], bool):
            raise UserError(f"fwd-prompt: --set diversify_selection={hp['diversify_selection']!r}: expected true or false")
        if hp["insert_offset"] not in (0, 1):
            raise UserError(f"fwd-prompt: --set insert_offset={hp['insert_offset']!r}: expected 0 or 1")
        source = str(hp["pretrain_data"])
        if source not in ("auto", "benchmark", "first_task") and not Path(source).expanduser().is_file():
            raise UserError(f"fwd-prompt: --set pretrain_data={source!r}: expected auto, benchmark, first_task or "
                            f"the path of a JSONL file of {{image, prompt, target}}")

    def __init__(self, backbone: Any, hparams: dict[str, Any]) -> None:
        super().__init__(backbone, hparams)
        self.check_hparams(self.hparams)
        hp, d = self.hparams, backbone.hidden_size
        table = backbone.input_embeddings().weight.detach()
        if hp["prompt_init"] == "vocab":  # start inside the token-embedding distribution
            rows = torch.randint(0, table.shape[0], (hp["pool_size"] * hp["prompt_length"],))
            init = table[rows].float().clone().reshape(hp["pool_size"], hp["prompt_length"], d)
        else:
            init = torch.randn(hp["pool_size"], hp["prompt_length"], d) * float(table.float().std())
        self.prompts = nn.Parameter(init.to(table.dtype))
        self.keys = nn.Parameter(torch.empty(hp["pool_size"], self._query_dim(), dtype=table.dtype).uniform_(-1, 1))
        self.register_buffer("memory", subspace.empty_basis(d))  # U, grows after each task
        self.register_buffer("pretrained_basis", subspace.empty_basis(d))  # U_pre
        self.pretrained_ready = False
        self.pretrain_source = ""
        self.task_records: list[dict[str, Any]] = []  # per trained task: ranks, dims, overlaps
        self.core_bases: list[torch.Tensor] = []  # each task's own core space (for the analysis)
        self.pretrained_info: dict[str, Any] = {}
        self.context: RunContext | None = None
        self._maps: tuple[torch.Tensor | None, torch.Tensor | None] | None = None
        self._before_step: torch.Tensor | None = None
        self._eval_cell: tuple[int, str] | None = None
        self.train_usage: dict[str, list[int]] = {}
        self.eval_usage: dict[int, dict[str, list[int]]] = {}
        self.free_space_warnings: list[dict[str, Any]] = []
        self._warned = False

    def _query_dim(self) -> int:
        hp, cfg = self.hparams, self.backbone.model.config
        dim = 0
        if hp["query_image"] == "vision":
            layers = cfg.vision_feature_layer
            dim += self.backbone.vision_hidden_size * (1 if isinstance(layers, int) else len(layers))
        if hp["query_text"] == "llm":
            dim += self.backbone.hidden_size
        if "clip" in (hp["query_image"], hp["query_text"]):
            clip = self.backbone.require_clip("fwd-prompt with query_image/query_text=clip")
            dim += clip.config.projection_dim * [hp["query_image"], hp["query_text"]].count("clip")
        return dim

    def setup(self, tasks: list, context: RunContext) -> None:
        super().setup(tasks, context)
        self.context = context

    # ------------------------------------------------------------------ query and selection
    @torch.no_grad()
    def query(self, batch: dict[str, Any], vision: torch.Tensor | None = None) -> torch.Tensor:
        """Frozen multimodal query [B, Dq]: normalised image part ++ normalised instruction part."""
        hp, parts = self.hparams, []
        if hp["query_image"] == "vision":
            feats = vision if vision is not None else self.backbone.vision_features(batch["pixel_values"])
            parts.append(feats.float().mean(dim=1))
        elif hp["query_image"] == "clip":
            parts.append(self.backbone.clip_image_embeds(batch["pixel_values"]).float())
        if hp["query_text"] == "llm":
            tok = self.backbone.tokenizer(list(batch["instructions"]), add_special_tokens=False, padding=True,
                                          return_tensors="pt")
            ids, mask = tok["input_ids"].to(self.keys.device), tok["attention_mask"].to(self.keys.device)
            emb = self.backbone.input_embeddings()(ids).float()
            parts.append((emb * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1))
        elif hp["query_text"] == "clip":
            parts.append(self.backbone.clip_text_embeds(list(batch["instructions"])).float())
        return torch.cat([nn.functional.normalize(p, dim=-1) for p in parts], dim=-1).to(self.keys.dtype)

    def prepare_inputs(self, batch: dict[str, Any], training: bool) -> ModelInputs:
        vision = self.backbone.vision_features(batch["pixel_values"])
        embeds = self.backbone.embed(batch["input_ids"], self.backbone.project(vision))
        q = self.query(batch, vision)
        earlier = self._earlier_frequency() if training else None
        if earlier is not None:
            idx, sim = select_diversified(q, self.keys, int(self.hparams["top_n"]), earlier)
        else:
            idx, sim = select_top(q, self.keys, int(self.hparams["top_n"]))
        chosen = self.prompts[idx].flatten(1, 2)  # [B, N * n_p, d]
        embeds, mask, labels = insert_after_bos(embeds, batch["attention_mask"], batch.get("labels"), chosen,
                                                offset=int(self.hparams["insert_offset"]))
        self._count_usage(idx, training)
        return ModelInputs(embeds, mask, labels, extras={"selected": idx, "similarity": sim})

    def _earlier_frequency(self) -> torch.Tensor | None:
        """Selections per pool entry while training the tasks before the current one (None: no penalty)."""
        if not self.hparams["diversify_selection"] or self.current_task <= 0:
            return None
        earlier = [self.train_usage[t.name] for t in self.tasks[:self.current_task] if t.name in self.train_usage]
        if not earlier:
            return None
        return torch.tensor(earlier, dtype=torch.float64, device=self.keys.device).sum(dim=0)

    def _count_usage(self, idx: torch.Tensor, training: bool) -> None:
        counts = torch.bincount(idx.flatten().cpu(), minlength=int(self.hparams["pool_size"])).tolist()
        if training and 0 <= self.current_task < len(self.tasks):
            table, key = self.train_usage, self.tasks[self.current_task].name
        elif not training and self._eval_cell is not None:
            stage, key = self._eval_cell
            table = self.eval_usage.setdefault(stage, {})
        else:
            return
        table[key] = [a + b for a, b in zip(table.get(key, [0] * len(counts)), counts)]

    def on_evaluate(self, stage: int, task_index: int) -> None:
        self._eval_cell = (stage, self.tasks[task_index].name) if task_index < len(self.tasks) else None

    def on_evaluate_end(self, stage: int, task_index: int) -> None:
        if stage > 0 and self._eval_cell is not None:  # prompt usage of this cell, summed over the ranks
            table = self.eval_usage.setdefault(stage, {})
            counts = table.get(self._eval_cell[1], [0] * int(self.hparams["pool_size"]))
            table[self._eval_cell[1]] = self.all_reduce_counts(counts)

    def train_step(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        inputs = self.prepare_inputs(batch, training=True)
        lm = self.backbone.lm_loss(inputs.inputs_embeds, inputs.attention_mask, inputs.labels)
        matched = inputs.extras["similarity"].gather(1, inputs.extras["selected"])
        key = (1.0 - matched).sum(dim=1).mean()
        return {"lm": lm, "key": float(self.hparams["key_loss_weight"]) * key}

    # ------------------------------------------------------------------ gradient projection
    def _unprojected_task(self) -> bool:
        """The first task of the order trains without projection (the paper), unless ``project_first_task``."""
        return self.current_task == 0 and not self.hparams["project_first_task"]

    def _projection(self) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        if self._maps is None:
            hp = self.hparams
            if self._unprojected_task():
                grad_map = update_proj = None
            elif hp["projection"] == "random":
                _, default = projection_maps(self.memory, self.pretrained_basis, "residual+pretrained",
                                             hp["forward_mode"], float(hp["beta"]), hp["compose"])
                k = int(round(float(torch.trace(default)))) if default is not None else self.backbone.hidden_size
                seed = (self.context.seed if self.context else 0) * 1000 + max(self.current_task, 0)
                grad_map = update_proj = random_projector(self.backbone.hidden_size, k, seed)
            else:
                grad_map, update_proj = projection_maps(self.memory, self.pretrained_basis, hp["projection"],
                                                        hp["forward_mode"], float(hp["beta"]), hp["compose"])
            cast = lambda m: None if m is None else m.to(self.prompts.device, self.prompts.dtype)  # noqa: E731
            self._maps = (cast(grad_map), cast(update_proj))
        return self._maps

    def before_optimizer_step(self) -> None:
        grad_map, update_proj = self._projection()
        if grad_map is not None and self.prompts.grad is not None:
            self.prompts.grad.copy_(self.prompts.grad @ grad_map)
        if update_proj is not None and self.hparams["project_update"]:
            self._before_step = self.prompts.detach().clone()

    @torch.no_grad()
    def after_optimizer_step(self) -> None:
        if self._before_step is None:
            return
        _, update_proj = self._projection()
        self.prompts.copy_(self._before_step + (self.prompts - self._before_step) @ update_proj)
        self._before_step = None

    def set_subspaces(self, memory: torch.Tensor | None = None, pretrained: torch.Tensor | None = None) -> None:
        """Replace U and/or U_pre (d x k, orthonormal columns) and drop the cached projection maps."""
        if memory is not None:
            self.memory = memory.to(self.memory.device, torch.float64)
        if pretrained is not None:
            self.pretrained_basis = pretrained.to(self.memory.device, torch.float64)
            self.pretrained_ready = True
        self._maps = None

    def effective_dims(self) -> float:
        """||gradient map||_F^2: how many unit directions of gradient survive the projection (d without one)."""
        grad_map, _ = self._projection()
        if grad_map is None:
            return float(self.backbone.hidden_size)
        return round(float(grad_map.double().pow(2).sum()), 2)

    def free_dims(self) -> int:
        """Dimension of the subspace the prompt updates are confined to (d without projection)."""
        _, update_proj = self._projection()
        return self.backbone.hidden_size if update_proj is None else int(round(float(torch.trace(update_proj))))

    # ------------------------------------------------------------------ subspaces
    @torch.no_grad()
    def embedding_gram(self, records: Any, n: int, seed: int) -> tuple[torch.Tensor, int, int]:
        """Gram [d, d] of the LLM input embeddings (all non-padding positions) of ``n`` records drawn
        with ``seed``, plus the number of samples and of tokens (columns of X)."""
        rng = random.Random(seed)
        picked = sorted(rng.sample(range(len(records)), min(n, len(records))))
        collate = self.context.collate_train
        device = self.prompts.device
        G = torch.zeros(self.backbone.hidden_size, self.backbone.hidden_size, dtype=torch.float64, device=device)
        tokens, size = 0, int(self.hparams["subspace_batch_size"])
        mine = self.shard(picked)  # this rank's share; G and the token count are summed over ranks below
        for start in range(0, len(mine), size):
            chunk = [records[i] for i in mine[start:start + size]]
            batch = to_device(collate(chunk), device)
            embeds = Strategy.prepare_inputs(self, batch, training=False).inputs_embeds  # without prompts
            rows = self._svd_rows(embeds, batch)
            G += subspace.gram(rows)
            tokens += rows.shape[0]
        return self.all_reduce(G), len(picked), self.all_reduce_counts([tokens])[0]

    def _svd_rows(self, embeds: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
        """Rows [n, d] of the input-embedding matrix that enter the SVD (``subspace_rows``)."""
        keep = batch["attention_mask"].bool()
        choice = self.hparams["subspace_rows"]
        if choice == "text":
            keep = keep & (batch["input_ids"] != self.backbone.image_token_id)
        rows = embeds[keep]
        if choice == "normalized":
            rows = rows / rows.norm(dim=-1, keepdim=True).clamp(min=1e-12)
        return rows

    def _pretraining_records(self, first_task_data: Any) -> tuple[Any, str]:
        source = str(self.hparams["pretrain_data"])
        benchmark = self.context.benchmark
        if source not in ("auto", "benchmark", "first_task"):
            return _read_jsonl(Path(source).expanduser()), f"jsonl:{source}"
        has_split = getattr(benchmark, "pretraining_split", None) is not None
        if source == "benchmark" or (source == "auto" and has_split and self._builtin_backbone()):
            if not has_split:
                raise UserError(f"fwd-prompt: --set pretrain_data=benchmark: benchmark {benchmark.name!r} has no "
                                f"pre-training split; use first_task or a JSONL path")
            return benchmark.pretraining_split(), f"benchmark:{benchmark.name}:pretraining_split"
        note = ("first task's training data (NOT the backbone's pre-training data: pass --set "
                "pretrain_data=<file.jsonl> with a sample of it for a faithful U_pre)")
        print(f"fwd-prompt: U_pre from the {note}", flush=True)
        return first_task_data, f"first_task:{self.tasks[0].name}"

    def _builtin_backbone(self) -> bool:
        sidecar = Path(str(self.backbone.source)) / SIDECAR
        return sidecar.is_file() and json.loads(sidecar.read_text()).get("name") == "tiny-llava"

    def _needs_pretrained(self) -> bool:
        hp = self.hparams
        return hp["projection"] == "residual+pretrained" or hp["memory_space"] == "outside_pretrained" or \
            bool(hp["analysis"])

    def before_task(self, task_index: int, task: Any, train_data: Any) -> None:
        super().before_task(task_index, task, train_data)
        if not self.pretrained_ready and self._needs_pretrained() and self.context is not None:
            records, self.pretrain_source = self._pretraining_records(train_data)
            G, samples, tokens = self.embedding_gram(records, int(self.hparams["pretrain_samples"]), self.context.seed)
            ext = subspace.gpm_extend(G, subspace.empty_basis(G.shape[0]), float(self.hparams["threshold_pre"]))
            self.pretrained_basis = ext.basis.to(self.memory.device)
            self.pretrained_info = {"source": self.pretrain_source, "samples": samples, "tokens": tokens,
                                    "rank": subspace.numerical_rank(G), "energy_rank": ext.k}
            self.pretrained_ready = True
        self._maps = None
        self.train_usage.pop(task.name, None)
        self._check_free_space(task_index, task.name)

    def _check_free_space(self, task_index: int, name: str) -> None:
        """Warn (once per run on the console, every time in summary.json) when the prompts have no room."""
        hp = self.hparams
        if hp["projection"] == "none" or self._unprojected_task():
            return
        free, effective, need = self.free_dims(), self.effective_dims(), int(hp["prompt_length"])
        if min(free, effective) >= need:
            return
        entry = {"task": name, "index": task_index, "free_dims": free, "effective_dims": effective,
                 "prompt_length": need}
        self.free_space_warnings = [w for w in self.free_space_warnings if w["index"] != task_index] + [entry]
        if not self._warned:
            self._warned = True
            print(f"fwd-prompt: warning: while training {name!r} the prompt updates may move in {free} dimension(s) "
                  f"({effective:g} effective), fewer than a prompt's {need} tokens"
                  f"{' (the prompts are frozen)' if free == 0 else ''}; "
                  f"see free_space_warnings in summary.json (knobs: threshold, threshold_pre, subspace_rows)",
                  flush=True)

    @torch.no_grad()
    def after_task(self, task_index: int, task: Any, train_data: Any) -> None:
        usage = self.train_usage.get(task.name, [0] * int(self.hparams["pool_size"]))  # summed over the ranks
        self.train_usage[task.name] = self.all_reduce_counts(usage)
        if self.hparams["projection"] == "none" and not self.hparams["analysis"]:
            return
        seed = (self.context.seed if self.context else 0) * 1000 + task_index + 1
        G, samples, tokens = self.embedding_gram(train_data, int(self.hparams["subspace_samples"]), seed)
        threshold = float(self.hparams["threshold"])
        free_during_task, effective_during_task = self.free_dims(), self.effective_dims()
        if self.hparams["memory_space"] == "outside_pretrained":  # U_pre counts as covered: U stays ⊥ U_pre
            ext = subspace.gpm_extend(G, torch.cat([self.pretrained_basis, self.memory], dim=1), threshold)
        else:
            ext = subspace.gpm_extend(G, self.memory, threshold)
        own = subspace.gpm_extend(G, subspace.empty_basis(G.shape[0]), threshold).basis
        self.memory = torch.cat([self.memory, ext.basis.to(self.memory)], dim=1)
        self.core_bases.append(own.cpu())
        self.task_records.append({
            "task": task.name, "index": task_index, "samples": samples, "tokens": tokens,
            "rank": subspace.numerical_rank(G), "energy_rank": own.shape[1],
            "covered_by_memory_before": round(ext.covered_before, 6), "added_dims": ext.k,
            "memory_rank": int(self.memory.shape[1]),
            "energy_in_pretrained": round(subspace.energy_fraction(G, self.pretrained_basis), 6),
            "overlap_with_pretrained": round(subspace.overlap(own, self.pretrained_basis.cpu()), 6),
            "free_dims_during_task": free_during_task, "effective_dims_during_task": effective_during_task,
        })
        self._maps = None
        if self.hparams["analysis"]:
            self._write_analysis()

    def analysis(self) -> dict[str, Any]:
        n = len(self.core_bases)
        overlaps = [[round(subspace.overlap(self.core_bases[i], self.core_bases[j]), 6) for j in range(n)]
                    for i in range(n)]
        return {
            "d": self.backbone.hidden_size, "threshold": self.hparams["threshold"],
            "threshold_pre": self.hparams["threshold_pre"], "pretrained": self.pretrained_info,
            "tasks": self.task_records, "core_overlap": overlaps,
            "definitions": {
                "rank": "numerical rank of X_t (singular values > 1e-4 x the largest)",
                "energy_rank": "smallest k whose leading singular values hold `threshold` of ||X_t||_F^2",
                "core_overlap": "||B_i^T B_j||_F^2 / min(k_i, k_j) for the tasks' own core spaces B (1 = nested, "
                                "0 = orthogonal)",
                "energy_in_pretrained": "||U_pre^T X_t||^2 / ||X_t||^2",
                "covered_by_memory_before": "||U^T X_t||^2 / ||X_t||^2 with the memory of the earlier tasks",
                "free_dims_during_task": "dimension of the subspace the prompt updates were confined to",
                "effective_dims_during_task": "||gradient map||_F^2 (= free dims for an orthogonal projector)",
            },
        }

    def _write_analysis(self) -> None:
        run_dir = getattr(self.context, "run_dir", None)
        if run_dir is None:
            return
        from mcit_bench.rundir.atomic import atomic_write_json

        atomic_write_json(Path(run_dir) / ANALYSIS_FILE, self.analysis())

    # ------------------------------------------------------------------ reporting
    def report(self) -> dict[str, Any]:
        hp = self.hparams
        last_stage = max(self.eval_usage) if self.eval_usage else None
        pool = pool_use(self.train_usage, self.eval_usage.get(last_stage, {}), int(hp["top_n"]))
        return {
            "pool_size": hp["pool_size"], "prompt_length": hp["prompt_length"], "top_n": hp["top_n"],
            "query": f"{hp['query_image']}+{hp['query_text']}", "projection": hp["projection"],
            "forward_mode": hp["forward_mode"], "compose": hp["compose"], "project_update": hp["project_update"],
            "pretrained_rank": int(self.pretrained_basis.shape[1]), "pretrain_source": self.pretrain_source,
            "memory_rank_after_task": [r["memory_rank"] for r in self.task_records],
            "free_dims_per_task": [r["free_dims_during_task"] for r in self.task_records],
            "effective_dims_per_task": [r.get("effective_dims_during_task") for r in self.task_records],
            "free_space_warnings": self.free_space_warnings,
            "project_first_task": hp["project_first_task"], "subspace_rows": hp["subspace_rows"],
            "diversify_selection": hp["diversify_selection"],
            "prompt_usage_train": self.train_usage,
            "prompt_usage_eval_last_stage": {"stage": last_stage, "counts": self.eval_usage.get(last_stage, {})},
            "prompt_pool": pool, "task_identification_last":
                round(sum(pool["own_selection_pct"].values()) / len(pool["own_selection_pct"]), 2)
                if pool["own_selection_pct"] else None,
        }

    # ------------------------------------------------------------------ resume
    def extra_state(self) -> dict[str, Any]:
        return {**super().extra_state(), "memory_rank": int(self.memory.shape[1]),
                "pretrained_rank": int(self.pretrained_basis.shape[1]), "pretrained_ready": self.pretrained_ready,
                "pretrain_source": self.pretrain_source, "pretrained_info": self.pretrained_info,
                "task_records": self.task_records, "core_bases": [b.clone() for b in self.core_bases],
                "train_usage": self.train_usage, "free_space_warnings": self.free_space_warnings,
                "warned": self._warned}

    def rebuild(self, extra: dict[str, Any]) -> None:
        super().rebuild(extra)
        d, device = self.backbone.hidden_size, self.memory.device
        # U and U_pre grow: give the buffers the saved shapes so load_state_dict can fill them
        self.memory = torch.zeros(d, extra["memory_rank"], dtype=torch.float64, device=device)
        self.pretrained_basis = torch.zeros(d, extra["pretrained_rank"], dtype=torch.float64, device=device)
        self.pretrained_ready = extra["pretrained_ready"]
        self.pretrain_source = extra["pretrain_source"]
        self.pretrained_info = dict(extra["pretrained_info"])
        self.task_records = [dict(r) for r in extra["task_records"]]
        self.core_bases = [b.clone() for b in extra["core_bases"]]
        self.train_usage = {k: list(v) for k, v in extra["train_usage"].items()}
        self.free_space_warnings = [dict(w) for w in extra.get("free_space_warnings", [])]
        self._warned = bool(extra.get("warned", False))
        self._maps = None

    def restore(self, checkpoint: dict[str, Any]) -> None:
        super().restore(checkpoint)
        self._maps = None
