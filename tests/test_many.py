"""MAny (methods/many.py): LPM's recursive merge, CPM's routing, the strategy's merge / resume on the
tiny backbone, the ablation knob, and an end-to-end run with resume."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from mcit_bench.rundir.checkpoints import load_checkpoint
from mcit_bench.cli import main
from mcit_bench.methods.many import (batch_merge, mix_projections, rls_inverse_update_gram, rls_inverse_update_x,
                                     rls_weight_update, route_weights)

from conftest import quick_args, stop_after_stage


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


# ---------------------------------------------------------------------------- LPM: recursion == closed form
def test_recursive_merge_equals_batch_closed_form_without_old_data() -> None:
    rng = np.random.default_rng(0)
    d, out, gamma = 24, 10, 0.5
    sizes = [10, 40, 7, 60, 18]  # blocks smaller and larger than d
    xs = [torch.from_numpy(rng.normal(size=(n, d)) * rng.uniform(0.5, 2.0, size=d)) for n in sizes]
    targets = [torch.from_numpy(rng.normal(size=(d, out))) for _ in sizes]  # T_t^T (in x out)
    # What the closed form needs: every task's statistics (copies taken before the recursion runs).
    grams = [x.T @ x for x in xs]
    expected = [batch_merge(grams[:t + 1], targets[:t + 1], gamma) for t in range(len(sizes))]

    P_gram = torch.eye(d, dtype=torch.float64) / gamma
    P_x = P_gram.clone()
    W_gram = torch.zeros(d, out, dtype=torch.float64)
    W_x = W_gram.clone()
    for t, (x, target) in enumerate(zip(xs, targets)):
        G = x.T @ x
        P_gram = rls_inverse_update_gram(P_gram, G)
        W_gram = rls_weight_update(P_gram, G, W_gram, target)
        P_x = rls_inverse_update_x(P_x, x)
        W_x = W_x + P_x @ x.T @ (x @ target - x @ W_x)  # the textbook form, with the data block itself
        # This task's data is destroyed after its merge: a recursion that kept (a reference to) old data
        # would turn NaN from here on.
        x.fill_(float("nan"))
        G.fill_(float("nan"))
        target.fill_(float("nan"))
        assert _rel(W_gram, expected[t]) < 1e-8 and _rel(W_x, expected[t]) < 1e-8, t
    A = gamma * torch.eye(d, dtype=torch.float64) + sum(grams)
    assert _rel(P_gram, torch.linalg.inv(A)) < 1e-8 and _rel(P_x, torch.linalg.inv(A)) < 1e-8


def test_merge_keeps_each_task_where_only_it_has_data() -> None:
    """Disjoint input subspaces: the merged update reproduces every task's own update on its data."""
    d, gamma = 8, 1e-9
    basis = torch.eye(d, dtype=torch.float64)
    P, W = torch.eye(d, dtype=torch.float64) / gamma, torch.zeros(d, 3, dtype=torch.float64)
    deltas, xs = [], []
    for t in range(3):
        x = basis[2 * t:2 * t + 2] * 3.0  # task t lives in coordinates 2t, 2t+1
        delta = torch.randn(d, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(t))
        G = x.T @ x
        P = rls_inverse_update_gram(P, G)
        W = rls_weight_update(P, G, W, delta)
        deltas.append(delta)
        xs.append(x)
    for x, delta in zip(xs, deltas):
        assert torch.allclose(x @ W, x @ delta, atol=1e-6)


# ---------------------------------------------------------------------------- CPM: routing
def test_cpm_routes_to_own_projector_and_tau_zero_is_hard_routing() -> None:
    gen = torch.Generator().manual_seed(0)
    n_tasks, dv, n_tokens, d = 5, 32, 4, 6
    prototypes = torch.randn(n_tasks, dv, generator=gen)
    owner = torch.arange(n_tasks).repeat_interleave(3)
    pooled = prototypes[owner] + 0.1 * torch.randn(len(owner), dv, generator=gen)  # inputs near each prototype
    hard = route_weights(pooled, prototypes, 0.0)
    assert torch.equal(hard.argmax(-1), owner) and torch.equal(hard.sum(-1), torch.ones(len(owner)))
    soft = route_weights(pooled, prototypes, 0.5)
    assert torch.equal(soft.argmax(-1), owner) and torch.allclose(soft.sum(-1), torch.ones(len(owner)))
    assert (soft.max(-1).values < 1).all()  # a real mixture at tau > 0
    cold = route_weights(pooled, prototypes, 1e-4)
    assert (cold - hard).abs().max() < 1e-6  # tau -> 0 reproduces hard routing
    assert (route_weights(pooled, prototypes, 1e4) - 1 / n_tasks).abs().max() < 1e-4  # tau -> inf: uniform

    torch.manual_seed(1)
    projectors = [nn.Linear(dv, d) for _ in range(n_tasks)]
    features = pooled[:, None, :].repeat(1, n_tokens, 1)
    own = torch.stack([projectors[t](features[i]) for i, t in enumerate(owner.tolist())])
    with torch.no_grad():
        assert torch.equal(mix_projections(features, projectors, hard), own)
        assert torch.allclose(mix_projections(features, projectors, cold), own, atol=1e-5)
        expected_soft = sum(soft[:, t, None, None] * projectors[t](features) for t in range(n_tasks))
        assert torch.allclose(mix_projections(features, projectors, soft), expected_soft, atol=1e-6)


