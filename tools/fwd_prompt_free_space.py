"""Fwd-Prompt's room to learn per task, for each choice of SVD rows (``subspace_rows``) and threshold.

The subspaces depend only on the frozen backbone's input embeddings (no training), so the free
dimensions of every task of an order can be computed without a run: U_pre before the first task, then
each task's GPM extension of the memory. Prints a markdown table; ``--output`` writes it too.

    python tools/fwd_prompt_free_space.py --order 3 --output docs/records/r5/ablations/fwd_prompt_free_space.md
"""
from __future__ import annotations

import argparse
from pathlib import Path


def free_space(order: str, rows: str, threshold: float, backbone_name: str = "tiny-llava") -> dict:
    import torch

    from mcit_bench.backbones import load_backbone
    from mcit_bench.benchmark import load_benchmark
    from mcit_bench.collate import Collator
    from mcit_bench.config import TRAIN_DEFAULTS, load_order
    from mcit_bench.registry import get_method, method_defaults
    from mcit_bench.strategy import RunContext

    torch.manual_seed(0)
    cls = get_method("fwd-prompt")
    bench = load_benchmark("synthetic")
    names = load_order(order, bench.task_names)
    backbone = load_backbone(backbone_name, progress=False, preferred_template=bench.template)
    hp = {**TRAIN_DEFAULTS, **method_defaults(cls), "subspace_rows": rows, "threshold": threshold,
          "threshold_pre": threshold, "analysis": False}
    strategy = cls(backbone, hp)
    tasks = [bench.task(n) for n in names]
    collate = Collator(backbone.processor, backbone.template, train=True, image_token=backbone.image_token)
    strategy.setup(tasks, RunContext(bench, tasks, 0, None, collate, None))
    strategy.eval()
    free = []
    for i, task in enumerate(tasks):
        data = bench.train_split(task.name)
        strategy.before_task(i, task, data)
        free.append(strategy.free_dims())
        strategy.after_task(i, task, data)
    return {"pretrained_rank": int(strategy.pretrained_basis.shape[1]), "memory_rank": int(strategy.memory.shape[1]),
            "free": free, "tasks": names}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--order", default="3")
    parser.add_argument("--rows", default="text,all,normalized")
    parser.add_argument("--thresholds", default="0.97")
    parser.add_argument("--output")
    args = parser.parse_args()
    lines = [f"Fwd-Prompt free dimensions per task (built-in default, order {args.order}, d = 128, prompt_length 5;",
             "the first task trains unprojected: d). Command: `python tools/fwd_prompt_free_space.py "
             f"--order {args.order} --rows {args.rows} --thresholds {args.thresholds}`.", "",
             "| subspace_rows | threshold | rank U_pre | free dims per task | memory rank after |", "|---|---|---|---|---|"]
    for rows in args.rows.split(","):
        for threshold in (float(t) for t in args.thresholds.split(",")):
            r = free_space(args.order, rows, threshold)
            lines.append(f"| {rows} | {threshold} | {r['pretrained_rank']} | {', '.join(map(str, r['free']))} | "
                         f"{r['memory_rank']} |")
            print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    print(text)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text)


if __name__ == "__main__":
    main()
