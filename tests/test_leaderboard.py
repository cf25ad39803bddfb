"""Leaderboard from hand-made run folders: means, sample stds, n, best marks, name alignment, separation."""
from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import pytest
import yaml

from mcit_bench.cli import main
from mcit_bench.errors import UserError
from mcit_bench.leaderboard import build_leaderboard, load_paper_results, render
from mcit_bench.leaderboard.statistics import Stat

REPO = Path(__file__).resolve().parents[1]
VERSIONS = {"mcit-bench": "0.1.0", "torch": "2.13.0", "transformers": "5.23.0"}
HPARAMS = {"lr": 0.001, "train_size": 600, "test_size": 100, "steps_per_task": 150, "batch_size": 16,
           "eval_max_new_tokens": None, "eval_batch_size": 100}
N = float("nan")


def make_run(root: Path, method: str, order: str, tasks: list[str], matrix: list[list[float]], seed: int = 0,
             complete: bool = True, hparams: dict | None = None, versions: dict | None = None,
             params: int = 1000, seconds: tuple[float, float] = (10.0, 5.0), folder: str | None = None,
             checkpoint: str = "tiny-llava-r2-cecd70dd78") -> Path:
    """Write summary.json, config.yaml and accuracy.csv by hand, as the runner lays them out."""
    run = root / "synthetic" / method / (folder or f"order{order}-seed{seed}")
    run.mkdir(parents=True)
    lines = ["stage," + ",".join(tasks)]
    lines += [f"{t}," + ",".join("" if math.isnan(v) else f"{v:.4f}" for v in row) for t, row in enumerate(matrix)]
    (run / "accuracy.csv").write_text("\n".join(lines) + "\n")
    hp = {**HPARAMS, **(hparams or {})}
    config = {"method": method, "order": order, "benchmark": "synthetic", "backbone": "tiny-llava", "seed": seed,
              "preset": "default", "eval_mode": "full", "precision": "32-true", "devices": 1, "hparams": hp,
              "tasks": tasks}
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    summary = {"method": method, "benchmark": "synthetic", "backbone": "tiny-llava", "backbone_checkpoint": checkpoint,
               "order": order, "seed": seed,
               "preset": "default", "tasks": tasks, "complete": complete,
               "avg": 999.0,  # deliberately wrong: the leaderboard recomputes from accuracy.csv
               "scorers": {t: {"scorer": "exact_match", "variant": None, "chance": None} for t in tasks},
               "trainable_parameters": params,
               "timings": {"train_seconds_total": seconds[0], "eval_seconds_total": seconds[1]},
               "environment": {"versions": versions or VERSIONS, "python": "3.11"}}
    (run / "summary.json").write_text(json.dumps(summary))
    return run


# Hand-computed (T = 2):
# m1 order 1 [A, B]: avg=(60+60)/2=60, last=60, mft=65, bwt=-10, fgt=10, fwd=30-20=10; final A=50, B=70
# m1 order 2 [B, A]: avg=(80+50)/2=65, last=50, mft=60, bwt=-20, fgt=20, fwd=20-10=10; final B=60, A=40
# m2 order 1 [A, B]: avg=(50+54)/2=52, last=54, mft=55, bwt=-2,  fgt=2,  fwd=25-20=5;  final A=48, B=60
# m3 order 1 [A, B]: avg=30, last=30, fgt=10, fwd=40-20=20; final A=20, B=40
# m3 order 2 [B, A]: a[1][2] missing -> fwd null (n=1); avg=35, last=30, fgt=10; final B=30, A=30
M1_O1 = [[10, 20], [60, 30], [50, 70]]
M1_O2 = [[20, 10], [80, 20], [60, 40]]
M2_O1 = [[10, 20], [50, 25], [48, 60]]


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    make_run(root, "m1", "1", ["A", "B"], M1_O1, params=2_000_000, seconds=(100.0, 20.0))
    make_run(root, "m1", "2", ["B", "A"], M1_O2, params=2_000_000, seconds=(140.0, 20.0))
    make_run(root, "m2", "1", ["A", "B"], M2_O1)
    make_run(root, "m2", "2", ["B", "A"], [[20, 10], [90, N], [N, N]], complete=False)  # interrupted: skipped
    make_run(root, "m3", "1", ["A", "B"], [[10, 20], [30, 40], [20, 40]])
    make_run(root, "m3", "2", ["B", "A"], [[20, 10], [40, N], [30, 30]])
    make_run(root, "zero-shot", "1", ["A", "B"], [[10, 20], [10, 20], [10, 20]])
    make_run(root, "joint", "1", ["A", "B"], [[10, 20], [N, N], [70, 80]])
    return root


