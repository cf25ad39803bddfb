"""Test set-up: offline, caches in a temp folder, one tiny 'micro' backbone built once per machine."""
from __future__ import annotations

import csv
import json
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


def assert_every_file_parses(folder: Path, temp_files_allowed: bool = False) -> None:
    """No torn file: every JSON, JSONL and CSV under ``folder`` parses; no temporary file is left behind
    unless ``temp_files_allowed`` (a process killed mid-write may leave one; it is never read)."""
    for path in folder.rglob("*"):
        if path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".jsonl":
            [json.loads(line) for line in path.read_text().splitlines()]
        elif path.suffix == ".csv":
            rows = list(csv.reader(path.read_text().splitlines()))
            assert rows and all(len(r) == len(rows[0]) for r in rows), path
        assert temp_files_allowed or not path.name.endswith(".tmp"), path
