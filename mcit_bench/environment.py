"""Environment fingerprint written into summary.json: what produced these numbers."""
from __future__ import annotations

import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

PACKAGES = ("mcit-bench", "torch", "transformers", "peft", "lightning", "datasets", "numpy")


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def fingerprint(strategy: Any = None) -> dict[str, Any]:
    import torch

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    info: dict[str, Any] = {"versions": versions, "python": platform.python_version(),
                            "platform": platform.platform(), "torch_threads": torch.get_num_threads(),
                            "git_commit": _git_commit()}
    if strategy is not None:
        param = next(strategy.parameters())
        info["device"] = str(param.device)
        info["dtype"] = str(param.dtype).replace("torch.", "")
        if param.device.type == "cuda":
            info["device_name"] = torch.cuda.get_device_name(param.device)
    return info
