"""The repository holds code and the evidence its documents cite, never one machine's paths."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# absolute paths of a machine: home folders, work and temp roots (/tmp: where scratch runs go), mounts,
# Windows user folders (the names are built in pieces so that this file does not match itself)
ROOTS = ["ro" "ot", "ho" "me", "Us" "ers", "wo" "rk", "tm" "p", "mn" "t", "scra" "tch", "priv" "ate", "v" "ar"]
MACHINE_PATH = re.compile(r"(?<![\w.~-])/(?:" + "|".join(ROOTS) + r")/|[A-Z]:\\{1,2}Us" "ers")


def _tracked() -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [ROOT / name for name in out.decode().split("\0") if name]


def test_no_committed_file_carries_a_machine_path() -> None:
    found = []
    for path in _tracked():
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue  # binary (images, weights)
        for number, line in enumerate(text.splitlines(), start=1):
            if MACHINE_PATH.search(line):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:120]}")
    assert not found, "machine paths in committed files:\n" + "\n".join(found[:20])


def test_the_pattern_catches_what_it_is_for() -> None:
    for bad in ["output: /wo" "rk/main/results", "'/ro" "ot/.cache/x'", "/ho" "me/alice/data", "/tm" "p/pytest-of-root/x",
                "output: /tm" "p/s7/runs/abl/x", "C:\\Us" "ers\\bob"]:
        assert MACHINE_PATH.search(bad), bad
    for fine in ["results/runs/synthetic", "/data/UCIT", "/models/llava-1.5-7b-hf", "~/.cache/mcit-bench",
                 "docs/tmp/x", "a/var/b"]:
        assert not MACHINE_PATH.search(fine), fine


def test_derivable_matrices_are_not_committed() -> None:
    """fgt.csv and fwd.csv follow from accuracy.csv (``mcit-bench metrics``): run folders keep them, git does not."""
    assert not [p for p in _tracked() if p.name in ("fgt.csv", "fwd.csv")]
