"""many: MAny (Gao et al. 2026, arXiv 2604.14016), training-free merging after per-task tuning.

No public code exists: everything below is a RECONSTRUCTION from the paper's text and the math it
cites (see the project's methods reference). Every reconstructed choice is a named hyper-parameter.

Per task t (``before_task`` .. fit):
  an ordinary initial tuning of a LoRA adapter on the LLM (peft, r=16, alpha=32, the lora-ft targets)
  and of a task-specific copy of the multimodal projector theta_t.
After the task (``after_task``, forward passes only, no gradients) on ``stat_samples`` training records:
  * the visual prototype mu_t = mean over the sample of pool(z), pool = mean over the patch tokens of
    the frozen vision features z;
  * for every LoRA-adapted linear layer the input Gram matrix G_t = X_t^T X_t over all non-padding
    positions (forward hooks on the adapted layers). Layers that read the very same input tensor
    (q/k/v, gate/up in Llama) share one Gram matrix and one inverse Gram (detected by tensor identity).
``merge``:
  * CPM, Cross-modal Projection Merging: theta_t and mu_t are kept. At inference the visual tokens are
    sum_t w_t Proj_{theta_t}(z), w = softmax_t(cos(pool(z), mu_t) / tau) over the learned tasks;
    ``cpm_tau = 0`` is hard top-1 routing (the tau -> 0 limit). Implemented in ``prepare_inputs``.
  * LPM, Low-rank Parameter Merging: one merged update W per adapted layer, the minimiser of
    sum_{i<=t} ||X_i W^T - X_i T_i^T||^2 + gamma ||W||^2, updated by recursive least squares in float64
    on the CPU with P the inverse Gram (d x d form of P <- P - P X^T (I + X P X^T)^{-1} X P):
        P <- P - P (I + G_t P)^{-1} G_t P,      W^T <- W^T + P G_t (T_t^T - W^T).
    No data (nor Gram) of earlier tasks is kept: only P and W.

Reconstructed choices (knobs):
  ``lpm_train_on`` (default ``merged``): what the LLM is while task t trains. ``merged``: base weight +
      the merged update of tasks < t as a FROZEN delta (a forward hook adds x W^T to the adapted layer's
      output) + a fresh, re-initialised LoRA (A Kaiming, B = 0). The update task t ends with is then
      T_t = W_{t-1} + (alpha/r) B_t A_t, and the recursive step reduces to W^T += P G_t ((alpha/r) B_t A_t)^T.
      ``base``: each task's LoRA is trained on the untouched base weight (independent experts,
      T_t = (alpha/r) B_t A_t); the merged delta is used at inference only.
      At inference (both): base weight + merged W, the LoRA is zeroed after each merge.
  ``lpm_gamma`` / ``lpm_gamma_mode`` (1e-2 / ``relative``): the ridge gamma. ``relative``: gamma =
      lpm_gamma x mean diagonal of the first merged task's Gram of that layer group (activation scales
      differ by layer); ``absolute``: gamma = lpm_gamma.
  ``lpm_gram`` (``mean``): G_t divided by its number of tokens, so every task weighs the same whatever
      its sample and sequence lengths; ``sum``: the literal objective (tasks weigh by token count).
  ``cpm_route_on`` (``vision``, the paper's visual prototype): the feature CPM routes on and its
      prototypes average. ``vision``: pooled frozen vision-tower feature (mean over patch tokens);
      ``clip_image``: the CLIP projected image embedding (needs a CLIP model, as ModalPrompt);
      ``text``: mean frozen LLM input embedding of the instruction tokens; ``image_text``: the
      L2-normalised vision and text features concatenated.
  ``lpm_gram_positions`` (``all``): which token positions enter the Gram matrices G_t. ``all``: every
      non-padding position (template, visual and text tokens: the shared template and the visual tokens
      dominate); ``instruction_answer``: the positions after the image tokens (the instruction, the
      assistant tag and the answer; a row without an image: all its text); ``answer``: the answer
      tokens only (labels != -100).
  ``cpm_tau`` (0.01): routing temperature; ``projector_init`` (``base``): theta_t starts from the
      pre-trained projector (``previous``: from theta_{t-1}).
  ``stat_samples`` / ``stat_batch_size``: the sample of task t's training records used for statistics.
  During training of task t the model uses its own projector theta_t (no routing) and its own LoRA.
Memory of the merge (a 7B backbone, ``results/costs/many_merge.txt``): ``lpm_dtype`` (``float64``) stores P, W
  and the Grams in float32 on request (half the state); the update itself runs in float64 one layer group at a
  time (in float32 its cancellation P - P(..)GP loses ~1e-3); the float32 state stays within ~3e-4 of the
  float64 one on the tiny backbone (the Grams' round-off, through the ridge solve); ``lpm_groups_per_pass`` (0 = all at once) collects the Grams of that many layer groups per pass
  over the statistics sample and merges them before the next pass, so only one pass's Grams exist at a time
  (the LoRA is absorbed and the deltas refreshed after the last pass: every pass sees the same model, and
  the result equals the one-pass merge).
Ablation knob ``merge``: ``both`` (MAny), ``cpm`` (LPM off: one LoRA carried over from task to task as
  in lora-ft, no merged delta), ``lpm`` (CPM off: one shared projector trained sequentially, as in
  lora-ft), ``none`` (both off: lora-ft with the projector held by the strategy).
"""
from __future__ import annotations

