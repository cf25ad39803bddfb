"""ModalPrompt: the behaviours other ports got wrong, selection rules, resume, and an end-to-end run."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mcit_bench.cli import main
from mcit_bench.matrix_io import read_matrix_csv
from mcit_bench.registry import get_method, method_defaults

from conftest import quick_args, stop_after_stage

L = 4  # prompt length used in the unit tests (small: fast)


@pytest.fixture(scope="module")
def bench():
    from mcit_bench.benchmark import load_benchmark

    return load_benchmark("synthetic", train_size=8, test_size=4)


def make_strategy(tiny_backbone: Path, bench, **overrides):
    from mcit_bench.backbones.llava import Backbone
    from mcit_bench.config import TRAIN_DEFAULTS
    from mcit_bench.strategy import RunContext

    cls = get_method("modalprompt")
    hp = {**TRAIN_DEFAULTS, **method_defaults(cls), "prompt_length": L, **overrides}
    strategy = cls(Backbone.from_pretrained(tiny_backbone), hp)
    tasks = [bench.task(n) for n in bench.task_names]
    strategy.setup(tasks, RunContext(bench, tasks, 0))
    return strategy


def make_batch(strategy, records, train: bool):
    from mcit_bench.collate import Collator

    bb = strategy.backbone
    return Collator(bb.processor, bb.template, train=train, image_token=bb.image_token)(records)


def records_of(bench, task: str, n: int, split: str = "train") -> list[dict]:
    data = bench.train_split(task) if split == "train" else bench.test_split(task)
    return [data[i] for i in range(n)]


def grow(strategy, n: int) -> None:
    for t in range(n):
        strategy.before_task(t, strategy.tasks[t % len(strategy.tasks)], None)


def test_registered_with_alias() -> None:
    assert get_method("modal-prompt") is get_method("modalprompt") is get_method("ModalPrompt")


def test_select_prompts_rules() -> None:
    from mcit_bench.methods.modalprompt import select_prompts

    guide = torch.tensor([[0.1, 0.9, 0.5, 0.3, 0.2], [0.8, 0.1, 0.2, 0.7, 0.0]])
    # training, K=3: top-2 PREVIOUS tasks ascending, then the current task (index 4) nearest the text
    assert select_prompts(guide, 3, training=True).tolist() == [[2, 1, 4], [3, 0, 4]]
    # inference, K=3: top-3 over all learned tasks, ascending (best last)
    assert select_prompts(guide, 3, training=False).tolist() == [[3, 2, 1], [2, 3, 0]]
    # K=1 (MCITlib): current only in training, top-1 at inference
    assert select_prompts(guide, 1, training=True).tolist() == [[4], [4]]
    assert select_prompts(guide, 1, training=False).tolist() == [[1], [0]]
    # t <= K-1: every prompt so far, in task order; t = K: previous ones by score
    assert select_prompts(guide[:, :2], 3, training=True).tolist() == [[0, 1], [0, 1]]
    assert select_prompts(guide[:, :3], 3, training=True).tolist() == [[0, 1, 2], [1, 0, 2]]
    assert select_prompts(guide[:, :2], 3, training=False).tolist() == [[0, 1], [1, 0]]


def test_alignment_losses_train_the_transform(tiny_backbone: Path, bench) -> None:
    """Prism's port computes the alignment terms and drops them: the transforms never train."""
    torch.manual_seed(0)
    strategy = make_strategy(tiny_backbone, bench)
    grow(strategy, 1)
    batch = make_batch(strategy, records_of(bench, strategy.tasks[0].name, 6), train=True)
    losses = strategy.train_step(batch)
    assert set(losses) == {"lm", "align_image", "align_text"}
    assert all(v.requires_grad and v.ndim == 0 for v in losses.values())
    transform = list(strategy.transforms[0].parameters())
    # the LM loss alone gives the transform no gradient (selection is an argmax)
    assert all(g is None for g in torch.autograd.grad(losses["lm"], transform, retain_graph=True, allow_unused=True))
    for name in ("align_image", "align_text"):
        grads = torch.autograd.grad(losses[name], transform, retain_graph=True)
        assert sum(float(g.abs().sum()) for g in grads) > 0, name

    start = copy.deepcopy(strategy.state_dict())

    def one_step(with_alignment: bool) -> list[torch.Tensor]:
        strategy.load_state_dict(start)
        groups = strategy.param_groups(1e-2, 0.0)
        optimizer = torch.optim.AdamW(groups)
        step_losses = strategy.train_step(batch)
        total = sum(step_losses.values()) if with_alignment else step_losses["lm"]
        total.backward()
        optimizer.step()
        optimizer.zero_grad()
        return [p.detach().clone() for p in strategy.transforms[0].parameters()]

    with_align, without = one_step(True), one_step(False)
    before = [start[f"transforms.0.{k}"] for k in ("0.weight", "0.bias", "2.weight", "2.bias")]
    assert any(not a.equal(b) for a, b in zip(with_align, without))
    assert all(a.equal(b) for a, b in zip(without, before))  # LM-only step leaves the transform untouched
    assert all(not a.equal(b) for a, b in zip(with_align, before))