def _row(board, label):
    return next(r for r in board.groups[0].rows if r.label == label)


def test_means_stds_and_n_by_hand(runs: Path) -> None:
    board = build_leaderboard(runs)
    assert len(board.groups) == 1 and board.n_runs == 7
    assert [p for p, _ in board.skipped] == [str(runs / "synthetic" / "m2" / "order2-seed0")]
    m1 = _row(board, "m1")
    assert m1.stats["avg"].mean == pytest.approx(62.5) and m1.stats["avg"].std == pytest.approx(5 / math.sqrt(2))
    assert m1.stats["last"].mean == pytest.approx(55) and m1.stats["last"].std == pytest.approx(10 / math.sqrt(2))
    assert m1.stats["mft"].mean == pytest.approx(62.5)
    assert m1.stats["bwt"].mean == pytest.approx(-15) and m1.stats["fgt"].mean == pytest.approx(15)
    assert m1.stats["fwd"].mean == pytest.approx(10) and m1.stats["fwd"].std == pytest.approx(0)
    assert m1.stats["avg"].n == 2
    # final scores aligned by task NAME (by column position A would be (50+60)/2 = 55, B (70+40)/2 = 55)
    assert m1.tasks["A"].mean == pytest.approx(45) and m1.tasks["B"].mean == pytest.approx(65)
    assert m1.params.mean == 2_000_000 and m1.seconds.mean == pytest.approx(140) and m1.seconds.std == pytest.approx(
        math.sqrt(800))
    m2 = _row(board, "m2")  # the incomplete order-2 run is not counted
    assert len(m2.runs) == 1 and m2.stats["avg"].mean == pytest.approx(52) and m2.stats["avg"].std is None
    m3 = _row(board, "m3")  # null fwd excluded from the mean, never read as 0
    assert m3.stats["fwd"].n == 1 and m3.stats["fwd"].mean == pytest.approx(20)
    joint = _row(board, "joint")
    assert joint.stats["avg"].n == 0 and joint.stats["last"].mean == pytest.approx(75)


def test_best_marks_direction_and_reference_rows(runs: Path) -> None:
    board = build_leaderboard(runs)
    best = {r.label: r.best for r in board.groups[0].rows}
    assert "avg" in best["m1"] and "avg" not in best["m2"]
    assert "fgt" in best["m2"] and "fgt" not in best["m1"]  # lower is better for forgetting
    assert "fwd" in best["m3"]  # 20 (n=1) beats 10 and 5
    assert "task:B" in best["m1"] and "task:A" in best["m2"]  # A: m2 48 > m1 45 > m3 25
    # zero-shot has fgt 0 and joint the highest last, but reference rows are never marked
    assert best["zero-shot"] == set() and best["joint"] == set()
    md = render(board, "md")
    assert "| m1 | 2 | **62.50 ± 3.54** | **55.00 ± 7.07** |" in md
    assert "| m2 | 1 | 52.00 ± – |" in md and "**2.00 ± –**" in md
    assert "**20.00 ± – (n=1)**" in md  # m3 fwd: one run of two has it
    joint_line = next(line for line in md.splitlines() if line.startswith("| joint (ref.) |"))
    assert joint_line.startswith("| joint (ref.) | 1 | n/a | 75.00 ± – | n/a |") and "**" not in joint_line
    assert "| m1 | 45.00 ± 7.07 | **65.00 ± 7.07** |" in md  # per-task table, canonical order A, B
    assert "m2/order2-seed0" in md  # skipped runs are listed


