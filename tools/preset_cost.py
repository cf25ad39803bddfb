"""What each preset costs on this machine: wall time of the README's job, measured or extrapolated.

``quick`` is run as it is. ``default`` and ``tuned`` run with ``--set steps_per_task=K`` (a fraction of
their steps); their cost is extrapolated from that run's own timings (summary.json): set-up and
evaluation as measured, training at the measured seconds per step times the preset's steps.
Usage: ``python tools/preset_cost.py [--presets quick,default,tuned] [--steps 40]`` (prints one line per
preset; minutes, and the figures they come from).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def measure(preset: str, steps: int | None, folder: Path) -> dict:
    out = folder / preset
    cmd = [sys.executable, "-m", "mcit_bench.cli", "run", "--method", "lora-ft", "--order", "3", "--preset", preset,
           "--output", str(out), "--quiet", "--logger", "none"]
    if steps is not None:
        cmd += ["--set", f"steps_per_task={steps}"]
    started = time.time()
    subprocess.run(cmd, check=True)
    wall = time.time() - started
    summary = json.loads((out / "summary.json").read_text())
    return {"wall": wall, "timings": summary["timings"], "tasks": len(summary["tasks"])}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="quick,default,tuned")
    parser.add_argument("--steps", type=int, default=40, help="steps per task of the extrapolated presets")
    args = parser.parse_args()
    from mcit_bench.config import PRESETS, TRAIN_DEFAULTS

    with tempfile.TemporaryDirectory() as tmp:
        for preset in args.presets.split(","):
            if preset == "quick":
                m = measure(preset, None, Path(tmp))
                print(f"quick: {m['wall'] / 60:.1f} min measured (lora-ft order 3, imports included)", flush=True)
                continue
            full = int((PRESETS.get(preset) or {}).get("steps_per_task", TRAIN_DEFAULTS["steps_per_task"]))
            m = measure(preset, args.steps, Path(tmp))
            t = m["timings"]
            per_step = t["fit_seconds_total"] / (args.steps * m["tasks"])
            other = m["wall"] - t["fit_seconds_total"]  # imports, set-up, evaluation, writes
            total = other + per_step * full * m["tasks"]
            print(f"{preset}: {total / 60:.1f} min extrapolated ({1 / per_step:.1f} steps/s over {args.steps} steps "
                  f"a task; {full} steps a task; evaluation, set-up and imports {other:.0f} s as measured)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