def _embeds_pointing_at(strategy, batch) -> torch.Tensor:
    """Per sample the direction u_b = img_b/|img_b| + txt_b/|txt_b|: the maximiser of its guide score."""
    img = strategy.backbone.clip_image_embeds(batch["pixel_values"])
    txt = strategy.backbone.clip_text_embeds(batch["instructions"])
    return torch.nn.functional.normalize(img, dim=-1) + torch.nn.functional.normalize(txt, dim=-1)


def _set_prototype(strategy, task: int, vector: torch.Tensor) -> None:
    last = strategy.transforms[task][2]  # f(P) = bias for every token -> proto = vector
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(vector)


def test_selection_is_per_sample(tiny_backbone: Path, bench) -> None:
    """Two samples that match different tasks get different prompts in the same batch."""
    torch.manual_seed(0)
    strategy = make_strategy(tiny_backbone, bench, transfer_num=1)
    grow(strategy, 4)
    records = records_of(bench, "styles", 1, "test") + records_of(bench, "count_math", 1, "test")
    batch = make_batch(strategy, records, train=False)
    u = _embeds_pointing_at(strategy, batch)
    _set_prototype(strategy, 1, u[0])
    _set_prototype(strategy, 3, u[1])
    for other in (0, 2):
        _set_prototype(strategy, other, -(u[0] + u[1]))
    strategy.eval()
    with torch.no_grad():
        out = strategy.prepare_inputs(batch, training=False)
    assert out.extras["selected"].tolist() == [[1], [3]]
    start = (batch["attention_mask"] == 0).sum(dim=1) + 1  # right after BOS
    for row, task in ((0, 1), (1, 3)):
        inserted = out.inputs_embeds[row, start[row]:start[row] + L]
        assert torch.allclose(inserted, strategy.prompts[task].detach())
    # K = 3: each sample's best prompt sits last (nearest the text), and still differs per sample
    strategy.hparams["transfer_num"] = 3
    with torch.no_grad():
        out = strategy.prepare_inputs(batch, training=False)
    assert out.extras["selected"][:, -1].tolist() == [1, 3]
    # training on task 4 (index 4): per-sample previous prompts, then the current prompt for all
    grow(strategy, 5)
    train_batch = make_batch(strategy, [dict(r, target="x") for r in records], train=True)
    with torch.no_grad():
        selected = strategy.prepare_inputs(train_batch, training=True).extras["selected"]
    assert selected[:, -1].tolist() == [4, 4] and selected[0, -2] == 1 and selected[1, -2] == 3


@pytest.mark.parametrize("transfer_num", [1, 3])
def test_inference_prompt_length_is_bounded(tiny_backbone: Path, bench, transfer_num: int) -> None:
    torch.manual_seed(0)
    strategy = make_strategy(tiny_backbone, bench, transfer_num=transfer_num)
    batch = make_batch(strategy, records_of(bench, "chart", 2, "test"), train=False)
    base = batch["input_ids"].shape[1]
    strategy.eval()
    for n in range(1, 9):
        grow(strategy, n)
        with torch.no_grad():
            strategy.hparams["inference_prompts"] = "topk"
            topk = strategy.prepare_inputs(batch, training=False)
            strategy.hparams["inference_prompts"] = "all"
            every = strategy.prepare_inputs(batch, training=False)
        assert topk.inputs_embeds.shape[1] - base == min(n, transfer_num) * L <= transfer_num * L
        assert every.inputs_embeds.shape[1] - base == n * L
        assert (topk.attention_mask.sum(1) - batch["attention_mask"].sum(1) == min(n, transfer_num) * L).all()


def test_checkpoint_rebuilds_grown_prompts(tmp_path: Path, tiny_backbone: Path, bench) -> None:
    from mcit_bench.rundir.checkpoints import load_checkpoint, save_checkpoint

    torch.manual_seed(0)
    a = make_strategy(tiny_backbone, bench)
    grow(a, 3)
    with torch.no_grad():
        for p in a.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p))  # stand-in for training of task 3
    save_checkpoint(tmp_path, 3, a)  # the runner's own format: safetensors + JSON
    b = make_strategy(tiny_backbone, bench)
    b.restore(load_checkpoint(tmp_path, 3))
    assert len(b.prompts) == 3 and b.current_task == 2
    assert all(pa.equal(pb) for pa, pb in zip(a.prompts, b.prompts))
    assert all(pa.equal(pb) for pa, pb in zip(a.transforms.parameters(), b.transforms.parameters()))
    assert [p.requires_grad for p in b.prompts] == [False, False, True]
    batch = make_batch(a, records_of(bench, "icons", 2, "test"), train=False)
    with torch.no_grad():
        assert a.prepare_inputs(batch, False).inputs_embeds.equal(b.prepare_inputs(batch, False).inputs_embeds)
    b.before_task(3, b.tasks[3], None)  # the run continues: a 4th prompt, the older ones frozen
    assert len(b.prompts) == 4 and [p.requires_grad for p in b.prompts] == [False, False, False, True]