def test_csv_and_latex_formats(runs: Path) -> None:
    board = build_leaderboard(runs, metrics=["avg", "fgt", "fgt.max_all_rows"])
    rows = {r["label"]: r for r in csv.DictReader(io.StringIO(render(board, "csv")))}
    assert float(rows["m1"]["avg_mean"]) == pytest.approx(62.5) and rows["m1"]["avg_best"] == "*"
    assert float(rows["m1"]["avg_std"]) == pytest.approx(3.535534) and rows["m1"]["avg_n"] == "2"
    assert rows["m2"]["avg_std"] == "" and rows["m2"]["fgt_best"] == "*"
    assert rows["joint"]["avg_mean"] == "" and rows["joint"]["avg_n"] == "0" and rows["joint"]["reference"] == "1"
    assert float(rows["m1"]["task:A_mean"]) == pytest.approx(45)
    tex = render(board, "latex")
    assert r"\textbf{62.50 $\pm$ 3.54}" in tex and r"m2 & 1 & 52.00 $\pm$ -- &" in tex
    assert r"fgt.max\_all\_rows $\downarrow$" in tex and r"\toprule" in tex


def test_mismatched_settings_and_hparams_are_never_averaged(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    make_run(root, "m1", "1", ["A", "B"], M1_O1)
    make_run(root, "m1", "2", ["B", "A"], M1_O2)
    make_run(root, "m1", "3", ["A", "B"], M2_O1, versions={**VERSIONS, "torch": "2.12.0"})  # other software
    make_run(root, "m1", "1", ["A", "B"], M2_O1, hparams={"lr": 0.0001}, folder="order1-seed0-lowlr")
    make_run(root, "m2", "1", ["A", "B"], M2_O1, hparams={"steps_per_task": 10})  # other training budget
    board = build_leaderboard(root)
    assert len(board.groups) == 3
    main_group = board.groups[0]
    labels = sorted(r.label for r in main_group.rows)
    assert labels == ["m1 (lr=0.0001)", "m1 (lr=0.001)"]
    by_label = {r.label: r for r in main_group.rows}
    assert by_label["m1 (lr=0.001)"].stats["avg"].mean == pytest.approx(62.5)  # orders 1 and 2 only
    assert by_label["m1 (lr=0.0001)"].stats["avg"].mean == pytest.approx(52)
    assert any("different hyper-parameter sets (differing: lr)" in n for n in main_group.notes)
    others = {g.rows[0].label: g for g in board.groups[1:]}
    assert set(others) == {"m1", "m2"} and others["m1"].setting["versions"]["torch"] == "2.12.0"
    assert others["m2"].setting["budget"]["steps_per_task"] == 10
    assert "budget.steps_per_task" in board.group_notes[0] and "versions.torch" in board.group_notes[0]
    md = render(board, "md")
    assert "## Measured, setting 1 of 3" in md and "## Measured, setting 3 of 3" in md
    assert "never averaged" in md


def test_runs_of_a_rebuilt_builtin_backbone_are_kept_apart(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    make_run(root, "m1", "1", ["A", "B"], M1_O1)
    make_run(root, "m1", "2", ["B", "A"], M1_O2, checkpoint="tiny-llava-r3-0123456789")  # same name, new recipe
    board = build_leaderboard(root)
    assert len(board.groups) == 2
    assert {g.setting["backbone_checkpoint"] for g in board.groups} == {"tiny-llava-r2-cecd70dd78",
                                                                         "tiny-llava-r3-0123456789"}
    assert all(g.rows[0].stats["avg"].n == 1 for g in board.groups)


def test_paper_results_file_is_valid_and_kept_apart(runs: Path, tmp_path: Path) -> None:
    paper = load_paper_results(REPO / "results" / "paper_results.yaml")
    for entry in paper["entries"]:
        assert entry["arxiv"] and entry["source"]
        if entry["status"] == "absent":
            assert not any(v is not None for v in (entry.get("metrics") or {}).values())
    board = build_leaderboard(runs, paper_file=REPO / "results" / "paper_results.yaml")
    md = render(board, "md")
    measured, _, paper_block = md.partition("## Reported in papers (not measured here)")
    assert paper_block and "2604.14016" in paper_block and "2604.14016" not in measured
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"entries": [{"method": "X", "paper": "P", "arxiv": "1", "source": "Table 1",
                                                "status": "absent", "metrics": {"last": 50.0}}]}))
    with pytest.raises(UserError, match="status 'absent' but metrics are given"):
        load_paper_results(bad)


