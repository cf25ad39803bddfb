"""Bad input: one-line error naming what is wrong, exit code 2, nothing written."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mcit_bench.cli import main

from conftest import quick_args


def _run(capsys, args: list[str]) -> tuple[int, str]:
    code = main(args)
    err = capsys.readouterr().err.strip()
    return code, err


@pytest.mark.parametrize("flag,value,needle", [
    ("--method", "no-such-method", "unknown method 'no-such-method'"),
    ("--order", "99", "unknown order '99'"),
    ("--backbone", "no/such-backbone", "unknown backbone 'no/such-backbone'"),
    ("--benchmark", "nope", "unknown benchmark 'nope'"),
    ("--preset", "huge", "unknown preset 'huge'"),
])
def test_unknown_names(tmp_path: Path, capsys, flag: str, value: str, needle: str) -> None:
    args = quick_args(tmp_path)
    args[args.index(flag) + 1] if flag in args else None
    if flag in args:
        args[args.index(flag) + 1] = value
    else:
        args += [flag, value]
    code, err = _run(capsys, args)
    assert code == 2
    assert needle in err and len(err.splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_unknown_set_key(tmp_path: Path, capsys) -> None:
    code, err = _run(capsys, quick_args(tmp_path, "lora-ft", "1", "--set", "learning_rate=1"))
    assert code == 2 and "unknown key(s) learning_rate" in err and "valid keys:" in err
    assert not (tmp_path / "run").exists()


def test_set_value_type(tmp_path: Path, capsys) -> None:
    code, err = _run(capsys, quick_args(tmp_path, "lora-ft", "1", "--set", "lr=fast"))
    assert code == 2 and "lr" in err and "expected a number" in err


def test_malformed_order_yaml(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "order.yaml"
    bad.write_text("name: mine\ntasks: [0, 1\n  - oops: 2\n")
    code, err = _run(capsys, quick_args(tmp_path, "lora-ft", str(bad)))
    # the place as an editor counts it (yaml's problem_mark is 0-based): line 3, the ':' after 'oops'
    assert code == 2 and str(bad) in err and "malformed YAML at line 3, column 9:" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_order_with_unknown_task(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "order.yaml"
    bad.write_text("tasks: [styles, cooking]\n")
    code, err = _run(capsys, quick_args(tmp_path, "lora-ft", str(bad)))
    assert code == 2 and "'cooking'" in err and "field 'tasks'" in err


def test_metrics_bad_header(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "m.csv"
    bad.write_text("step,a,b\n0,1,2\n1,3,4\n2,5,6\n")
    code, err = _run(capsys, ["metrics", str(bad)])
    assert code == 2 and str(bad) in err and "stage" in err and len(err.splitlines()) == 1


def test_metrics_non_numeric(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "m.csv"
    bad.write_text("stage,a,b\n0,1,2\n1,x3,4\n2,5,6\n")
    code, err = _run(capsys, ["metrics", str(bad)])
    assert code == 2 and "'x3'" in err and "stage 1" in err


def test_metrics_cli_matches_hand_computation(tmp_path: Path, capsys) -> None:
    good = tmp_path / "m.csv"
    # a[1][1]=80, a[2][1]=60, a[2][2]=90: last = 75, bwt = 60-80 = -20, fwd = a[1][2]-a[0][2] = 30-10 = 20
    good.write_text("stage,a,b\n0,20,10\n1,80,30\n2,60,90\n")
    assert main(["metrics", str(good)]) == 0
    out = capsys.readouterr().out
    assert "last=75.00" in out and "bwt=-20.00" in out and "fwd=20.00" in out


def test_help_does_not_import_torch() -> None:
    code = ("import sys; from mcit_bench.cli import build_parser; build_parser().format_help(); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_version(capsys) -> None:
    from importlib.metadata import version

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"mcit-bench {version('mcit-bench')}"


def test_list_orders_prints_each_orders_tasks(capsys) -> None:
    assert main(["list", "orders"]) == 0
    out = capsys.readouterr().out
    # order 3 of the Latin square, by name for each benchmark sharing it, and CoIN's own order
    assert "  3: icons -> scene_caption -> chart -> count_math -> styles -> degraded_caption\n" in out
    assert "  3: IconQA -> Flickr30k -> ArxivQA -> CLEVR-Math -> ImageNet-R -> VizWiz-caption\n" in out
    assert "  1: ScienceQA -> TextVQA -> ImageNet -> GQA -> VizWiz -> Grounding -> VQAv2 -> OCR-VQA\n" in out
