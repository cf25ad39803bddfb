"""The README's leaderboard table is `mcit-bench leaderboard results/leaderboard` output, unchanged."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from mcit_bench.cli import main

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))
from readme_leaderboard import END, START, readme_table  # noqa: E402


def test_readme_table_equals_the_committed_leaderboard_output(capsys) -> None:
    assert main(["leaderboard", str(REPO / "results" / "leaderboard")]) == 0
    printed = capsys.readouterr().out
    table = readme_table((REPO / "README.md").read_text())
    assert table.startswith("| method |") and f"\n{table}\n" in printed


def test_the_tool_rewrites_only_the_marked_table(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{START}\n| method | stale |\n|---|---|\n{END}\nafter\n")
    tool = [sys.executable, str(REPO / "tools" / "readme_leaderboard.py"), "--readme", str(readme)]
    assert subprocess.run([*tool, "--check"], capture_output=True).returncode == 1
    assert subprocess.run(tool, capture_output=True).returncode == 0
    text = readme.read_text()
    assert text.startswith(f"intro\n{START}\n| method | runs |") and text.endswith(f"{END}\nafter\n")
    assert subprocess.run([*tool, "--check"], capture_output=True).returncode == 0
