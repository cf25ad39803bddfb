"""Test set-up: offline, caches in a temp folder, one tiny 'micro' backbone built once per machine."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

_CACHE = Path(tempfile.gettempdir()) / "mcit-bench-test-cache"
os.environ.setdefault("MCIT_BENCH_CACHE", str(_CACHE))
os.environ.setdefault("HF_HOME", str(_CACHE / "hf"))
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

MICRO = "tiny-llava-micro"


@pytest.fixture(scope="session")
def micro_backbone() -> Path:
    """Path of the micro tiny backbone (a few seconds to build; cached by recipe hash)."""
    from mcit_bench.backbones import backbone_path

    return backbone_path(MICRO, progress=False)


def quick_args(tmp_path: Path, method: str = "lora-ft", order: str = "3", *extra: str) -> list[str]:
    return ["run", "--method", method, "--order", order, "--backbone", MICRO, "--preset", "quick",
            "--output", str(tmp_path / "run"), "--quiet", "--logger", "none", *extra]