def test_lr_ratio_and_clip_path_knobs(tiny_backbone: Path, bench) -> None:
    strategy = make_strategy(tiny_backbone, bench, prompt_lr_ratio=0.1, clip_path=str(tiny_backbone / "clip"))
    grow(strategy, 2)
    (group,) = strategy.param_groups(2e-4, 0.0)
    assert group["lr"] == pytest.approx(2e-5)  # the original: projector lr 2e-5 at nominal 2e-4
    # the current task's prompt and transform, and the projector (trained by default, as the original)
    expected = {id(p) for p in [strategy.prompts[1], *strategy.transforms[1].parameters(),
                                *strategy.backbone.projector.parameters()]}
    assert {id(p) for p in group["params"]} == expected
    assert strategy.backbone.clip is not None and not any(p.requires_grad for p in strategy.backbone.clip.parameters())


@pytest.mark.parametrize("setting", ["inference_prompts=every", "transfer_num=0", "clip_path=/nonexistent"])
def test_bad_knobs_fail_before_anything_is_written(tmp_path: Path, tiny_backbone: Path, setting: str,
                                                   capsys) -> None:
    assert main(quick_args(tmp_path, "modalprompt", "1", "--set", setting)) == 2
    assert setting.split("=")[0] in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_quick_run_resume_and_report(tmp_path: Path, tiny_backbone: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """End to end (4 tasks: top-3 of 4 at the last stage), interrupted after stage 2 and resumed."""
    order = tmp_path / "four.yaml"
    order.write_text("tasks: [styles, chart, degraded_caption, icons]\n")
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert main(quick_args(full, "modal-prompt", str(order), "--logger", "csv")) == 0
    run = full / "run"
    R, _ = read_matrix_csv(run / "accuracy.csv")
    assert R.shape == (5, 4) and not np.isnan(R).any()
    report = json.loads((run / "summary.json").read_text())["strategy"]
    assert report["learned_tasks"] == 4 and report["inference_prompt_tokens"] == 3 * 10
    assert report["trainable_parameters_per_task"] > 0
    ident = report["task_identification_accuracy"]
    assert sorted(ident["per_stage"], key=int) == ["1", "2", "3", "4"]
    assert len(ident["per_cell"]["1"]) == 1 and len(ident["per_cell"]["4"]) == 4  # learned tasks only
    assert ident["per_cell"]["1"] == {"styles": 100.0}  # one prompt: top-1 is always the own task
    logged = (run / "logs" / "stage2" / "metrics.csv").read_text().splitlines()[0]
    assert all(f"train/{k}" in logged for k in ("lm", "align_image", "align_text"))

    stop_after_stage(monkeypatch, 2)
    with pytest.raises(SystemExit):
        main(quick_args(cut, "modalprompt", str(order), "--logger", "csv"))
    stop_after_stage(monkeypatch, None)
    assert main(quick_args(cut, "modalprompt", str(order), "--logger", "csv", "--resume")) == 0
    assert (cut / "run" / "accuracy.csv").read_text() == (run / "accuracy.csv").read_text()
    resumed = json.loads((cut / "run" / "summary.json").read_text())["strategy"]
    assert resumed["task_identification_accuracy"] == ident


def test_inference_benchmark_script_runs(tiny_backbone: Path) -> None:
    """The speed benchmark's plumbing (no timing asserted: speed is for the script to report)."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "tools" / "bench_modalprompt_inference.py"
    spec = importlib.util.spec_from_file_location("bench_modalprompt_inference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = module.measure("tiny-llava", tasks=4, samples_per_task=2, batch_size=4, new_tokens=2, repeats=1)
    assert out["learned_tasks"] == 4 and out["inserted_prompt_tokens"] == {"topk": 30, "all": 40}
    assert out["fixed"]["generated_tokens"] == {"topk": 8 * 2, "all": 8 * 2}  # same decoding work
    assert out["fixed"]["ratio_all_over_topk"] > 0


@pytest.mark.parametrize("train_projector", [None, False])
def test_projector_trains_by_default_as_the_original(tiny_backbone: Path, bench, train_projector) -> None:
    overrides = {} if train_projector is None else {"train_projector": train_projector}
    strategy = make_strategy(tiny_backbone, bench, **overrides)
    grow(strategy, 1)
    strategy.train()
    batch = make_batch(strategy, records_of(bench, "styles", 4), train=True)
    sum(strategy.train_step(batch).values()).backward()
    grads = [p.grad for p in strategy.backbone.projector.parameters()]
    if train_projector is None:  # default: the original's initialize_vision_modules unfreezes it
        assert all(g is not None and g.abs().sum() > 0 for g in grads)
        assert any(p is q for p in strategy.trainable_parameters() for q in strategy.backbone.projector.parameters())
    else:
        assert all(g is None for g in grads)
