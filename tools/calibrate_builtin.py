"""Calibration of the built-in default against UCIT's behaviour: lora-ft over the six task orders, joint
training, the zero-shot row and nearest-prototype routing, each beside its target.

    python tools/calibrate_builtin.py --runs DIR [--backbone tiny-llava] [--set steps_per_task=550]

Runs what ``DIR`` lacks (``lora-ft/order<k>`` for k = 1..6 and ``joint``, each ``mcit-bench run ... --resume``,
so an interrupted calibration continues) and prints one table per target. The targets (UCIT with
LLaVA-1.5-7B: lora-ft keeps much of what it learned, tasks are told apart by their images):
  diagonal (mft) >= 80 on every order; bwt between -40 and -10 on average over the orders;
  zero shot above chance on >= 3 tasks, one of them a letter task; joint last >= 0.9 x lora-ft's mean mft;
  nearest-prototype routing on frozen vision features >= 90% on every task.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ORDERS = [str(k) for k in range(1, 7)]
LETTER_SCORERS = ("choice_letter",)


def ensure_run(folder: Path, method: str, order: str, args: argparse.Namespace) -> dict:
    summary = folder / "summary.json"
    if not (summary.is_file() and json.loads(summary.read_text()).get("complete")):
        cmd = [sys.executable, "-m", "mcit_bench.cli", "run", "--method", method, "--order", order,
               "--backbone", args.backbone, "--output", str(folder), "--quiet", "--logger", "none"]
        if folder.exists():
            cmd.append("--resume")
        for item in args.set:
            cmd += ["--set", item]
        print("running:", " ".join(cmd[2:]), flush=True)
        subprocess.run(cmd, check=True)
    return json.loads(summary.read_text())


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", required=True, help="folder of the calibration runs (created; reused)")
    parser.add_argument("--backbone", default="tiny-llava")
    parser.add_argument("--set", action="append", default=[], help="KEY=VALUE passed to every run")
    parser.add_argument("--no-routing", action="store_true", help="skip the routing table")
    args = parser.parse_args(argv)
    root = Path(args.runs)
    lora = {order: ensure_run(root / "lora-ft" / f"order{order}", "lora-ft", order, args) for order in ORDERS}
    joint = ensure_run(root / "joint", "joint", "1", args)

    print(f"\nbackbone {lora['1']['backbone_checkpoint']}; lora-ft, six orders, seed 0\n")
    print("| order | mft (diagonal) | bwt | last | avg | fwd |\n|---|---|---|---|---|---|")
    for order, s in lora.items():
        print(f"| {order} | {s['mft']:.1f} | {s['bwt']:.1f} | {s['last']:.1f} | {s['avg']:.1f} | {s['fwd']:.1f} |")
    mean = {key: sum(s[key] for s in lora.values()) / len(lora) for key in ("mft", "bwt", "last", "avg", "fwd")}
    print("| mean | " + " | ".join(f"{mean[k]:.1f}" for k in ("mft", "bwt", "last", "avg", "fwd")) + " |\n")
    min_mft = min(s["mft"] for s in lora.values())
    print(f"target diagonal >= 80 on every order: lowest {min_mft:.1f} -> {verdict(min_mft >= 80)}")
    print(f"target bwt in [-40, -10] on average: {mean['bwt']:.1f} -> {verdict(-40 <= mean['bwt'] <= -10)}")

    zero = lora["1"]["zero_shot"]
    scorers = {task: info["scorer"] for task, info in lora["1"]["scorers"].items()}
    print("\n| task | zero shot | chance | shuffled | p | above chance |\n|---|---|---|---|---|---|")
    for task, z in zero.items():
        chance = "–" if z["chance"] is None else f"{z['chance']:.1f}"
        print(f"| {task} | {z['score']:.1f} | {chance} | {z['shuffled']:.1f} | {z['p_value']:.2f} | {z['above_chance']} |")
    above = [t for t, z in zero.items() if z["above_chance"]]
    letters = [t for t in above if scorers.get(t) in LETTER_SCORERS]
    print(f"target zero shot above chance on >= 3 tasks, one a letter task: {len(above)} ({', '.join(above)}), "
          f"letter tasks {letters or 'none'} -> {verdict(len(above) >= 3 and bool(letters))}")

    ratio = joint["last"] / mean["mft"]
    print(f"\ntarget joint last >= 0.9 x lora-ft mft: joint last {joint['last']:.1f}, lora-ft mean mft "
          f"{mean['mft']:.1f}, ratio {ratio:.3f} -> {verdict(ratio >= 0.9)}")

    if not args.no_routing:
        from mcit_bench.backbones import load_backbone
        from mcit_bench.backbones.calibration import builtin_routing

        routing = builtin_routing(load_backbone(args.backbone, progress=False))
        print("\n| task | nearest-prototype routing (%) |\n|---|---|")
        for task, value in routing.items():
            print(f"| {task} | {value:.0f} |")
        low = min(routing.values())
        print(f"target routing >= 90% on every task: lowest {low:.0f} -> {verdict(low >= 90)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
