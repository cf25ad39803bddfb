"""Inference cost of ModalPrompt's bounded selection vs inserting every learned prompt.

The paper claims x1.42 inference speed because only the top-min(t, K) prompts are inserted, whatever
the number of learned tasks t. This script measures, in one process, the time per generated test
sample with ``inference_prompts=topk`` (K x prompt_length tokens) and ``inference_prompts=all``
(t x prompt_length tokens) after ``--tasks`` learned tasks, and prints the ratio all/topk.

Two timings per variant: ``fixed`` forces exactly ``--new-tokens`` generated tokens per sample (the
same decoding work, so only the prompt length differs); ``natural`` stops at EOS as evaluation does.
The variants alternate over ``--repeats`` rounds and the median round counts (shared CPUs are noisy).

    python tools/bench_modalprompt_inference.py --run results/runs/synthetic/modalprompt/order1-seed0   # trained prompts
    python tools/bench_modalprompt_inference.py --backbone tiny-llava           # untrained prompts
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any


def build_strategy(backbone: str, run: str | None, tasks: int, overrides: dict[str, Any]):
    """A modalprompt strategy with ``tasks`` learned tasks: restored from a run, or grown untrained."""
    import torch
    import yaml

    from mcit_bench.backbones import load_backbone
    from mcit_bench.benchmark import load_benchmark
    from mcit_bench.config import TRAIN_DEFAULTS, load_order
    from mcit_bench.registry import get_method, method_defaults
    from mcit_bench.strategy import RunContext

    cls = get_method("modalprompt")
    hp = {**TRAIN_DEFAULTS, **method_defaults(cls)}
    order = "1"
    if run:
        config = yaml.safe_load((Path(run) / "config.yaml").read_text())
        hp, backbone, order = config["hparams"], config["backbone"], str(config["order"])
    hp.update(overrides)
    bench = load_benchmark("synthetic", train_size=8, test_size=hp["test_size"])  # None = the benchmark default
    names = load_order(order, bench.task_names)
    specs = [bench.task(n) for n in names]
    strategy = cls(load_backbone(backbone, progress=False), hp)
    strategy.setup(specs, RunContext(bench, specs, 0))
    if run:
        from mcit_bench.rundir.checkpoints import load_checkpoint

        strategy.restore(load_checkpoint(Path(run), tasks))
    else:
        torch.manual_seed(0)
        for t in range(tasks):
            strategy.before_task(t, specs[t % len(specs)], None)
    strategy.eval()
    return strategy, bench, names


def time_variant(strategy, batches: list[dict], new_tokens: int, fixed: bool) -> tuple[float, int]:
    """Seconds spent generating for all batches, and the number of generated tokens."""
    import torch

    bb = strategy.backbone
    tokens = 0
    start = time.perf_counter()
    with torch.no_grad():
        for batch in batches:
            inputs = strategy.prepare_inputs(batch, training=False)
            position_ids = (inputs.attention_mask.cumsum(-1) - 1).clamp(min=0)
            out = bb.model.generate(inputs_embeds=inputs.inputs_embeds, attention_mask=inputs.attention_mask,
                                    position_ids=position_ids, max_new_tokens=new_tokens,
                                    min_new_tokens=new_tokens if fixed else 0, do_sample=False, num_beams=1,
                                    pad_token_id=bb.tokenizer.pad_token_id, eos_token_id=bb.tokenizer.eos_token_id)
            tokens += int((out != bb.tokenizer.pad_token_id).sum())
    return time.perf_counter() - start, tokens


def measure(backbone: str = "tiny-llava", run: str | None = None, tasks: int = 6, samples_per_task: int = 16,
            batch_size: int = 16, new_tokens: int = 16, repeats: int = 5, threads: int = 1) -> dict[str, Any]:
    import torch

    from mcit_bench.collate import Collator

    torch.set_num_threads(threads)
    strategy, bench, names = build_strategy(backbone, run, tasks, {})
    bb = strategy.backbone
    collate = Collator(bb.processor, bb.template, train=False, image_token=bb.image_token)
    records = [r for name in names[:tasks] for r in list(bench.test_split(name))[:samples_per_task]]
    batches = [collate(records[i:i + batch_size]) for i in range(0, len(records), batch_size)]
    variants = ("topk", "all")
    rounds: dict[str, dict[str, list[float]]] = {m: {v: [] for v in variants} for m in ("fixed", "natural")}
    generated: dict[str, dict[str, int]] = {m: {} for m in rounds}
    for mode in rounds:
        for _ in range(repeats):
            for variant in variants:  # alternate so that load changes hit both alike
                strategy.hparams["inference_prompts"] = variant
                seconds, tokens = time_variant(strategy, batches, new_tokens, fixed=(mode == "fixed"))
                rounds[mode][variant].append(seconds / len(records))
                generated[mode][variant] = tokens
    n_p, k = int(strategy.hparams["prompt_length"]), int(strategy.hparams["transfer_num"])
    result: dict[str, Any] = {
        "backbone": str(bb.source), "trained_prompts_from": run, "learned_tasks": len(strategy.prompts),
        "samples": len(records), "batch_size": batch_size, "new_tokens": new_tokens, "repeats": repeats,
        "threads": threads,
        "inserted_prompt_tokens": {"topk": min(len(strategy.prompts), k) * n_p, "all": len(strategy.prompts) * n_p},
        "mean_input_tokens_without_prompts": round(sum(int(b["attention_mask"].sum()) for b in batches) / len(records), 1),
    }
    for mode, per_variant in rounds.items():
        median = {v: statistics.median(s) for v, s in per_variant.items()}
        result[mode] = {"seconds_per_sample": {v: round(s, 5) for v, s in median.items()},
                        "all_rounds": {v: [round(x, 5) for x in s] for v, s in per_variant.items()},
                        "generated_tokens": generated[mode],
                        "ratio_all_over_topk": round(median["all"] / median["topk"], 3)}
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="tiny-llava", help="ignored with --run (the run's backbone is used)")
    parser.add_argument("--run", help="a modalprompt run folder: use its trained prompts (checkpoints/stage<tasks>.pt)")
    parser.add_argument("--tasks", type=int, default=6)
    parser.add_argument("--samples-per-task", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    result = measure(args.backbone, args.run, args.tasks, args.samples_per_task, args.batch_size, args.new_tokens,
                     args.repeats, args.threads)
    print(json.dumps(result, indent=1))
    for mode in ("fixed", "natural"):
        s = result[mode]["seconds_per_sample"]
        print(f"{mode:>7}: topk {s['topk'] * 1000:.2f} ms/sample ({result['inserted_prompt_tokens']['topk']} prompt "
              f"tokens), all {s['all'] * 1000:.2f} ms/sample ({result['inserted_prompt_tokens']['all']} prompt tokens): "
              f"all/topk = x{result[mode]['ratio_all_over_topk']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
