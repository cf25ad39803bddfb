"""fwd-prompt: GPM rank rule, prompt selection, projected updates (the actual parameter change, through
the real optimiser and the Lightning loop), resume state, pre-training data, end-to-end run."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mcit_bench.methods import fwd_prompt_subspace as subspace
from mcit_bench.rundir.checkpoints import load_checkpoint
from mcit_bench.cli import main
from mcit_bench.config import resolve_hparams
from mcit_bench.errors import UserError
from mcit_bench.matrix_io import read_matrix_csv
from mcit_bench.registry import get_method, method_defaults
from mcit_bench.strategy import RunContext

from conftest import quick_args, stop_after_stage

FwdPrompt = get_method("fwd_prompt")


# ---------------------------------------------------------------- pure subspace maths
def _known_spectrum(d: int = 16, n: int = 40, energies=(50.0, 30.0, 10.0, 5.0, 3.0, 2.0), seed: int = 0):
    """X = A diag(s) B^T with orthonormal A, B and s^2 = energies (total 100): returns (X, A)."""
    g = torch.Generator().manual_seed(seed)
    A = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64)).Q
    B = torch.linalg.qr(torch.randn(n, len(energies), generator=g, dtype=torch.float64)).Q
    s = torch.tensor(energies, dtype=torch.float64).sqrt()
    return A[:, :len(energies)] @ torch.diag(s) @ B.T, A


def _same_span(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and torch.allclose(a @ a.T, b @ b.T, atol=1e-8)


@pytest.mark.parametrize("threshold,k", [(0.49, 1), (0.5, 1), (0.51, 2), (0.8, 2), (0.81, 3), (0.9, 3),
                                         (0.91, 4), (0.98, 5), (0.981, 6), (1.0, 6)])
def test_gpm_rule_picks_smallest_k_reaching_threshold(threshold: float, k: int) -> None:
    X, A = _known_spectrum()
    ext = subspace.gpm_extend(subspace.gram(X.T), subspace.empty_basis(16), threshold)
    assert ext.k == k
    assert _same_span(ext.basis, A[:, :k])  # the k leading left singular vectors
    assert subspace.energy_rank(subspace.gram(X.T), threshold) == k


def test_gpm_rule_counts_what_memory_covers() -> None:
    X, A = _known_spectrum()
    G = subspace.gram(X.T)
    ext = subspace.gpm_extend(G, A[:, :1], 0.9)  # memory holds the 50% direction: 40% more needed
    assert ext.k == 2 and _same_span(ext.basis, A[:, 1:3])
    assert ext.covered_before == pytest.approx(0.5) and ext.covered_after == pytest.approx(0.9)
    assert torch.allclose(A[:, :1].T @ ext.basis, torch.zeros(1, 2, dtype=torch.float64), atol=1e-10)
    assert subspace.gpm_extend(G, A[:, :3], 0.9).k == 0  # already covered: nothing added
    assert subspace.numerical_rank(G) == 6


def test_intersection_basis_is_inside_one_and_orthogonal_to_other() -> None:
    g = torch.Generator().manual_seed(1)
    U = torch.linalg.qr(torch.randn(32, 6, generator=g, dtype=torch.float64)).Q
    P = torch.linalg.qr(torch.randn(32, 10, generator=g, dtype=torch.float64)).Q
    W = subspace.intersection_basis(P, U)
    assert W.shape == (32, 4)  # generic: 10 - 6
    assert torch.allclose(W.T @ W, torch.eye(4, dtype=torch.float64), atol=1e-10)
    assert (U.T @ W).abs().max() < 1e-10 and torch.allclose(P @ P.T @ W, W, atol=1e-10)


def test_sequential_compose_is_the_literal_formula() -> None:
    from mcit_bench.methods.fwd_prompt import projection_maps

    g = torch.Generator().manual_seed(2)
    U = torch.linalg.qr(torch.randn(12, 3, generator=g, dtype=torch.float64)).Q
    P = torch.linalg.qr(torch.randn(12, 5, generator=g, dtype=torch.float64)).Q
    grad = torch.randn(4, 12, generator=g, dtype=torch.float64)
    res = grad - grad @ U @ U.T
    seq, _ = projection_maps(U, P, "residual+pretrained", "project", compose="sequential")
    assert torch.allclose(grad @ seq, res @ P @ P.T)
    add, _ = projection_maps(U, P, "residual+pretrained", "additive", beta=0.5, compose="sequential")
    assert torch.allclose(grad @ add, res + 0.5 * res @ P @ P.T)
    residual, _ = projection_maps(U, P, "residual")
    assert torch.allclose(grad @ residual, res)
    assert projection_maps(U, P, "none") == (None, None)


def test_select_top_on_constructed_keys() -> None:
    from mcit_bench.methods.fwd_prompt import select_top

    keys = torch.eye(8)  # key i = e_i
    query = torch.zeros(2, 8)
    query[0, [4, 1, 7]] = torch.tensor([3.0, 2.0, 1.0])
    query[1, [0, 5, 6]] = torch.tensor([1.0, 5.0, 4.0])
    idx, sim = select_top(query, keys, 2)
    assert idx.tolist() == [[1, 4], [5, 6]]  # top-2 by cosine, in pool-index order
    assert select_top(query, keys, 3)[0].tolist() == [[1, 4, 7], [0, 5, 6]]
    assert sim[0, 4] == pytest.approx(3 / 14 ** 0.5)


# ---------------------------------------------------------------- on the tiny backbone
@pytest.fixture(scope="module")
def backbone(tiny_backbone: Path):
    from mcit_bench.backbones.llava import Backbone

    return Backbone.from_pretrained(tiny_backbone)


@pytest.fixture(scope="module")
def data():
    from mcit_bench.benchmark import load_benchmark

    bench = load_benchmark("synthetic", train_size=16, test_size=4)
    return bench, [bench.train_split("styles")[i] for i in range(4)] + [bench.train_split("chart")[i] for i in range(4)]


def _strategy(backbone, **overrides) -> "FwdPrompt":
    """Unit tests pin compose=exact (the strict composition); the default's own test says otherwise."""
    torch.manual_seed(0)
    overrides = {"compose": "exact", **overrides}
    hp = resolve_hparams(method_defaults(FwdPrompt), "quick", overrides, "fwd-prompt")
    return FwdPrompt(backbone, hp)


