"""Third-party methods: a strategy defined OUTSIDE the package, registered through the entry-point
group ``mcit_bench.methods``, runs through ``mcit-bench run``; aliases resolve."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from mcit_bench.registry import get_method, list_methods

from conftest import BACKBONE

PLUGIN = '''
"""A one-file method: train only the projector, and report how many steps it took."""
from mcit_bench.strategy import Strategy


class ProjectorOnly(Strategy):
    defaults = {"lr": 5e-3, "greeting": "hello"}

    def setup(self, tasks, context):
        super().setup(tasks, context)
        self.backbone.projector.requires_grad_(True)
        self.steps = 0

    def train_step(self, batch):
        self.steps += 1
        return super().train_step(batch)

    def report(self):
        return {"steps_seen": self.steps, "greeting": self.hparams["greeting"]}
'''


def _install_plugin(root: Path) -> None:
    (root / "my_cl_plugin.py").write_text(PLUGIN)
    info = root / "my_cl_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: my-cl-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[mcit_bench.methods]\nprojector-only = my_cl_plugin:ProjectorOnly\n")


def test_entry_point_plugin_runs_through_cli(tmp_path: Path, tiny_backbone: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    _install_plugin(site)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "mcit_bench.cli", "run", "--method", "projector_only", "--order", "2",
           "--backbone", BACKBONE, "--preset", "quick", "--output", str(out), "--quiet", "--logger", "none",
           "--set", "greeting=bonjour"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["method"] == "projector-only"
    assert summary["strategy"] == {"steps_seen": 6 * 4, "greeting": "bonjour"}  # 6 tasks x 4 quick steps
    listing = subprocess.run([sys.executable, "-m", "mcit_bench.cli", "list", "methods"], env=env,
                             capture_output=True, text=True, check=True).stdout
    assert "projector-only" in listing


def test_builtin_aliases() -> None:
    assert get_method("LoRA_FT") is get_method("lora-ft")
    assert {"zero-shot", "lora-ft", "joint"} <= set(list_methods())