def test_cli_writes_table_and_plots(runs: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "board" / "leaderboard.md"
    plots = tmp_path / "board" / "plots"
    assert main(["leaderboard", str(runs), "--format", "md", "--output", str(out), "--plots", str(plots)]) == 0
    text = out.read_text()
    assert "![Per-stage curves" in text and "](plots/curves.png)" in text
    pngs = sorted(p.relative_to(plots).as_posix() for p in plots.rglob("*.png"))
    # one heatmap figure per row (its runs as a grid), not one link per run
    assert pngs == ["curves.png", "heatmaps/joint.png", "heatmaps/m1.png", "heatmaps/m2.png", "heatmaps/m3.png",
                    "heatmaps/zero-shot.png"]
    assert "![m1: accuracy matrices of its 2 run(s)](plots/heatmaps/m1.png)" in text and "m1-order2-seed0" not in text
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in plots.rglob("*.png"))
    assert main(["leaderboard", str(runs), "--metrics", "avg,nope"]) == 2
    assert "unknown metric(s) nope" in capsys.readouterr().err
    assert main(["leaderboard", str(tmp_path / "missing")]) == 2


# Paired comparison by hand (n = 6 (order, seed) pairs, metric `last`):
#   differences m - lora-ft: +1.5, -0.5, +2.0, +3.0, -1.0, +2.5   (mean 7.5 / 6 = 1.25)
#   |d| ranked: 0.5 -> 1, 1.0 -> 2, 1.5 -> 3, 2.0 -> 4, 2.5 -> 5, 3.0 -> 6
#   W+ = 3 + 4 + 6 + 5 = 18, W- = 1 + 2 = 3, W = min = 3
#   exact null: the 2^6 = 64 sign patterns are equally likely; rank sums <= 3 come from {}, {1}, {2}, {3},
#   {1, 2}: 5 patterns, so P(W- <= 3) = 5/64 and the two-sided p = 2 * 5/64 = 10/64 = 0.15625
PAIRED_DIFFS = [1.5, -0.5, 2.0, 3.0, -1.0, 2.5]
PAIRED_KEYS = [("1", 0), ("1", 1), ("2", 0), ("2", 1), ("3", 0), ("3", 1)]


def test_wilcoxon_and_bootstrap_by_hand() -> None:
    from itertools import product

    from mcit_bench.leaderboard.statistics import bootstrap_mean_interval, paired_comparison, wilcoxon_signed_rank

    w, p = wilcoxon_signed_rank(PAIRED_DIFFS)
    assert w == 3.0 and p == pytest.approx(10 / 64)
    # the same exact p by enumerating the sign patterns of ranks 1..6
    as_extreme = sum(sum(r for r, s in zip(range(1, 7), signs) if s) <= 3 for signs in product((0, 1), repeat=6))
    assert as_extreme == 5
    assert wilcoxon_signed_rank([0.0, 0.0]) == (0.0, 1.0) and wilcoxon_signed_rank([]) is None
    base = {k: 50.0 for k in PAIRED_KEYS}
    paired = paired_comparison({k: 50.0 + d for k, d in zip(PAIRED_KEYS, PAIRED_DIFFS)} | {("9", 0): 80.0}, base)
    assert paired.n == 6 and paired.mean_diff == pytest.approx(1.25)  # ("9", 0) has no baseline run: not paired
    assert paired.statistic == 3.0 and paired.p_value == pytest.approx(0.15625)
    low, high = bootstrap_mean_interval(PAIRED_DIFFS)
    assert -1.0 <= low < 1.25 < high <= 3.0 and (low, high) == bootstrap_mean_interval(PAIRED_DIFFS)  # seeded
    assert bootstrap_mean_interval([2.0]) is None