def _batch(backbone, records):
    from mcit_bench.collate import Collator

    return Collator(backbone.processor, backbone.template, train=True, image_token=backbone.image_token)(records)


def _random_spaces(d: int, k_mem: int = 8, k_pre: int = 40):
    g = torch.Generator().manual_seed(3)
    U = torch.linalg.qr(torch.randn(d, k_mem, generator=g, dtype=torch.float64)).Q
    P = torch.linalg.qr(torch.randn(d, k_pre, generator=g, dtype=torch.float64)).Q
    return U, P


def _steps(strategy, batch, optimizer=torch.optim.AdamW, steps: int = 2) -> torch.Tensor:
    """The actual change of the prompt pool over ``steps`` optimiser steps, as rows [M * n_p, d]."""
    opt = optimizer([strategy.prompts, strategy.keys], lr=0.05)
    before = strategy.prompts.detach().clone()
    for _ in range(steps):
        opt.zero_grad()
        sum(strategy.train_step(batch).values()).backward()
        strategy.before_optimizer_step()
        opt.step()
        strategy.after_optimizer_step()
    return (strategy.prompts.detach() - before).reshape(-1, strategy.prompts.shape[-1]).double()


def _rel(part: torch.Tensor, whole: torch.Tensor) -> float:
    return float(part.norm() / whole.norm())


