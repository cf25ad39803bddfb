"""docs/reference.md against the CLI's parser: every flag of every command is documented there."""
from __future__ import annotations

import argparse
import re
from pathlib import Path

from mcit_bench.cli import build_parser

REFERENCE = Path(__file__).resolve().parents[1] / "docs" / "reference.md"


def _commands(parser: argparse.ArgumentParser, prefix: str = "") -> dict[str, argparse.ArgumentParser]:
    found = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found[f"{prefix}{name}"] = sub
                found.update(_commands(sub, f"{prefix}{name} "))
    return found


def undocumented(text: str) -> list[str]:
    """``command --flag`` for each flag the parser has and ``text`` never names (as ``--flag`` whole)."""
    missing = []
    parsers = {"": build_parser(), **_commands(build_parser())}
    for command, parser in parsers.items():
        for action in parser._actions:
            for flag in action.option_strings:
                if flag.startswith("--") and flag != "--help" and not re.search(re.escape(flag) + r"(?![\w-])", text):
                    missing.append(f"{command} {flag}".strip())
    return missing


def test_every_flag_of_the_parser_is_in_the_reference():
    assert undocumented(REFERENCE.read_text()) == []


def test_a_flag_removed_from_the_reference_is_caught():
    text = REFERENCE.read_text()
    assert "--num-nodes" in text
    assert "run --num-nodes" in undocumented(re.sub(r"--num-nodes(?![\w-])", "", text))