import copy
import time
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from mcit_bench.collate import to_device
from mcit_bench.errors import UserError
from mcit_bench.lora import DEFAULT_TARGETS, add_lora
from mcit_bench.registry import register_method
from mcit_bench.strategy import ModelInputs, RunContext, Strategy

MERGE_MODES = ("both", "cpm", "lpm", "none")
ROUTE_FEATURES = ("vision", "clip_image", "text", "image_text")
GRAM_POSITIONS = ("all", "instruction_answer", "answer")
ADAPTER = "default"


# ---------------------------------------------------------------------------- LPM math (float64)
def rls_inverse_update_x(P: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    """P <- P - P X^T (I + X P X^T)^{-1} X P for a new data block X [n, d] (Woodbury)."""
    PXt = P @ X.T
    inner = torch.eye(X.shape[0], dtype=P.dtype, device=P.device) + X @ PXt
    P_new = P - PXt @ torch.linalg.solve(inner, PXt.T)
    return (P_new + P_new.T) / 2  # symmetric in exact arithmetic; keep it so against round-off


def rls_inverse_update_gram(P: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
    """The same update from the Gram G = X^T X [d, d] alone: P <- P - P (I + G P)^{-1} G P.

    Push-through identity: X^T (I + X P X^T)^{-1} X = (I + G P)^{-1} G, so no X is needed.
    """
    eye = torch.eye(G.shape[0], dtype=P.dtype, device=P.device)
    P_new = P - P @ torch.linalg.solve(eye + G @ P, G @ P)
    return (P_new + P_new.T) / 2


def rls_weight_update(P_new: torch.Tensor, G: torch.Tensor, W_T: torch.Tensor, target_T: torch.Tensor) -> torch.Tensor:
    """W^T <- W^T + P G (T^T - W^T) with P the UPDATED inverse Gram (= P X^T (X T^T - X W^T))."""
    return W_T + P_new @ (G @ (target_T - W_T))


def batch_merge(grams: list[torch.Tensor], targets_T: list[torch.Tensor], gamma: float) -> torch.Tensor:
    """Closed form W^T = (sum G_i + gamma I)^{-1} sum G_i T_i^T (needs every task's statistics)."""
    d = grams[0].shape[0]
    A = gamma * torch.eye(d, dtype=grams[0].dtype) + sum(grams)
    return torch.linalg.solve(A, sum(G @ T for G, T in zip(grams, targets_T)))


# ---------------------------------------------------------------------------- CPM routing
def route_weights(pooled: torch.Tensor, prototypes: torch.Tensor, tau: float) -> torch.Tensor:
    """w [B, T] = softmax_t(cos(pooled_b, mu_t) / tau); ``tau <= 0``: one-hot top-1 (hard routing)."""
    cos = F.normalize(pooled.float(), dim=-1) @ F.normalize(prototypes.float(), dim=-1).T
    if tau <= 0:
        return F.one_hot(cos.argmax(dim=-1), prototypes.shape[0]).to(cos.dtype)
    return torch.softmax(cos / tau, dim=-1)


def mix_projections(features: torch.Tensor, projectors: list[nn.Module], weights: torch.Tensor) -> torch.Tensor:
    """sum_t w[b, t] Proj_t(z_b): output-level mixing; projectors with zero weight everywhere are skipped."""
    out = None
    for t, proj in enumerate(projectors):
        w = weights[:, t]
        if not bool((w != 0).any()):
            continue
        rows = (w != 0).nonzero().squeeze(-1)
        part = proj(features[rows]) * w[rows, None, None].to(features.dtype)
        if out is None:
            out = torch.zeros(features.shape[0], *part.shape[1:], dtype=part.dtype, device=part.device)
        out = out.index_add(0, rows, part)
    assert out is not None, "routing weights are all zero"
    return out


def _key(name: str) -> str:
    return name.replace(".", "__")


@register_method("many", "m-any", "merge-anything")
class MAny(Strategy):
    defaults = {"lr": 2e-3, "lora_r": 16, "lora_alpha": 32, "lora_dropout": 0.0, "lora_targets": DEFAULT_TARGETS,
                "merge": "both", "cpm_tau": 0.01, "cpm_route_on": "vision", "lpm_gram_positions": "all",
                "projector_init": "base",
                "lpm_gamma": 1e-2, "lpm_gamma_mode": "relative", "lpm_gram": "mean", "lpm_train_on": "merged",
                "stat_samples": 256, "stat_batch_size": 16, "lpm_dtype": "float64", "lpm_groups_per_pass": 0}

    @classmethod
    def check_hparams(cls, hp: dict[str, Any]) -> None:
        choices = {"merge": MERGE_MODES, "projector_init": ("base", "previous"), "lpm_gamma_mode": ("relative", "absolute"),
                   "cpm_route_on": ROUTE_FEATURES, "lpm_gram_positions": GRAM_POSITIONS,
                   "lpm_gram": ("mean", "sum"), "lpm_train_on": ("merged", "base"),
                   "lpm_dtype": ("float64", "float32")}
        for key, allowed in choices.items():
            if hp[key] not in allowed:
                raise UserError(f"--set {key}={hp[key]!r}: expected one of {', '.join(allowed)}")
        if not float(hp["lpm_gamma"]) > 0:
            raise UserError(f"--set lpm_gamma={hp['lpm_gamma']!r}: expected a number > 0")
        if float(hp["cpm_tau"]) < 0:
            raise UserError(f"--set cpm_tau={hp['cpm_tau']!r}: expected a number >= 0 (0 = hard routing)")
        if int(hp["lpm_groups_per_pass"]) < 0:
            raise UserError(f"--set lpm_groups_per_pass={hp['lpm_groups_per_pass']!r}: expected an integer >= 0")
        if int(hp["stat_samples"]) < 1 or int(hp["stat_batch_size"]) < 1:
            raise UserError("--set stat_samples / stat_batch_size: expected integers >= 1")

    def __init__(self, backbone: Any, hparams: dict[str, Any]) -> None:
        super().__init__(backbone, hparams)
        self.check_hparams(self.hparams)
        mode = self.hparams["merge"]
        self.use_cpm = mode in ("both", "cpm")
        self.use_lpm = mode in ("both", "lpm")
        self.projectors = nn.ModuleList()
        self.register_buffer("prototypes", torch.zeros(0, self._route_dim()))
        self.lpm = nn.Module()  # buffers: W_<layer> [out, in] f64, P_<group> [in, in] f64, gamma_<group>, D_<layer>
        self.adapted: list[str] = []
        self.groups: dict[str, str] = {}  # adapted layer -> group (the first layer reading the same input)
        self.n_merged = 0
        self.seed = 0
        self._in_task = False
        self._pending: dict[str, Any] = {}
        self._eval_cell: tuple[int, int] | None = None
        self.routing: dict[str, dict[str, list[int]]] = {}
        self.timings: dict[str, list[float]] = {"stats_seconds": [], "merge_seconds": []}
        self.stat_tokens: list[int] = []
        self.lpm_dtype = getattr(torch, self.hparams["lpm_dtype"])  # of P, W and the Grams

    # ------------------------------------------------------------------ routing feature
    def _route_dim(self) -> int:
        choice, bb = self.hparams["cpm_route_on"], self.backbone
        if choice == "clip_image":
            return int(bb.require_clip("many with cpm_route_on=clip_image").config.projection_dim)
        return {"vision": bb.vision_hidden_size, "text": bb.hidden_size,
                "image_text": bb.vision_hidden_size + bb.hidden_size}[choice]

    @torch.no_grad()
    def route_feature(self, batch: dict[str, Any], features: torch.Tensor) -> torch.Tensor:
        """The per-sample feature [B, F] that CPM's prototypes average and its routing compares."""
        choice = self.hparams["cpm_route_on"]
        if choice == "clip_image":
            return self.backbone.clip_image_embeds(batch["pixel_values"]).float()
        vision = features.float().mean(dim=1)
        if choice == "vision":
            return vision
        tok = self.backbone.tokenizer(list(batch["instructions"]), add_special_tokens=False, padding=True,
                                      return_tensors="pt")
        ids, mask = tok["input_ids"].to(features.device), tok["attention_mask"].to(features.device)
        emb = self.backbone.input_embeddings()(ids).float()
        text = (emb * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
        if choice == "text":
            return text
        return torch.cat([F.normalize(vision, dim=-1), F.normalize(text, dim=-1)], dim=-1)

    def gram_positions(self, batch: dict[str, Any]) -> torch.Tensor:
        """Bool mask [B, L] of the positions whose layer inputs enter the Gram (``lpm_gram_positions``)."""
        keep = batch["attention_mask"].bool()
        choice = self.hparams["lpm_gram_positions"]
        if choice == "answer":
            return keep & (batch["labels"] != -100)
        if choice == "instruction_answer":
            is_image = batch["input_ids"] == self.backbone.image_token_id
            seen = is_image.long().cumsum(dim=1)
            after_last = (seen == seen[:, -1:]) & ~is_image & (seen[:, -1:] > 0)
            no_image = seen[:, -1:] == 0
            return keep & (after_last | no_image)
        return keep

    # ------------------------------------------------------------------ set-up
    def setup(self, tasks: list, context: RunContext) -> None:
        super().setup(tasks, context)
        hp = self.hparams
        self.seed = int(context.seed)
        self.collate_train = context.collate_train
        self.adapted = add_lora(self.backbone.model, hp["lora_r"], hp["lora_alpha"], hp["lora_dropout"], hp["lora_targets"])
        if self.use_lpm:
            modules = dict(self.backbone.model.named_modules())
            for name in self.adapted:
                base = modules[name].get_base_layer()
                self.lpm.register_buffer(f"W_{_key(name)}", torch.zeros(base.out_features, base.in_features,
                                                                        dtype=self.lpm_dtype))
                self.lpm.register_buffer(f"D_{_key(name)}", torch.zeros(base.out_features, base.in_features,
                                                                        dtype=base.weight.dtype), persistent=False)
                modules[name].register_forward_hook(self._delta_hook(name))

    def _lora_layers(self) -> dict[str, nn.Module]:
        named = dict(self.backbone.model.named_modules())
        return {name: named[name] for name in self.adapted}

    def _delta_hook(self, name: str):
        key = f"D_{_key(name)}"

        def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor | None:
            # the merged update of earlier tasks, a frozen delta on top of base weight (+ LoRA)
            if self.n_merged == 0 or (self._in_task and self.hparams["lpm_train_on"] == "base"):
                return None
            return output + F.linear(args[0], getattr(self.lpm, key))

        return hook

    def _new_projector(self) -> nn.Module:
        source = self.projectors[-1] if (self.hparams["projector_init"] == "previous" and len(self.projectors)) \
            else self.backbone.projector
        proj = copy.deepcopy(source)
        proj.requires_grad_(True)
        return proj

    # ------------------------------------------------------------------ lifecycle
    def before_task(self, task_index: int, task: Any, train_data: Any) -> None:
        super().before_task(task_index, task, train_data)
        self._in_task = True
        if self.use_cpm or not len(self.projectors):
            for proj in self.projectors:  # earlier tasks' projectors are frozen
                proj.requires_grad_(False)
            self.projectors.append(self._new_projector())
        if self.use_lpm:  # a fresh LoRA per task (seeded by the runner's per-stage seed)
            for module in self._lora_layers().values():
                module.reset_lora_parameters(ADAPTER, init_lora_weights=True)

    def _task_projector(self) -> nn.Module:
        return self.projectors[-1] if len(self.projectors) else self.backbone.projector

    def prepare_inputs(self, batch: dict[str, Any], training: bool) -> ModelInputs:
        features = self.backbone.vision_features(batch["pixel_values"])
        if training or not self.use_cpm or self.prototypes.shape[0] == 0:
            visual = self._task_projector()(features)
        else:
            weights = route_weights(self.route_feature(batch, features), self.prototypes, float(self.hparams["cpm_tau"]))
            self._count_routing(weights)
            visual = mix_projections(features, list(self.projectors[:self.prototypes.shape[0]]), weights)
        embeds = self.backbone.embed(batch["input_ids"], visual)
        return ModelInputs(embeds, batch["attention_mask"], batch.get("labels"),
                           extras={"position_ids": self.backbone.position_ids(batch)})

    # ------------------------------------------------------------------ statistics (no gradients)
    def _sample(self, task_index: int, data: Any) -> Iterator[list[dict[str, Any]]]:
        n = len(data)
        k = min(n, int(self.hparams["stat_samples"]))
        idx = np.sort(np.random.default_rng(self.seed * 1000 + task_index).choice(n, size=k, replace=False))
        idx = self.shard(idx)  # this rank's share; the sums are reduced in after_task
        k = len(idx)
        bs = int(self.hparams["stat_batch_size"])
        for start in range(0, k, bs):
            chosen = [int(i) for i in idx[start:start + bs]]
            chunk = data.select(chosen) if hasattr(data, "select") else [data[i] for i in chosen]
            yield [dict(r) for r in chunk]

    @torch.no_grad()
    def after_task(self, task_index: int, task: Any, train_data: Any) -> None:
        if not (self.use_cpm or self.use_lpm):
            return
        start = time.perf_counter()
        per_pass = int(self.hparams["lpm_groups_per_pass"]) if self.use_lpm else 0
        grams, tokens, prototype = self._statistics(task_index, train_data, 0)
        self._pending = {"task": task_index, "grams": grams, "prototype": prototype}
        if per_pass:  # merge pass by pass: only one pass's Grams exist at a time; merge() absorbs the LoRA
            self._lpm_merge(grams, finalize=False)
            del grams
            owners = [n for n in self.adapted if self.groups.get(n) == n]
            for p in range(1, -(-len(owners) // per_pass)):
                self._lpm_merge(self._statistics(task_index, train_data, p)[0], finalize=False)
            self._pending["grams"] = None
        self.stat_tokens.append(tokens)
        self.timings["stats_seconds"].append(round(time.perf_counter() - start, 4))

    def _statistics(self, task_index: int, train_data: Any, pass_index: int) -> tuple[dict, int, Any]:
        """Grams (of the pass's layer groups; all with ``lpm_groups_per_pass=0``), token count and (pass 0)
        visual prototype over the statistics sample, summed over the ranks."""
        per_pass = int(self.hparams["lpm_groups_per_pass"])
        wanted: set[str] | None = None
        device = self.backbone.device
        captured: dict[str, torch.Tensor] = {}
        handles = []
        if self.use_lpm:
            for name, module in self._lora_layers().items():
                handles.append(module.register_forward_hook(
                    lambda m, args, out, name=name: captured.__setitem__(name, args[0])))
        grams: dict[str, torch.Tensor] = {}
        tokens = 0
        proto_sum = torch.zeros(self.prototypes.shape[1], dtype=torch.float64)
        n_images = 0
        try:
            for records in self._sample(task_index, train_data):
                batch = self.collate_train(records)
                batch = to_device(batch, device)
                if self.use_cpm and pass_index == 0:
                    pooled = self.route_feature(batch, self.backbone.vision_features(batch["pixel_values"]))
                    proto_sum += pooled.double().sum(dim=0).cpu()
                    n_images += pooled.shape[0]
                if not self.use_lpm:
                    continue
                captured.clear()
                inputs = self.prepare_inputs(batch, training=True)  # task t's own model
                self.backbone.lm_forward(inputs.inputs_embeds, inputs.attention_mask, inputs.extras.get("position_ids"))
                if not self.groups:
                    self._detect_groups(captured)
                if per_pass and wanted is None:
                    owners = [n for n in self.adapted if self.groups[n] == n]
                    wanted = set(owners[pass_index * per_pass:(pass_index + 1) * per_pass])
                keep = self.gram_positions(batch)
                tokens += int(keep.sum())
                for name, group in self.groups.items():
                    if name != group or (wanted is not None and group not in wanted):
                        continue
                    x = captured[name][keep].to(self.lpm_dtype).cpu()
                    grams[group] = grams.get(group, 0) + x.T @ x
        finally:
            for handle in handles:
                handle.remove()
        # sums over every rank's share (identity on one process); keys: the layer groups, in one order
        proto_sum = self.all_reduce(proto_sum)
        tokens, n_images = self.all_reduce_counts([tokens, n_images])
        grams = {g: self.all_reduce(grams[g]) for g in sorted(grams)}
        if self.hparams["lpm_gram"] == "mean" and tokens:
            grams = {g: G / tokens for g, G in grams.items()}
        return grams, tokens, (proto_sum / max(n_images, 1)).float() if self.use_cpm else None

    def _detect_groups(self, captured: dict[str, torch.Tensor]) -> None:
        for name in self.adapted:
            owner = next((other for other in self.adapted if other in self.groups and self.groups[other] == other
                          and captured[other] is captured[name]), name)
            self.groups[name] = owner

    # ------------------------------------------------------------------ merging (no gradients)
    @torch.no_grad()
    def merge(self, task_index: int) -> None:
        self._in_task = False
        if not self._pending:
            return
        start = time.perf_counter()
        pending, self._pending = self._pending, {}
        if self.use_cpm:
            proto = pending["prototype"].to(self.prototypes.device)
            self.prototypes = torch.cat([self.prototypes, proto[None]], dim=0)
        if self.use_lpm:
            if pending["grams"] is None:  # merged pass by pass in after_task (lpm_groups_per_pass)
                self._absorb_lora()
            else:
                self._lpm_merge(pending["grams"])
            self.n_merged += 1
        self.timings["merge_seconds"].append(round(time.perf_counter() - start, 4))

    def _lpm_merge(self, grams: dict[str, torch.Tensor], finalize: bool = True) -> None:
        hp = self.hparams
        modules = self._lora_layers()
        for group, G in grams.items():
            if not hasattr(self.lpm, f"P_{_key(group)}"):  # first task: P_0 = I / gamma
                gamma = float(hp["lpm_gamma"])
                if hp["lpm_gamma_mode"] == "relative":
                    gamma *= float(G.diagonal().mean().clamp(min=1e-12))
                d = G.shape[0]
                self.lpm.register_buffer(f"gamma_{_key(group)}", torch.tensor(gamma, dtype=torch.float64))
                self.lpm.register_buffer(f"P_{_key(group)}", torch.eye(d, dtype=self.lpm_dtype) / gamma)
            G = G.double()  # one group at a time in float64, stored back in lpm_dtype
            P = rls_inverse_update_gram(getattr(self.lpm, f"P_{_key(group)}").cpu().double(), G)
            setattr(self.lpm, f"P_{_key(group)}", P.to(self.prototypes.device, self.lpm_dtype))
            for name, owner in self.groups.items():
                if owner != group:
                    continue
                module = modules[name]
                W_T = getattr(self.lpm, f"W_{_key(name)}").cpu().double().T
                delta_T = module.get_delta_weight(ADAPTER).detach().double().cpu().T  # ((alpha/r) B A)^T
                target_T = (W_T + delta_T) if hp["lpm_train_on"] == "merged" else delta_T
                W = rls_weight_update(P, G, W_T, target_T).T.contiguous()
                setattr(self.lpm, f"W_{_key(name)}", W.to(self.prototypes.device, self.lpm_dtype))
        if finalize:
            self._absorb_lora()

    def _absorb_lora(self) -> None:
        """The LoRA is absorbed: the model after the merge is base weight + W."""
        for module in self._lora_layers().values():
            nn.init.zeros_(module.lora_B[ADAPTER].weight)
        self._refresh_deltas()

    def _refresh_deltas(self) -> None:
        for name in self.adapted if self.use_lpm else []:
            W = getattr(self.lpm, f"W_{_key(name)}")
            D = getattr(self.lpm, f"D_{_key(name)}")
            setattr(self.lpm, f"D_{_key(name)}", W.to(device=D.device, dtype=D.dtype))

    # ------------------------------------------------------------------ routing bookkeeping
    def on_evaluate(self, stage: int, task_index: int) -> None:
        self._eval_cell = (stage, task_index)

    def on_evaluate_end(self, stage: int, task_index: int) -> None:
        if self.use_cpm and 0 < self.prototypes.shape[0] and task_index < self.prototypes.shape[0] and stage > 0:
            cell = self.routing.setdefault(str(stage), {}).setdefault(self.tasks[task_index].name, [0, 0])
            cell[:] = self.all_reduce_counts(cell)

    def _count_routing(self, weights: torch.Tensor) -> None:
        if self._eval_cell is None or self._eval_cell[1] >= weights.shape[1]:
            return  # a task not learned yet has no own projector
        stage, col = self._eval_cell
        cell = self.routing.setdefault(str(stage), {}).setdefault(self.tasks[col].name, [0, 0])
        cell[0] += int((weights.argmax(dim=-1) == col).sum())
        cell[1] += int(weights.shape[0])

    def report(self) -> dict[str, Any]:
        hp = self.hparams
        out: dict[str, Any] = {"merge": hp["merge"], "lora_r": hp["lora_r"], **self.timings,
                               "stat_tokens": self.stat_tokens}
        if self.use_cpm:
            acc = {s: {t: round(100.0 * h / n, 2) for t, (h, n) in cells.items() if n}
                   for s, cells in self.routing.items()}
            means = {s: round(float(np.mean(list(v.values()))), 2) for s, v in acc.items() if v}
            out.update({"cpm_tau": hp["cpm_tau"], "cpm_route_on": hp["cpm_route_on"], "projectors": len(self.projectors),
                        "routing_accuracy": acc, "routing_accuracy_mean": means,
                        # the leaderboard's task-identification column: mean over tasks at the last stage
                        "task_identification_last": means[max(means, key=int)] if means else None})
        if self.use_lpm:
            state_bytes = sum(b.numel() * b.element_size() for n, b in self.lpm.named_buffers()
                              if n.startswith(("P_", "W_")))
            out.update({"lpm_gamma": hp["lpm_gamma"], "lpm_gram_positions": hp["lpm_gram_positions"],
                        "lpm_layers": len(self.adapted),
                        "lpm_groups": len(set(self.groups.values())), "lpm_state_bytes": state_bytes})
        return out

    # ------------------------------------------------------------------ resume
    def extra_state(self) -> dict[str, Any]:
        return {**super().extra_state(), "projectors": len(self.projectors), "prototypes": int(self.prototypes.shape[0]),
                "groups": dict(self.groups), "n_merged": self.n_merged,
                "group_dims": {g: int(getattr(self.lpm, f"P_{_key(g)}").shape[0]) for g in set(self.groups.values())
                               if hasattr(self.lpm, f"P_{_key(g)}")},
                "routing": copy.deepcopy(self.routing), "timings": copy.deepcopy(self.timings),
                "stat_tokens": list(self.stat_tokens)}

    def rebuild(self, extra: dict[str, Any]) -> None:
        super().rebuild(extra)
        device = self.backbone.device
        while len(self.projectors) < extra["projectors"]:
            self.projectors.append(self._new_projector())
        for proj in self.projectors[:-1] if self.use_cpm else []:
            proj.requires_grad_(False)
        self.prototypes = torch.zeros(extra["prototypes"], self.prototypes.shape[1], device=device)
        self.groups = dict(extra["groups"])
        self.n_merged = int(extra["n_merged"])
        for group, d in extra["group_dims"].items():
            self.lpm.register_buffer(f"gamma_{_key(group)}", torch.zeros((), dtype=torch.float64, device=device))
            self.lpm.register_buffer(f"P_{_key(group)}", torch.zeros(d, d, dtype=self.lpm_dtype, device=device))
        self.routing = copy.deepcopy(extra["routing"])
        self.timings = copy.deepcopy(extra["timings"])
        self.stat_tokens = list(extra["stat_tokens"])

    def restore(self, checkpoint: dict[str, Any]) -> None:
        super().restore(checkpoint)
        self._refresh_deltas()