def test_default_update_avoids_memory_and_stays_in_pretrained_space(backbone, data) -> None:
    strategy = _strategy(backbone)
    U, P = _random_spaces(backbone.hidden_size)
    strategy.set_subspaces(U, P)
    delta = _steps(strategy, _batch(backbone, data[1]))
    assert delta.norm() > 1e-3  # the prompts did learn
    assert _rel(delta @ U, delta) < 1e-5  # no component in the old tasks' memory
    assert _rel(delta - delta @ P @ P.T, delta) < 1e-5  # inside span(U_pre)
    assert strategy.free_dims() == 40 - 8


@pytest.mark.parametrize("overrides", [
    {"projection": "none"},
    {"project_update": False},  # AdamW's per-coordinate scaling leaves the subspace
])
def test_controls_without_projection_leak_into_memory(backbone, data, overrides) -> None:
    strategy = _strategy(backbone, **overrides)
    U, P = _random_spaces(backbone.hidden_size)
    strategy.set_subspaces(U, P)
    delta = _steps(strategy, _batch(backbone, data[1]))
    assert _rel(delta @ U, delta) > 1e-2


def test_projected_gradient_alone_suffices_with_sgd(backbone, data) -> None:
    strategy = _strategy(backbone, project_update=False)
    U, P = _random_spaces(backbone.hidden_size)
    strategy.set_subspaces(U, P)
    delta = _steps(strategy, _batch(backbone, data[1]), optimizer=torch.optim.SGD)
    assert delta.norm() > 0 and _rel(delta @ U, delta) < 1e-5 and _rel(delta - delta @ P @ P.T, delta) < 1e-5


@pytest.mark.parametrize("overrides", [{"projection": "residual"},
                                       {"forward_mode": "additive", "beta": 2.0}])
def test_residual_and_additive_modes_avoid_memory_only(backbone, data, overrides) -> None:
    strategy = _strategy(backbone, **overrides)
    U, P = _random_spaces(backbone.hidden_size)
    strategy.set_subspaces(U, P)
    delta = _steps(strategy, _batch(backbone, data[1]))
    assert _rel(delta @ U, delta) < 1e-5
    assert _rel(delta - delta @ P @ P.T, delta) > 1e-2  # not confined to span(U_pre)


def test_projection_holds_through_the_lightning_loop(backbone, data) -> None:
    """The runner's own path: ContinualModule, AdamW from configure_optimizers, gradient clipping."""
    import lightning as L
    from torch.utils.data import DataLoader

    from mcit_bench.collate import Collator
    from mcit_bench.engine.lightning_module import ContinualModule

    strategy = _strategy(backbone)
    U, P = _random_spaces(backbone.hidden_size)
    strategy.set_subspaces(U, P)
    collate = Collator(backbone.processor, backbone.template, train=True, image_token=backbone.image_token)
    loader = DataLoader(data[1], batch_size=4, collate_fn=collate)
    before = strategy.prompts.detach().clone()
    trainer = L.Trainer(max_steps=2, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        gradient_clip_val=1.0)
    trainer.fit(ContinualModule(strategy, strategy.hparams, total_steps=2), loader)
    delta = (strategy.prompts.detach() - before).reshape(-1, backbone.hidden_size).double()
    assert delta.norm() > 0
    assert _rel(delta @ U, delta) < 1e-5 and _rel(delta - delta @ P @ P.T, delta) < 1e-5


def test_selected_prompts_are_the_ones_inserted(backbone, data) -> None:
    strategy = _strategy(backbone, top_n=1)
    batch = _batch(backbone, [data[1][0], data[1][4]])  # one styles and one chart sample
    q = strategy.query(batch)
    with torch.no_grad():
        strategy.keys[2] = q[0]
        strategy.keys[7] = q[1]
    inputs = strategy.prepare_inputs(batch, training=False)
    assert inputs.extras["selected"].tolist() == [[2], [7]]
    n_p = strategy.hparams["prompt_length"]
    starts = (batch["attention_mask"] == 0).sum(1) + 1  # after BOS
    for row, expected in enumerate((2, 7)):
        inserted = inputs.inputs_embeds[row, starts[row]:starts[row] + n_p]
        assert torch.equal(inserted, strategy.prompts[expected].detach())
    assert inputs.inputs_embeds.shape[1] == batch["input_ids"].shape[1] + n_p


