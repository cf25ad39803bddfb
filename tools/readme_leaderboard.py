"""Put the committed leaderboard's main table into the README (between its ``<!-- leaderboard -->`` markers).

    python tools/readme_leaderboard.py [--runs results/leaderboard] [--readme README.md] [--check]

The table is the first one `mcit-bench leaderboard RUNS` prints, unchanged; ``--check`` exits 1 when the
README's table differs (``tests/test_readme_leaderboard.py`` asserts the same).
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
START, END = "<!-- leaderboard -->", "<!-- /leaderboard -->"


def leaderboard_table(runs: Path) -> str:
    """The first markdown table of ``mcit-bench leaderboard RUNS`` (the per-method table of the first setting)."""
    from mcit_bench.leaderboard import build_leaderboard, render

    text = render(build_leaderboard(runs), "md")
    lines = text.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("| method |"))
    end = next((i for i in range(first, len(lines)) if not lines[i].startswith("|")), len(lines))
    return "\n".join(lines[first:end])


def readme_table(readme: str) -> str:
    match = re.search(re.escape(START) + r"\n(.*?)\n" + re.escape(END), readme, flags=re.S)
    if match is None:
        raise SystemExit(f"README: no {START} ... {END} block")
    return match.group(1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default=str(REPO / "results" / "leaderboard"))
    parser.add_argument("--readme", default=str(REPO / "README.md"))
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when they differ")
    args = parser.parse_args(argv)
    readme = Path(args.readme).read_text()
    table, current = leaderboard_table(Path(args.runs)), readme_table(readme)
    if args.check:
        print("README table is the leaderboard's" if table == current else "README table differs")
        return 0 if table == current else 1
    Path(args.readme).write_text(readme.replace(f"{START}\n{current}\n{END}", f"{START}\n{table}\n{END}"))
    print(f"README: leaderboard table of {args.runs} written ({table.count(chr(10)) - 1} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