# ---------------------------------------------------------------------------- the strategy on the tiny backbone
def _strategy(tiny_backbone: Path, **overrides):
    from mcit_bench.backbones.llava import Backbone
    from mcit_bench.benchmark import load_benchmark
    from mcit_bench.collate import Collator
    from mcit_bench.config import resolve_hparams
    from mcit_bench.registry import get_method, method_defaults
    from mcit_bench.strategy import RunContext

    cls = get_method("many")
    hp = resolve_hparams(method_defaults(cls), "quick", overrides, "many")
    backbone = Backbone.from_pretrained(tiny_backbone)
    bench = load_benchmark("synthetic", train_size=16, test_size=4)
    tasks = [bench.task("styles"), bench.task("count_math")]
    collate = Collator(backbone.processor, backbone.template, train=True, image_token=backbone.image_token)
    context = RunContext(bench, tasks, 0, None, collate, None)
    torch.manual_seed(0)
    strategy = cls(backbone, hp)
    strategy.setup(tasks, context)
    strategy.eval()
    return strategy, bench, tasks, collate


def _pretend_training(strategy, seed: int) -> None:
    """What a task's tuning leaves behind: non-zero LoRA B and a changed projector."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in strategy._lora_layers().values():
            module.lora_B["default"].weight.copy_(0.05 * torch.randn(module.lora_B["default"].weight.shape, generator=gen))
        for p in strategy.projectors[-1].parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))


@torch.no_grad()
def _logits(strategy, batch, training: bool) -> torch.Tensor:
    inputs = strategy.prepare_inputs(batch, training=training)
    logits = strategy.backbone.lm_forward(inputs.inputs_embeds, inputs.attention_mask)
    return logits[inputs.attention_mask.bool()]


def test_strategy_merge_state_and_resume(tiny_backbone: Path) -> None:
    strategy, bench, tasks, collate = _strategy(tiny_backbone, lpm_gamma=1e-6)
    data = [bench.train_split(t.name) for t in tasks]
    batch = collate([dict(r) for r in data[0].select(range(6))])
    untouched = _logits(strategy, batch, training=False)

    strategy.before_task(0, tasks[0], data[0])
    _pretend_training(strategy, 1)
    task_model = _logits(strategy, batch, training=True)
    assert _rel(task_model, untouched) > 1e-2  # the pretend tuning changed the function
    strategy.after_task(0, tasks[0], data[0])
    strategy.merge(0)
    layers = strategy._lora_layers()
    # q/k/v (and gate/up) read the same input: one Gram matrix / inverse Gram for them
    q = next(n for n in layers if n.endswith("layers.0.self_attn.q_proj"))
    assert strategy.groups[q.replace("q_proj", "k_proj")] == q == strategy.groups[q.replace("q_proj", "v_proj")]
    assert strategy.groups[q.replace("q_proj", "o_proj")] != q
    assert len(set(strategy.groups.values())) == 4 * strategy.backbone.model.config.text_config.num_hidden_layers
    # the LoRA is absorbed into the merged update; a single task's merge keeps its function on its data
    assert all(float(m.lora_B["default"].weight.abs().max()) == 0 for m in layers.values())
    merged_model = _logits(strategy, batch, training=False)
    assert _rel(merged_model, task_model) < 1e-3
    # no statistics of the finished task are kept: only P (inverse Gram), gamma, W and its cast D
    assert {n.split("_")[0] for n, _ in strategy.lpm.named_buffers()} == {"P", "gamma", "W", "D"}

    strategy.before_task(1, tasks[1], data[1])  # fresh LoRA (B = 0), new projector, merged delta frozen on top
    assert all(float(m.lora_B["default"].weight.abs().max()) == 0 for m in layers.values())
    assert len(strategy.projectors) == 2 and not any(p.requires_grad for p in strategy.projectors[0].parameters())
    _pretend_training(strategy, 2)
    strategy.after_task(1, tasks[1], data[1])
    strategy.merge(1)
    assert strategy.prototypes.shape[0] == 2
    ckpt = strategy.checkpoint()
    before = _logits(strategy, batch, training=False)

    fresh, *_ = _strategy(tiny_backbone, lpm_gamma=1e-6)
    assert not torch.equal(_logits(fresh, batch, training=False), before)
    fresh.restore(ckpt)
    assert len(fresh.projectors) == 2 and fresh.groups == strategy.groups and fresh.n_merged == 2
    assert torch.equal(_logits(fresh, batch, training=False), before)


def test_ablation_modes(tiny_backbone: Path) -> None:
    # LPM off (merge=cpm): one LoRA carried over like lora-ft, per-task projectors, no merged update
    cpm, bench, tasks, _ = _strategy(tiny_backbone, merge="cpm")
    data = [bench.train_split(t.name) for t in tasks]
    cpm.before_task(0, tasks[0], data[0])
    _pretend_training(cpm, 1)
    carried = {n: m.lora_B["default"].weight.clone() for n, m in cpm._lora_layers().items()}
    cpm.after_task(0, tasks[0], data[0])
    cpm.merge(0)
    cpm.before_task(1, tasks[1], data[1])
    assert all(torch.equal(m.lora_B["default"].weight, carried[n]) for n, m in cpm._lora_layers().items())
    assert len(cpm.projectors) == 2 and not list(cpm.lpm.buffers()) and cpm.prototypes.shape[0] == 1
    # CPM off (merge=lpm): one shared projector trained sequentially, fresh LoRA + merged update per task
    lpm, *_ = _strategy(tiny_backbone, merge="lpm")
    lpm.before_task(0, tasks[0], data[0])
    _pretend_training(lpm, 1)
    shared = lpm.projectors[0]
    lpm.after_task(0, tasks[0], data[0])
    lpm.merge(0)
    lpm.before_task(1, tasks[1], data[1])
    assert len(lpm.projectors) == 1 and lpm.projectors[0] is shared
    assert all(p.requires_grad for p in shared.parameters()) and lpm.prototypes.shape[0] == 0
    assert lpm.n_merged == 1


def test_bad_knob_is_a_one_line_error_before_anything_is_written(tmp_path: Path, capsys) -> None:
    assert main(quick_args(tmp_path, "many", "1", "--set", "merge=everything")) == 2
    assert "merge='everything'" in capsys.readouterr().err and not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------- end to end (quick preset)
def test_quick_run_and_resume(tmp_path: Path, tiny_backbone: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert main(quick_args(full, "many", "1", "--eval", "lower")) == 0
    summary = json.loads((full / "run" / "summary.json").read_text())
    report = summary["strategy"]
    assert summary["complete"] and report["projectors"] == 6 and len(report["merge_seconds"]) == 6
    assert set(report["routing_accuracy"]) == {str(s) for s in range(1, 7)}
    stop_after_stage(monkeypatch, 2)
    with pytest.raises(SystemExit):
        main(quick_args(cut, "many", "1", "--eval", "lower"))
    stop_after_stage(monkeypatch, None)
    assert main(quick_args(cut, "many", "1", "--eval", "lower", "--resume")) == 0
    assert (cut / "run" / "accuracy.csv").read_text() == (full / "run" / "accuracy.csv").read_text()
    a = load_checkpoint(full / "run", 6)["tensors"]
    b = load_checkpoint(cut / "run", 6)["tensors"]
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


def _solid(rgb: tuple[int, int, int], shade: int):
    from PIL import Image

    return Image.new("RGB", (64, 64), tuple(max(0, min(255, c + shade)) for c in rgb))


@pytest.mark.parametrize("route_on", ["vision", "clip_image", "text", "image_text"])
def test_routing_is_perfect_on_separable_tasks_for_every_routing_feature(tiny_backbone: Path, route_on: str) -> None:
    """Two constructed tasks that differ in image AND instruction: CPM must route every test sample home."""
    strategy, bench, tasks, collate = _strategy(tiny_backbone, merge="cpm", cpm_route_on=route_on, cpm_tau=0.0)
    looks = {0: ((220, 30, 30), "Name the colour of this picture."),
             1: ((30, 30, 220), "How many stripes are drawn here? Count them carefully please.")}

    def records(task: int, split: str) -> list[dict]:
        rgb, prompt = looks[task]
        return [{"uid": f"t{task}/{split}/{i}", "image": _solid(rgb, 7 * i - 20), "prompt": prompt, "target": "x",
                 "references": [], "choices": []} for i in range(6)]

    for t in (0, 1):
        strategy.before_task(t, tasks[t], None)
        strategy.after_task(t, tasks[t], records(t, "train"))
        strategy.merge(t)
    assert strategy.prototypes.shape == (2, strategy._route_dim())
    evaluate = type(collate)(collate.processor, collate.template, train=False, image_token=collate.image_token)
    for t in (0, 1):
        strategy.on_evaluate(2, t)
        strategy.prepare_inputs(evaluate(records(t, "test")), training=False)
    assert strategy.report()["routing_accuracy"]["2"] == {tasks[0].name: 100.0, tasks[1].name: 100.0}
    assert strategy.report()["task_identification_last"] == 100.0


@pytest.mark.parametrize("positions", ["all", "instruction_answer", "answer"])
def test_gram_positions_select_the_named_tokens(tiny_backbone: Path, positions: str) -> None:
    strategy, bench, tasks, collate = _strategy(tiny_backbone, lpm_gram_positions=positions)
    batch = collate([bench.train_split("styles")[i] for i in range(3)])
    mask = strategy.gram_positions(batch)
    real = batch["attention_mask"].bool()
    image = batch["input_ids"] == strategy.backbone.image_token_id
    answer = batch["labels"] != -100
    assert not (mask & ~real).any()
    if positions == "all":
        assert torch.equal(mask, real)
    elif positions == "answer":
        assert torch.equal(mask, answer)
    else:  # after the image tokens: no visual token, no BOS, every answer token
        assert not (mask & image).any() and torch.equal(mask & answer, answer)
        last_image = image.long().cumsum(1).argmax(1)
        for row in range(mask.shape[0]):
            assert mask[row, last_image[row] + 1:].all() and not mask[row, :last_image[row] + 1].any()


# ---------------------------------------------------------------------------- merge memory: float32, streaming
@pytest.mark.parametrize("dtype,tolerance", [(torch.float64, 1e-8), (torch.float32, 1e-5)])
def test_recursive_merge_equals_batch_optimum_per_dtype(dtype: torch.dtype, tolerance: float) -> None:
    """State stored in ``lpm_dtype``, each update computed in float64 (as many.py does), against the float64
    closed form: 1e-8 stored in float64, 1e-5 stored in float32 (the update is computed in float64: done in
    float32 its cancellation loses ~1e-3 here)."""
    rng = np.random.default_rng(1)
    d, out, gamma = 48, 12, 0.5
    xs = [torch.from_numpy(rng.normal(size=(n, d)) * rng.uniform(0.5, 2.0, size=d)) for n in (30, 80, 12, 64)]
    targets = [torch.from_numpy(rng.normal(size=(d, out))) for _ in xs]
    grams = [x.T @ x for x in xs]
    P = torch.eye(d, dtype=dtype) / gamma
    W = torch.zeros(d, out, dtype=dtype)
    for t, (G, target) in enumerate(zip(grams, targets)):
        G_stored = G.to(dtype).double()  # the Gram is collected in lpm_dtype
        P_new = rls_inverse_update_gram(P.double(), G_stored)
        W = rls_weight_update(P_new, G_stored, W.double(), target).to(dtype)
        P = P_new.to(dtype)
        expected = batch_merge(grams[:t + 1], targets[:t + 1], gamma)
        assert _rel(W.double(), expected) < tolerance, (t, _rel(W.double(), expected))


def test_merge_streamed_by_layer_groups_equals_one_pass(tiny_backbone: Path) -> None:
    states, logits = [], []
    # 4 groups per LLaMA layer: 3 per pass leaves an uneven last pass; then the same in float32
    for per_pass, dtype in ((0, "float64"), (3, "float64"), (3, "float32")):
        strategy, bench, tasks, collate = _strategy(tiny_backbone, lpm_groups_per_pass=per_pass,  # default gamma
                                                    lpm_dtype=dtype)
        data = [bench.train_split(t.name) for t in tasks]
        batch = collate([dict(r) for r in data[0].select(range(6))])
        for t in range(2):
            strategy.before_task(t, tasks[t], data[t])
            _pretend_training(strategy, t + 1)
            strategy.after_task(t, tasks[t], data[t])
            strategy.merge(t)
        states.append({k: v for k, v in strategy.checkpoint()["tensors"].items() if k.startswith("lpm.")})
        logits.append(_logits(strategy, batch, training=False))
    assert states[0].keys() == states[1].keys() and any(k.startswith("lpm.P_") for k in states[0])
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert torch.equal(logits[0], logits[1])
    assert all(states[2][k].dtype == torch.float32 for k in states[2] if k.startswith(("lpm.P_", "lpm.W_")))
    worst = max(_rel(states[2][k].double(), states[0][k].double()) for k in states[0] if k.startswith(("lpm.P_", "lpm.W_")))
    # measured 2.8e-4: the float32 Grams carry their round-off through the ridge solve (conditioned by gamma)
    assert worst < 1e-3, worst