def test_checkpoint_restores_grown_subspaces(backbone) -> None:
    a = _strategy(backbone)
    U, P = _random_spaces(backbone.hidden_size, 7, 5)
    a.set_subspaces(U, P)
    with torch.no_grad():
        a.prompts.add_(1.0)
    a.task_records.append({"task": "styles", "memory_rank": 7, "free_dims_during_task": 5})
    a.core_bases.append(U)
    ck = a.checkpoint()
    assert {"prompts", "keys", "memory", "pretrained_basis"} <= set(ck["tensors"])
    b = _strategy(backbone)
    assert b.memory.shape[1] == 0
    b.restore(ck)
    assert torch.equal(b.memory, a.memory) and torch.equal(b.pretrained_basis, a.pretrained_basis)
    assert torch.equal(b.prompts, a.prompts) and torch.equal(b.keys, a.keys)
    assert b.pretrained_ready and b.task_records == a.task_records and torch.equal(b.core_bases[0], U)
    assert b.free_dims() == a.free_dims()


def test_pretrained_space_from_a_jsonl_file_and_first_task_fallback(backbone, data, tmp_path: Path) -> None:
    bench, records = data
    lines = []
    for i, record in enumerate(records[:3]):
        record["image"].save(tmp_path / f"img{i}.png")
        lines.append(json.dumps({"image": f"img{i}.png", "prompt": record["prompt"], "target": record["target"]}))
    (tmp_path / "pre.jsonl").write_text("\n".join(lines) + "\n")
    from mcit_bench.collate import Collator

    context = RunContext(bench, [bench.task("styles")], 0, None,
                         Collator(backbone.processor, backbone.template, train=True, image_token=backbone.image_token))
    strategy = _strategy(backbone, pretrain_data=str(tmp_path / "pre.jsonl"), threshold_pre=0.9)
    strategy.setup(context.tasks, context)
    strategy.before_task(0, bench.task("styles"), records)
    assert strategy.pretrained_info["source"].startswith("jsonl:") and strategy.pretrained_info["samples"] == 3
    k = strategy.pretrained_basis.shape[1]
    assert 0 < k < backbone.hidden_size
    assert torch.allclose(strategy.pretrained_basis.T @ strategy.pretrained_basis,
                          torch.eye(k, dtype=torch.float64), atol=1e-8)
    fallback = _strategy(backbone, pretrain_data="first_task")
    fallback.setup(context.tasks, context)
    fallback.before_task(0, bench.task("styles"), records)
    assert fallback.pretrain_source == "first_task:styles"
    (tmp_path / "bad.jsonl").write_text(json.dumps({"image": "img0.png", "prompt": "x"}) + "\n")
    bad = _strategy(backbone, pretrain_data=str(tmp_path / "bad.jsonl"))
    bad.setup(context.tasks, context)
    with pytest.raises(UserError, match=r"bad.jsonl:1: field 'target'"):
        bad.before_task(0, bench.task("styles"), records)


def test_bad_knob_is_a_one_line_error_before_anything_is_written(tmp_path: Path, capsys) -> None:
    assert main(quick_args(tmp_path, "fwd-prompt", "1", "--set", "projection=pretrained")) == 2
    err = capsys.readouterr().err
    assert "projection" in err and "residual+pretrained" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- end to end
