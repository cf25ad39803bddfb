"""Metrics and matrix CSV tests against hand-computed numbers (docs/reference.md, "Metrics", is the spec).

Notation as in the spec: a[t][i] = R[t, i-1], t = stage 0..T, i = task 1..T.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from mcit_bench import metrics as M
from mcit_bench.errors import UserError
from mcit_bench.matrix_io import read_matrix_csv, write_matrix_csv

nan = float("nan")

# The 3-task fixture. Chosen so that every variant gives a different number:
#   task 1 peaks at stage 2 (80) above its diagonal (60)  -> max != a[i][i]
#   task 2 ends higher (75) than it ever was before (70) -> chaudhry term < 0, PyCIL clips to 0
#   zero-shot row non-zero                                 -> fwd baseline term matters
#                 task1 task2 task3
R3 = np.array([[10.0, 20.0, 30.0],   # stage 0: zero-shot
               [60.0, 25.0, 35.0],   # stage 1: after task 1
               [80.0, 70.0, 42.0],   # stage 2: after task 2
               [70.0, 75.0, 90.0]])  # stage 3: after task 3
RANDOM_B = [5.0, 15.0, 22.0]         # b_i, random-init model
FINETUNE = [65.0, 72.0, 85.0]        # single-task fine-tune scores

# Hand arithmetic for R3 (T = 3):
#   A_1 = 60;  A_2 = (80+70)/2 = 75;  A_3 = (70+75+90)/3 = 235/3 = 78.333..
#   avg  = (60 + 75 + 235/3)/3 = (640/3)/3 = 640/9 = 71.111..
#   last = 235/3 = 78.333..
#   mft  = (60+70+90)/3 = 220/3 = 73.333..
#   bwt  = ((70-60) + (75-70))/2 = (10+5)/2 = 7.5
#   fgt  = ((max(60,80)-70) + (max(70)-75))/2 = (10 + -5)/2 = 2.5
#   fwd  = ((a12-a02) + (a23-a03))/2 = ((25-20) + (42-30))/2 = (5+12)/2 = 8.5
AVG, LAST, MFT = 640 / 9, 235 / 3, 220 / 3
BWT, FGT, FWD = 7.5, 2.5, 8.5


def approx(x):
    return pytest.approx(x, abs=1e-9)


# ---------------------------------------------------------------- summary metrics

def test_summary_metrics_hand_computed():
    assert M.avg(R3) == approx(AVG)
    assert M.last(R3) == approx(LAST)
    assert M.mft(R3) == approx(MFT)
    assert M.bwt(R3) == approx(BWT)
    assert M.fgt(R3) == approx(FGT)
    assert M.fwd(R3) == approx(FWD)


def test_metrics_return_python_floats_and_accept_lists():
    assert type(M.avg(R3)) is float
    assert M.avg(R3.tolist()) == approx(AVG)
    # None in a list is a missing cell
    assert M.last([[None], [55.0]]) == approx(55.0)


def test_input_matrix_not_modified():
    before = R3.copy()
    M.summarize(R3)
    np.testing.assert_array_equal(R3, before)


# ---------------------------------------------------------------- named variants

def test_forgetting_variants():
    assert M.forgetting(R3) == approx(FGT)                      # default = chaudhry
    assert M.forgetting(R3, "chaudhry") == approx(2.5)
    # first_minus_last: ((60-70) + (70-75))/2 = (-10 + -5)/2 = -7.5 = -bwt
    assert M.forgetting(R3, "first_minus_last") == approx(-7.5)
    assert M.forgetting(R3, "first_minus_last") == approx(-M.bwt(R3))
    # max_all_rows: task1 max(60,80,70)-70 = 10; task2 max(70,75)-75 = 0 -> (10+0)/2 = 5
    assert M.forgetting(R3, "max_all_rows") == approx(5.0)


def test_bwt_variants():
    assert M.backward_transfer(R3) == approx(BWT)               # default = lopez_paz
    assert M.backward_transfer(R3, "lopez_paz") == approx(7.5)
    # diaz_rodriguez: t=2: a21-a11 = 80-60 = 20; t=3: a31-a11 = 10, a32-a22 = 5
    #   (20+10+5) / (3*2/2) = 35/3 = 11.666..
    assert M.backward_transfer(R3, "diaz_rodriguez") == approx(35 / 3)


def test_fwd_variants():
    assert M.forward_transfer(R3) == approx(FWD)                # default = zero_shot
    assert M.forward_transfer(R3, "zero_shot") == approx(8.5)
    # random_init: ((25-15) + (42-22))/2 = (10+20)/2 = 15   (b_1 unused)
    assert M.forward_transfer(R3, "random_init", baseline=RANDOM_B) == approx(15.0)
    # finetune_reference: ((60-65) + (70-72) + (90-85))/3 = (-5-2+5)/3 = -2/3
    assert M.forward_transfer(R3, "finetune_reference", baseline=FINETUNE) == approx(-2 / 3)


def test_fwd_variants_need_a_baseline_of_length_T():
    with pytest.raises(ValueError, match="baseline"):
        M.forward_transfer(R3, "random_init")
    with pytest.raises(ValueError, match="T=3"):
        M.forward_transfer(R3, "finetune_reference", baseline=[1.0, 2.0])
    with pytest.raises(ValueError, match=r"\[0, 100\]"):
        M.forward_transfer(R3, "random_init", baseline=[0.0, 150.0, 0.0])
    # a missing baseline entry that is needed -> None; b_1 is not needed by random_init
    assert M.forward_transfer(R3, "random_init", baseline=[5.0, None, 22.0]) is None
    assert M.forward_transfer(R3, "random_init", baseline=[None, 15.0, 22.0]) == approx(15.0)


def test_accuracy_variants():
    assert M.accuracy(R3) == approx(AVG)
    # diaz_rodriguez_A: lower triangle incl. diagonal, rows 1..3:
    #   60 + (80+70) + (70+75+90) = 445; / (3*4/2 = 6) = 74.1666..
    assert M.accuracy(R3, "diaz_rodriguez_A") == approx(445 / 6)


def test_unknown_variant_rejected():
    for fn in (M.forgetting, M.backward_transfer, M.forward_transfer, M.accuracy):
        with pytest.raises(ValueError, match="unknown"):
            fn(R3, "nope")


# ---------------------------------------------------------------- curves and matrices

def test_per_stage_curves():
    assert M.A_t(R3) == [approx(60.0), approx(75.0), approx(235 / 3)]
    # FGT_2: task1 max(a11=60) - a21=80 = -20; FGT_3 = fgt = 2.5
    assert M.FGT_t(R3) == [None, approx(-20.0), approx(2.5)]
    # FWD_2: a12-a02 = 5; FWD_3 = (5 + 12)/2 = 8.5 = fwd
    assert M.FWD_t(R3) == [None, approx(5.0), approx(8.5)]
    assert M.FGT_t(R3)[-1] == approx(M.fgt(R3))
    assert M.FWD_t(R3)[-1] == approx(M.fwd(R3))


def test_fgt_matrix():
    # F[t][i] = max_{i<=l<t} a[l][i] - a[t][i] for t > i
    #   F[2][1] = 60-80 = -20;  F[3][1] = max(60,80)-70 = 10;  F[3][2] = 70-75 = -5
    expected = np.array([[nan, nan, nan],
                         [nan, nan, nan],
                         [-20.0, nan, nan],
                         [10.0, -5.0, nan]])
    np.testing.assert_allclose(M.fgt_matrix(R3), expected, equal_nan=True)


def test_fwd_matrix():
    # W[t][i] = a[t][i] - a[0][i] for 1 <= t < i; row 0 NaN (0 by construction)
    #   W[1][2] = 25-20 = 5;  W[1][3] = 35-30 = 5;  W[2][3] = 42-30 = 12
    expected = np.array([[nan, nan, nan],
                         [nan, 5.0, 5.0],
                         [nan, nan, 12.0],
                         [nan, nan, nan]])
    np.testing.assert_allclose(M.fwd_matrix(R3), expected, equal_nan=True)


def test_summarize():
    s = M.summarize(R3, random_baseline=RANDOM_B, finetune_scores=FINETUNE)
    for key, want in dict(avg=AVG, last=LAST, mft=MFT, bwt=BWT, fgt=FGT, fwd=FWD).items():
        assert s[key] == approx(want), key
    assert s["curves"]["A_t"] == M.A_t(R3)
    assert s["curves"]["FGT_t"] == M.FGT_t(R3)
    assert s["curves"]["FWD_t"] == M.FWD_t(R3)
    assert s["variants"] == {
        "fgt.chaudhry": approx(2.5), "fgt.first_minus_last": approx(-7.5),
        "fgt.max_all_rows": approx(5.0),
        "bwt.lopez_paz": approx(7.5), "bwt.diaz_rodriguez": approx(35 / 3),
        "fwd.zero_shot": approx(8.5), "fwd.random_init": approx(15.0),
        "fwd.finetune_reference": approx(-2 / 3),
        "acc.avg": approx(AVG), "acc.diaz_rodriguez_A": approx(445 / 6),
    }


def test_summarize_from_R_alone_has_no_baseline_variants():
    v = M.summarize(R3)["variants"]
    assert "fwd.random_init" not in v and "fwd.finetune_reference" not in v
    assert set(v) == {"fgt.chaudhry", "fgt.first_minus_last", "fgt.max_all_rows",
                      "bwt.lopez_paz", "bwt.diaz_rodriguez", "fwd.zero_shot",
                      "acc.avg", "acc.diaz_rodriguez_A"}


# ---------------------------------------------------------------- missing cells

def _no_nan_anywhere(obj):
    if isinstance(obj, dict):
        return all(_no_nan_anywhere(v) for v in obj.values())
    if isinstance(obj, list):
        return all(_no_nan_anywhere(v) for v in obj)
    return obj is None or not math.isnan(obj)


def test_missing_cell_gives_none_never_zero_or_partial_mean():
    R = R3.copy()
    R[3, 0] = nan  # a[3][1] not evaluated
    assert M.last(R) is None       # needs the whole last row
    assert M.avg(R) is None        # needs A_3
    assert M.bwt(R) is None and M.fgt(R) is None
    assert M.forgetting(R, "max_all_rows") is None
    assert M.backward_transfer(R, "diaz_rodriguez") is None
    assert M.accuracy(R, "diaz_rodriguez_A") is None
    # metrics that do not read a[3][1] are unaffected
    assert M.mft(R) == approx(MFT)
    assert M.fwd(R) == approx(FWD)
    assert M.A_t(R) == [approx(60.0), approx(75.0), None]
    assert M.FGT_t(R) == [None, approx(-20.0), None]
    F = M.fgt_matrix(R)
    assert math.isnan(F[3, 0]) and F[3, 1] == approx(-5.0)
    s = M.summarize(R)
    assert s["last"] is None and _no_nan_anywhere(s)


def test_missing_cell_inside_the_max_gives_none():
    R = R3.copy()
    R[2, 0] = nan  # a[2][1] is inside max_{1<=l<=2} a[l][1]; skipping it would give 60-70
    assert M.fgt(R) is None
    assert math.isnan(M.fgt_matrix(R)[3, 0])
    assert M.bwt(R) == approx(BWT)  # Lopez-Paz does not read a[2][1]


def test_missing_zero_shot_row_gives_fwd_none():
    R = R3.copy()
    R[0, :] = nan
    assert M.fwd(R) is None
    assert M.FWD_t(R) == [None, None, None]
    assert np.isnan(M.fwd_matrix(R)).all()
    assert M.avg(R) == approx(AVG)  # row 0 is not part of avg


def test_lower_triangle_only_matrix():
    # MCITlib/HiDe/Prism style: only t >= i evaluated (and no zero-shot row).
    R = R3.copy()
    R[0, :] = nan
    R[1, 1:] = nan
    R[2, 2] = nan
    assert M.fwd(R) is None
    assert M.forward_transfer(R, "random_init", baseline=RANDOM_B) is None
    assert np.isnan(M.fwd_matrix(R)).all()
    assert M.FWD_t(R) == [None, None, None]
    # everything that only needs the lower triangle is still defined and unchanged
    assert M.avg(R) == approx(AVG) and M.last(R) == approx(LAST) and M.mft(R) == approx(MFT)
    assert M.fgt(R) == approx(FGT) and M.bwt(R) == approx(BWT)
    assert M.forward_transfer(R, "finetune_reference", baseline=FINETUNE) == approx(-2 / 3)
    np.testing.assert_allclose(M.fgt_matrix(R), M.fgt_matrix(R3), equal_nan=True)


def test_upper_triangle_without_zero_shot_still_gives_fwd_none():
    R = R3.copy()
    R[0, 2] = nan  # a[0][3] needed for the i=3 term
    assert M.fwd(R) is None
    assert M.FWD_t(R) == [None, approx(5.0), None]


# ---------------------------------------------------------------- T = 1

def test_single_task():
    R = np.array([[30.0], [80.0]])
    assert M.avg(R) == approx(80.0) and M.last(R) == approx(80.0) and M.mft(R) == approx(80.0)
    assert M.bwt(R) is None and M.fgt(R) is None and M.fwd(R) is None
    for v in M.FORGETTING_VARIANTS:
        assert M.forgetting(R, v) is None
    assert M.backward_transfer(R, "diaz_rodriguez") is None
    assert M.forward_transfer(R, "random_init", baseline=[10.0]) is None
    # finetune_reference has a 1/T denominator: defined for T=1 (80-70 = 10)
    assert M.forward_transfer(R, "finetune_reference", baseline=[70.0]) == approx(10.0)
    assert M.accuracy(R, "diaz_rodriguez_A") == approx(80.0)
    assert M.A_t(R) == [approx(80.0)] and M.FGT_t(R) == [None] and M.FWD_t(R) == [None]
    assert np.isnan(M.fgt_matrix(R)).all() and np.isnan(M.fwd_matrix(R)).all()


# ---------------------------------------------------------------- validation

@pytest.mark.parametrize("bad", [np.zeros((3, 3)), np.zeros((2, 3)), np.zeros((1, 0)),
                                 np.zeros(4), np.zeros((2, 2, 1))])
def test_bad_shape_rejected(bad):
    with pytest.raises(ValueError, match="shape|2-D"):
        M.avg(bad)


@pytest.mark.parametrize("value", [100.5, -0.1, float("inf")])
def test_out_of_range_rejected(value):
    R = R3.copy()
    R[2, 1] = value
    with pytest.raises(ValueError, match=r"stage 2, task 2 .*\[0, 100\]"):
        M.summarize(R)


def test_boundaries_0_and_100_are_legal():
    R = np.array([[0.0, 100.0], [100.0, 0.0], [0.0, 100.0]])
    assert M.last(R) == approx(50.0)


# ---------------------------------------------------------------- regressions (docs/reference.md)

def test_regression_transposed_matrix_rejected_by_shape():
    # PyCIL prints R^T: (T, T+1) must not be read as a matrix at all.
    with pytest.raises(ValueError, match="transposed"):
        M.summarize(R3.T)


def test_regression_transposed_stage_block_gives_a_different_answer():
    # Even with row 0 kept in place, transposing the stage block (rows 1..T) reads the upper
    # triangle as the lower one; the answers must differ, not coincide by symmetry.
    Rt = R3.copy()
    Rt[1:] = R3[1:].T
    # A_1 = 60; A_2 = (25+70)/2 = 47.5; A_3 = (35+42+90)/3 = 167/3 -> avg != 640/9
    assert M.avg(Rt) == approx((60 + 47.5 + 167 / 3) / 3)
    assert M.avg(Rt) != approx(M.avg(R3))
    assert M.fgt(Rt) != approx(M.fgt(R3))
    assert M.fwd(Rt) != approx(M.fwd(R3))


def test_regression_scale_0_1_vs_0_100():
    # A 0-1 matrix scaled by 100 twice is out of range -> error, not a silently huge metric.
    with pytest.raises(ValueError, match=r"\[0, 100\]"):
        M.avg(R3 * 100)
    # A 0-1 matrix is legal but warned about; metrics scale linearly (no hidden *100).
    with pytest.warns(M.ScaleWarning):
        assert M.avg(R3 / 100) == approx(AVG / 100)
    with pytest.warns(M.ScaleWarning):
        s = M.summarize(R3 / 100)
    assert s["fgt"] == approx(FGT / 100) and s["fwd"] == approx(FWD / 100)
    # no warning on a percent matrix, nor on an all-0/1 matrix (ambiguous: could be 0 and 1 %)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        M.summarize(R3)
        M.summarize(np.array([[0.0], [1.0]]))


def test_regression_forgetting_uses_the_max_not_the_diagonal():
    # task 1: a[1][1] = 60 but peaks at a[2][1] = 80 before dropping to a[3][1] = 70.
    #   with the max: (80-70 + 70-75)/2 = 2.5; with a[j][j]: (60-70 + 70-75)/2 = -7.5
    wrong = np.mean([R3[1, 0] - R3[3, 0], R3[2, 1] - R3[3, 1]])
    assert wrong == approx(-7.5)
    assert M.fgt(R3) == approx(2.5)
    assert M.fgt(R3) != approx(wrong)


def test_regression_forward_transfer_includes_the_baseline():
    # without the zero-shot term: (a12 + a23)/2 = (25+42)/2 = 33.5; with it: 8.5
    no_baseline = (R3[1, 1] + R3[2, 2]) / 2
    assert no_baseline == approx(33.5)
    assert M.fwd(R3) == approx(8.5)
    assert M.fwd(R3) != approx(no_baseline)


def test_regression_forgetting_sign():
    # accuracy on task 1 drops 90 -> 60 -> 40: forgetting is POSITIVE, bwt negative
    R = np.array([[0.0, 0.0, 0.0],
                  [90.0, 0.0, 0.0],
                  [60.0, 80.0, 0.0],
                  [40.0, 80.0, 70.0]])
    # fgt = ((90-40) + (80-80))/2 = 25; bwt = ((40-90) + (80-80))/2 = -25
    assert M.fgt(R) == approx(25.0) and M.fgt(R) > 0
    assert M.bwt(R) == approx(-25.0)
    assert M.forgetting(R, "first_minus_last") == approx(25.0)
    assert M.forgetting(R, "max_all_rows") == approx(25.0)
    # F[2][1] = 90-60 = 30, F[3][1] = 90-40 = 50: positive entries
    assert M.fgt_matrix(R)[2, 0] == approx(30.0) and M.fgt_matrix(R)[3, 0] == approx(50.0)
    assert M.FGT_t(R) == [None, approx(30.0), approx(25.0)]


# ---------------------------------------------------------------- CSV

NAMES = ["vqa", "caption, coco", "grounding"]  # a comma in a name must survive quoting


def test_csv_round_trip(tmp_path):
    R = R3.copy()
    R[1, 2] = nan
    R[0, 0] = 12.3456
    path = tmp_path / "sub" / "R.csv"
    write_matrix_csv(path, R, NAMES)
    lines = path.read_text().splitlines()
    assert lines[0] == 'stage,vqa,"caption, coco",grounding'
    assert lines[1] == "0,12.3456,20.0000,30.0000"
    assert lines[2] == "1,60.0000,25.0000,"           # missing -> empty cell, not 0/nan
    R2, names = read_matrix_csv(path)
    assert names == NAMES
    np.testing.assert_allclose(R2, R, equal_nan=True)
    assert M.summarize(R2) == M.summarize(R)
    assert [p.name for p in path.parent.iterdir()] == ["R.csv"]  # no temp file left behind


def test_csv_write_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="3 tasks"):
        write_matrix_csv(tmp_path / "x.csv", R3, ["a", "b"])
    with pytest.raises(ValueError, match="duplicate"):
        write_matrix_csv(tmp_path / "x.csv", R3, ["a", "b", "a"])
    with pytest.raises(ValueError, match="shape"):
        write_matrix_csv(tmp_path / "x.csv", R3.T, ["a", "b", "c", "d"])
    assert not list(tmp_path.iterdir())


def test_csv_read_tolerates_bom_whitespace_and_nan(tmp_path):
    path = tmp_path / "R.csv"
    path.write_text("\ufeffstage, a , b\n0, 1.5 ,nan\n1,50,\n2,40,60\n\n", encoding="utf-8")
    R, names = read_matrix_csv(path)
    assert names == ["a", "b"]
    np.testing.assert_allclose(R, [[1.5, nan], [50, nan], [40, 60]], equal_nan=True)


def _read_error(tmp_path, text: str) -> str:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(UserError) as info:
        read_matrix_csv(path)
    msg = str(info.value)
    assert str(path) in msg and "\n" not in msg  # names the file, one line
    assert info.value.exit_code == 2
    return msg


def test_csv_missing_file(tmp_path):
    path = tmp_path / "nope.csv"
    with pytest.raises(UserError, match="not found") as info:
        read_matrix_csv(path)
    assert str(path) in str(info.value)


def test_csv_empty_file(tmp_path):
    assert "empty" in _read_error(tmp_path, "")


def test_csv_first_column_not_stage(tmp_path):
    msg = _read_error(tmp_path, "step,a,b\n0,1,2\n1,3,4\n2,5,6\n")
    assert "column 1" in msg and "'step'" in msg and "expected 'stage'" in msg


def test_csv_no_task_columns(tmp_path):
    assert "no task columns" in _read_error(tmp_path, "stage\n0\n")


def test_csv_duplicate_task_name(tmp_path):
    msg = _read_error(tmp_path, "stage,a,b,a\n0,1,2,3\n1,1,2,3\n2,1,2,3\n3,1,2,3\n")
    assert "column 4" in msg and "duplicate" in msg and "'a'" in msg and "column 2" in msg


def test_csv_empty_task_name(tmp_path):
    msg = _read_error(tmp_path, "stage,a,,c\n0,1,2,3\n1,1,2,3\n2,1,2,3\n3,1,2,3\n")
    assert "column 3" in msg and "empty task name" in msg


@pytest.mark.parametrize("stages, bad, expected", [
    ("1,0,2", "'0'", "expected an integer in 2..2"),  # out of order
    ("0,1,1", "'1'", "expected an integer in 2..2"),  # twice
    ("0,1,3", "'3'", "expected an integer in 2..2"),  # beyond T
    ("0,x,2", "'x'", "expected an integer in 1..2"),  # not an integer
    ("0,1.0,2", "'1.0'", "expected an integer in 1..2"),  # not exactly the integer
])
def test_csv_stage_column_malformed(tmp_path, stages, bad, expected):
    rows = "".join(f"{s},10,20\n" for s in stages.split(","))
    msg = _read_error(tmp_path, "stage,a,b\n" + rows)
    assert "column 'stage'" in msg and bad in msg and expected in msg


def test_csv_non_numeric_cell(tmp_path):
    msg = _read_error(tmp_path, "stage,a,b\n0,10,20\n1,10,abc\n2,10,20\n")
    assert "stage 1" in msg and "task 'b'" in msg and "'abc'" in msg and "not a number" in msg


@pytest.mark.parametrize("body, bad", [("0,1,2\n1,3,4\n2,5,6\n3,7,8\n", "'3'"), ("", None)])
def test_csv_too_many_or_no_rows(tmp_path, body, bad):
    msg = _read_error(tmp_path, "stage,a,b\n" + body)
    assert (bad in msg and "no row after stage 2" in msg) if bad else "no stage rows" in msg


# Fwd-Prompt / MCITlib style: T x T lower triangle, stages 1..T, no zero-shot row, dashes above the diagonal
PAPER = """stage,ScienceQA,TextVQA,ImageNet,GQA
1,80.0,-,-,-
2,70.0,60.0,-,-
3,65.0,55.0,90.0,-
4,60.0,50.0,85.0,40.0
"""


def test_csv_published_lower_triangle(tmp_path, capsys):
    from mcit_bench.cli import main

    path = tmp_path / "paper.csv"
    path.write_text(PAPER)
    R, names = read_matrix_csv(path)
    assert names == ["ScienceQA", "TextVQA", "ImageNet", "GQA"] and R.shape == (5, 4)
    assert np.isnan(R[0]).all() and R[4, 2] == 85.0 and np.isnan(R[1, 1])
    s = M.summarize(R)
    # by hand: last = (60+50+85+40)/4; avg = mean(80, 65, 70, 58.75); fgt = mean(80-60, 60-50, 90-85)
    assert s["last"] == pytest.approx(58.75) and s["avg"] == pytest.approx((80 + 65 + 70 + 58.75) / 4)
    assert s["fgt"] == pytest.approx((20 + 10 + 5) / 3) and s["bwt"] == pytest.approx(-35 / 3)
    assert s["mft"] == pytest.approx((80 + 60 + 90 + 40) / 4) and s["fwd"] is None  # no zero-shot row
    assert main(["metrics", str(path)]) == 0
    out = capsys.readouterr().out
    assert "last=58.75" in out and "fwd=n/a" in out


def test_csv_any_subset_of_stages(tmp_path):
    # zero-shot and final rows only (a joint upper bound), then a gap (stage 2 absent): absent rows are missing
    path = tmp_path / "m.csv"
    path.write_text("stage,a,b,c\n0,10,20,30\n3,40,50,60\n")
    R, _ = read_matrix_csv(path)
    s = M.summarize(R)
    assert s["last"] == pytest.approx(50.0) and s["avg"] is None and s["fwd"] is None and s["fgt"] is None
    path.write_text("stage,a,b,c\n0,10,20,30\n1,50,25,31\n3,40,50,60\n")
    R, _ = read_matrix_csv(path)
    assert np.isnan(R[2]).all() and M.summarize(R)["bwt"] is None and M.summarize(R)["last"] == pytest.approx(50.0)


def test_csv_wrong_number_of_fields(tmp_path):
    msg = _read_error(tmp_path, "stage,a,b\n0,1,2\n1,3\n2,5,6\n")
    assert "line 3" in msg and "expected 3" in msg


@pytest.mark.parametrize("value", ["100.5", "-1", "inf"])
def test_csv_value_out_of_range(tmp_path, value):
    msg = _read_error(tmp_path, f"stage,a,b\n0,1,2\n1,3,4\n2,{value},6\n")
    assert "stage 2" in msg and "task 'a'" in msg and "[0, 100]" in msg


def test_modules_do_not_import_torch():
    import subprocess
    import sys
    code = ("import sys, mcit_bench.metrics, mcit_bench.matrix_io; "
            "sys.exit(1 if 'torch' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_diagonal_is_each_task_right_after_learning_it():
    R = [[10, 20, 30], [60, 25, 35], [50, 70, 40], [45, 65, 80]]
    assert M.diagonal(R) == [60.0, 70.0, 80.0]
    assert M.mft(R) == pytest.approx(np.mean(M.diagonal(R)))
    assert M.diagonal([[10, 20], [math.nan, 25], [50, 70]]) == [None, 70.0]  # not evaluated: None, never 0