def test_paired_column_against_lora_ft(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    for (order, seed), d in zip(PAIRED_KEYS, PAIRED_DIFFS):
        make_run(root, "lora-ft", order, ["A", "B"], [[10, 20], [50, 30], [50, 50]], seed=seed)
        make_run(root, "m", order, ["A", "B"], [[10, 20], [50, 30], [50 + d, 50 + d]], seed=seed)
    make_run(root, "zero-shot", "1", ["A", "B"], [[10, 20], [10, 20], [10, 20]])
    board = build_leaderboard(root, metrics=["avg"])  # `last` is loaded for the pairing all the same
    group = board.groups[0]
    assert group.baseline == "lora-ft"
    m = _row(board, "m")
    assert m.paired.n == 6 and m.paired.mean_diff == pytest.approx(1.25) and m.paired.p_value == pytest.approx(0.15625)
    assert _row(board, "zero-shot").paired.n == 1  # one shared (order, seed): no interval
    md = render(board, "md")
    assert "| time (s) | Δlast vs lora-ft [95% CI] p |" in md
    line = next(x for x in md.splitlines() if x.startswith("| m |"))
    assert line.endswith(f"| +1.25 [{m.paired.ci_low:+.2f}, {m.paired.ci_high:+.2f}] p=0.156 |")
    assert next(x for x in md.splitlines() if x.startswith("| lora-ft |")).endswith("| baseline |")
    # zero-shot's last (10 + 20) / 2 = 15 against 50 on its one shared run: no interval, W = 0, p = 1
    assert "| zero-shot (ref.) | 1 | 12.50 ± – | 1.0K | 15 ± – | -35.00 p=1.000 |" in md
    rows = {r["label"]: r for r in csv.DictReader(io.StringIO(render(board, "csv")))}
    assert rows["m"]["paired_baseline"] == "lora-ft" and rows["m"]["paired_metric"] == "last"
    assert float(rows["m"]["paired_p"]) == pytest.approx(0.15625) and float(rows["m"]["paired_wilcoxon_w"]) == 3
    assert rows["lora-ft"]["paired_n"] == ""
    tex = render(board, "latex")
    assert r"$\Delta$last vs lora-ft [95\% CI] p" in tex and "+1.25 [" in tex
    assert "Δ" not in render(build_leaderboard(root, baseline=None), "md")  # no baseline: no column


def _make_ceiling(root: Path, method: str, seed: int, scores: dict[str, float]) -> None:
    """ceiling.json as ``mcit-bench ceiling`` writes it (same hyper-parameters and budget as make_run's runs)."""
    folder = root / "synthetic" / method / f"ceiling-seed{seed}"
    folder.mkdir(parents=True)
    (folder / "ceiling.json").write_text(json.dumps({
        "kind": "ceiling", "method": method, "backbone_checkpoint": "tiny-llava-r2-cecd70dd78", "seed": seed,
        "hparams": HPARAMS, "tasks": sorted(scores), "scores": scores, "complete": True}))


def test_ceiling_is_one_value_per_ceiling_seed_not_per_run(tmp_path: Path) -> None:
    """Every order has the same tasks, so the ceiling is one number per ceiling seed: four runs on one ceiling
    must not read as ``± 0.00`` over four values, and each run takes the ceiling of its own seed."""
    root = tmp_path / "runs"
    for order in ("1", "2"):
        for seed in (0, 1):
            tasks = ["A", "B"] if order == "1" else ["B", "A"]
            make_run(root, "m", order, tasks, [[10, 20], [50, 30], [50, 50]], seed=seed)
    _make_ceiling(root, "m", 0, {"A": 60.0, "B": 80.0})  # mean 70
    board = build_leaderboard(root, metrics=["avg"])
    assert _row(board, "m").ceiling == Stat(70.0, None, 1)
    line = next(x for x in render(board, "md").splitlines() if x.startswith("| m |"))
    assert "| 70.00 (1 seed) |" in line and "70.00 ±" not in line
    _make_ceiling(root, "m", 1, {"A": 70.0, "B": 90.0})  # mean 80
    board = build_leaderboard(root, metrics=["avg"])
    assert {(r.seed, r.ceiling) for r in _row(board, "m").runs} == {(0, 70.0), (1, 80.0)}
    c = _row(board, "m").ceiling  # over the two seeds: mean 75, sample std sqrt(50)
    assert (c.mean, c.n) == (75.0, 2) and c.std == pytest.approx(50 ** 0.5)
    line = next(x for x in render(board, "md").splitlines() if x.startswith("| m |"))
    assert "| 75.00 ± 7.07 (2 seeds) |" in line


def test_a_p_value_below_one_in_a_thousand_is_not_printed_as_zero(tmp_path: Path) -> None:
    # 12 pairs, all differences positive with distinct sizes: W = 0, and only the all-positive and
    # all-negative sign patterns are as extreme, so the exact two-sided p = 2 / 2^12 = 0.000488
    root = tmp_path / "runs"
    keys = [(str(o), s) for o in range(1, 7) for s in (0, 1)]
    for i, (order, seed) in enumerate(keys):
        make_run(root, "lora-ft", order, ["A", "B"], [[10, 20], [50, 30], [50, 50]], seed=seed)
        make_run(root, "m", order, ["A", "B"], [[10, 20], [50, 30], [51 + i, 51 + i]], seed=seed)
    board = build_leaderboard(root, metrics=["avg"])
    assert _row(board, "m").paired.p_value == pytest.approx(2 / 4096)
    line = next(x for x in render(board, "md").splitlines() if x.startswith("| m |"))
    assert line.endswith(" p<0.001 |") and "p=0.000" not in line
    assert "p$<$0.001" in render(board, "latex")
    rows = {r["label"]: r for r in csv.DictReader(io.StringIO(render(board, "csv")))}
    assert float(rows["m"]["paired_p"]) == pytest.approx(2 / 4096)  # the csv: six significant digits


def test_diagonal_by_position_in_the_order(tmp_path: Path) -> None:
    # order 1 learns A then B, order 2 B then A: position 1 holds A (60) and B (40), position 2 B (30) and A (50)
    root = tmp_path / "runs"
    make_run(root, "m", "1", ["A", "B"], [[10, 20], [60, 5], [55, 30]])
    make_run(root, "m", "2", ["B", "A"], [[20, 10], [40, 5], [35, 50]])
    make_run(root, "joint", "1", ["A", "B"], [[10, 20], [math.nan, math.nan], [70, 80]])  # no a[1][1]
    board = build_leaderboard(root, metrics=["avg"])
    m = _row(board, "m")
    assert [(s.mean, s.n) for s in m.by_position] == [(50.0, 2), (40.0, 2)]
    md = render(board, "md")
    table = md[md.index("Score on each task right after learning it"):]
    assert "| method | t=1 | t=2 | ceiling |" in table and "| m | 50.00 | 40.00 | n/a |" in table
    assert "| joint" not in table.split("\n\n")[1]  # a method without intermediate rows has no diagonal to show


def test_cli_names_every_skipped_folder_and_why(runs: Path, tmp_path: Path, capsys) -> None:
    diverged = make_run(runs, "m3", "2", ["B", "A"], [[20, 10], [N, N], [N, N]], complete=False, folder="lr1e6")
    (diverged / "state.json").write_text(json.dumps({"stopped": {"reason": "diverged", "stage": 1, "message": "x"}}))
    other = make_run(runs, "m1", "1", ["A", "B"], M1_O1, hparams={"steps_per_task": 10}, folder="short")
    assert main(["leaderboard", str(runs), "--output", str(tmp_path / "board.md")]) == 0
    err = capsys.readouterr().err
    assert f"leaderboard: skipped {runs / 'synthetic' / 'm2' / 'order2-seed0'}: incomplete" in err
    assert f"leaderboard: skipped {diverged}: diverged at stage 1" in err
    assert f"leaderboard: {other}: other setting: in table 2" in err
    assert err.count("other setting") == 1  # the main table's runs are not named