def test_quick_run_reports_analysis_and_resumes_identically(tmp_path: Path, tiny_backbone: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    fast = ("--set", "subspace_samples=16", "--set", "pretrain_samples=32", "--eval", "lower")
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert main(quick_args(full, "fwd_prompt", "1", *fast)) == 0
    run = full / "run"
    summary = json.loads((run / "summary.json").read_text())
    cfg = summary["strategy"]
    assert summary["trainable_parameters"] == 20 * 5 * 128 + 20 * (64 + 128)  # pool + keys only
    assert cfg["projection"] == "residual+pretrained" and cfg["pretrain_source"].startswith("benchmark:synthetic")
    ranks = cfg["memory_rank_after_task"]
    assert len(ranks) == 6 and ranks == sorted(ranks) and ranks[0] > 0
    analysis = json.loads((run / "fwd_prompt_analysis.json").read_text())
    assert [t["task"] for t in analysis["tasks"]] == summary["tasks"]
    overlap = np.array(analysis["core_overlap"])
    assert overlap.shape == (6, 6) and np.allclose(np.diag(overlap), 1.0) and np.allclose(overlap, overlap.T)
    assert analysis["pretrained"]["energy_rank"] == cfg["pretrained_rank"] > 0

    stop_after_stage(monkeypatch, 2)
    with pytest.raises(SystemExit):
        main(quick_args(cut, "fwd_prompt", "1", *fast))
    stop_after_stage(monkeypatch, None)
    assert main(quick_args(cut, "fwd_prompt", "1", *fast, "--resume")) == 0
    assert (cut / "run" / "accuracy.csv").read_text() == (run / "accuracy.csv").read_text()
    a, b = load_checkpoint(run, 6), load_checkpoint(cut / "run", 6)
    assert set(a["tensors"]) == set(b["tensors"]) and all(a["tensors"][k].equal(b["tensors"][k]) for k in a["tensors"])
    assert a["extra"]["task_records"] == b["extra"]["task_records"]
    # extra_state's tensors (U_core of each task) travel in the safetensors file and come back as tensors
    assert len(a["extra"]["core_bases"]) == 6 and all(x.equal(y) for x, y in zip(a["extra"]["core_bases"],
                                                                                b["extra"]["core_bases"]))
    R, _ = read_matrix_csv(run / "accuracy.csv")
    assert not np.isnan(R[np.tril_indices(7, -1)]).any()


# ---------------------------------------------------------------- the paper's task-1 rule and room to learn
def test_first_task_trains_unprojected(backbone, data) -> None:
    """The paper: "When adapting to task 1, we train the prompt pool without gradient projection"."""
    batch = _batch(backbone, data[1])
    U, P = _random_spaces(backbone.hidden_size)
    first = _strategy(backbone)
    first.set_subspaces(U, P)
    first.current_task = 0  # the runner's before_task(0, ...) sets it
    free = _strategy(backbone, projection="none")
    free.current_task = 0
    d_first, d_free = _steps(first, batch), _steps(free, batch)
    assert torch.allclose(d_first, d_free, atol=1e-7) and d_first.norm() > 1e-3
    assert _rel(d_first - d_first @ P @ P.T, d_first) > 1e-2  # not confined to span(U_pre)
    old_rule = _strategy(backbone, project_first_task=True)  # the earlier port's behaviour, kept as a knob
    old_rule.set_subspaces(U, P)
    old_rule.current_task = 0
    d_old = _steps(old_rule, batch)
    assert _rel(d_old - d_old @ P @ P.T, d_old) < 1e-5
    second = _strategy(backbone)  # any later task is projected
    second.set_subspaces(U, P)
    second.current_task = 1
    d_second = _steps(second, batch)
    assert _rel(d_second @ U, d_second) < 1e-5


def test_free_space_warning_fires_once_and_is_recorded(backbone, capsys) -> None:
    strategy = _strategy(backbone)
    U, _ = _random_spaces(backbone.hidden_size)
    strategy.set_subspaces(U, U)  # memory covers all of U_pre: 0 free dimensions
    strategy.current_task = 1
    strategy._check_free_space(1, "chart")
    strategy.current_task = 2
    strategy._check_free_space(2, "icons")
    out = capsys.readouterr().out
    assert out.count("fwd-prompt: warning") == 1 and "0 dimension(s)" in out and "frozen" in out
    warnings = strategy.report()["free_space_warnings"]
    assert [(w["task"], w["free_dims"]) for w in warnings] == [("chart", 0), ("icons", 0)]
    roomy = _strategy(backbone)
    roomy.set_subspaces(*_random_spaces(backbone.hidden_size))  # 32 free dims >= prompt_length
    roomy.current_task = 1
    roomy._check_free_space(1, "chart")
    assert roomy.report()["free_space_warnings"] == [] and "warning" not in capsys.readouterr().out


def test_random_subspace_control_has_the_default_dimension(backbone, data) -> None:
    U, P = _random_spaces(backbone.hidden_size)
    strategy = _strategy(backbone, projection="random")
    strategy.set_subspaces(U, P)
    strategy.current_task = 1
    delta = _steps(strategy, _batch(backbone, data[1]))
    assert strategy.free_dims() == 40 - 8  # the default's free space: span(U_pre) minus memory
    _, proj = strategy._projection()
    assert torch.allclose(delta @ proj.double(), delta, atol=1e-6)  # confined to the random subspace
    assert _rel(delta @ U, delta) > 1e-2  # which is not the default's (it overlaps the memory)


@pytest.mark.parametrize("rows", ["text", "all", "normalized"])
def test_subspace_rows_choose_the_rows_of_the_svd(backbone, data, rows) -> None:
    from mcit_bench.collate import Collator

    bench, records = data
    strategy = _strategy(backbone, subspace_rows=rows)
    strategy.context = RunContext(bench, [], 0, None, Collator(backbone.processor, backbone.template, train=True,
                                                             image_token=backbone.image_token), None)
    G, samples, tokens = strategy.embedding_gram(records, n=len(records), seed=0)
    batch = _batch(backbone, records)
    with torch.no_grad():
        embeds = strategy.backbone.embed(batch["input_ids"], strategy.backbone.visual_tokens(batch))
    mask = batch["attention_mask"].bool()
    is_image = batch["input_ids"] == backbone.image_token_id
    expected = embeds[mask & ~is_image] if rows == "text" else embeds[mask]
    if rows == "normalized":
        expected = expected / expected.norm(dim=-1, keepdim=True)
    assert tokens == expected.shape[0] and samples == len(records)
    assert torch.allclose(G, subspace.gram(expected), rtol=1e-6, atol=1e-6)


def test_pool_use_reports_collapse() -> None:
    from mcit_bench.methods.fwd_prompt import pool_use

    same = pool_use({"a": [50, 0, 50, 50, 0], "b": [40, 0, 40, 40, 1]}, {"a": [10, 0, 10, 10, 0]}, top_n=3)
    assert same["trained"] == {"a": [0, 2, 3], "b": [0, 2, 3]} and same["collapsed"] and same["distinct_trained"] == 3
    apart = pool_use({"a": [50, 50, 50, 0, 0], "b": [0, 0, 50, 50, 50]}, {}, top_n=3)
    assert not apart["collapsed"] and apart["distinct_trained"] == 5
    # b's test samples picked entries 2, 3, 4 (its own) 30 times and entry 0 (a's alone) 10 times
    picked = pool_use({"a": [50, 50, 50, 0, 0], "b": [0, 0, 50, 50, 50]}, {"b": [10, 0, 10, 10, 10]}, top_n=3)
    assert picked["own_selection_pct"] == {"b": 75.0}


def test_default_is_the_literal_formula_and_keeps_room(backbone, data) -> None:
    """Default compose=sequential: g_fwd = (g - g U U^T) U_pre U_pre^T, the spec's formula. The update stays
    in span(U_pre) and may move in all of it (the exact composition's span(U_pre) minus memory emptied
    from the third task on: docs/records/r5/ablations/fwd_prompt_free_space.md)."""
    assert method_defaults(FwdPrompt)["compose"] == "sequential"
    strategy = _strategy(backbone, compose="sequential")
    U, P = _random_spaces(backbone.hidden_size)
    strategy.set_subspaces(U, P)
    strategy.current_task = 1
    delta = _steps(strategy, _batch(backbone, data[1]))
    assert delta.norm() > 1e-3 and _rel(delta - delta @ P @ P.T, delta) < 1e-5
    assert strategy.free_dims() == 40


def test_diversified_selection_ranks_unused_entries_first() -> None:
    from mcit_bench.methods.fwd_prompt import select_diversified, select_top

    keys = torch.eye(6)
    query = torch.tensor([[5.0, 4.0, 3.0, 2.0, 1.0, 0.5]])  # cosine order: 0, 1, 2, 3, 4, 5
    assert select_top(query, keys, 2)[0].tolist() == [[0, 1]]
    used = torch.tensor([10.0, 10.0, 0.0, 0.0, 0.0, 0.0])  # an earlier task trained 0 and 1
    idx, sim = select_diversified(query, keys, 2, used)
    assert idx.tolist() == [[2, 3]]  # the unused entries, best cosine first
    assert torch.equal(sim, select_top(query, keys, 2)[1])  # the key loss sees the plain cosines
    # every entry used: the frequency-weighted distance decides (entry 0 used least wins despite rank)
    idx, _ = select_diversified(query, keys, 1, torch.tensor([1.0, 50.0, 50.0, 50.0, 50.0, 50.0]))
    assert idx.tolist() == [[0]]


@pytest.mark.parametrize("diversify", [True, False])
def test_training_selection_avoids_earlier_tasks_entries(backbone, data, diversify: bool) -> None:
    from types import SimpleNamespace

    strategy = _strategy(backbone, top_n=1, diversify_selection=diversify)
    strategy.tasks = [SimpleNamespace(name="styles"), SimpleNamespace(name="chart")]
    batch = _batch(backbone, [data[1][4]])
    with torch.no_grad():
        strategy.keys[3] = strategy.query(batch)[0]  # entry 3 is the best match by cosine
    strategy.current_task = 1
    strategy.train_usage = {"styles": [8 if i == 3 else 0 for i in range(strategy.hparams["pool_size"])]}
    trained = strategy.prepare_inputs(batch, training=True).extras["selected"].item()
    assert (trained != 3) if diversify else (trained == 3)
    assert strategy.prepare_inputs(batch, training=False).extras["selected"].item() == 3  # inference: cosine


def test_effective_dims_count_what_survives_the_residual_step(backbone, capsys) -> None:
    """Sequential composition: U_pre = span(e_0..e_9), memory = span(e_0..e_7): the update projector has 10
    dimensions but only e_8, e_9 of the gradient survive, so the warning fires on the effective count."""
    strategy = _strategy(backbone, compose="sequential", prompt_length=5)
    eye = torch.eye(backbone.hidden_size, dtype=torch.float64)
    strategy.set_subspaces(eye[:, :8], eye[:, :10])
    strategy.current_task = 1
    assert strategy.free_dims() == 10 and strategy.effective_dims() == pytest.approx(2.0)
    strategy._check_free_space(1, "chart")
    assert "2 effective" in capsys.readouterr().out
    assert strategy.report()["free_space_warnings"] == [
        {"task": "chart", "index": 1, "free_dims": 10, "effective_dims": 2.0, "prompt_length": 5}]
    exact = _strategy(backbone, compose="exact")
    exact.set_subspaces(eye[:, :8], eye[:, :10])
    exact.current_task = 1
    assert exact.free_dims() == 2 and exact.effective_dims() == pytest.approx(2.0)  # a projector: equal
