"""Caption scorer and the pure-Python metrics, with hand-computed values (no Java needed)."""
from __future__ import annotations

import math

import pytest

from mcit_bench.errors import UserError
from mcit_bench.scorers import caption_coco, get_scorer
from mcit_bench.scorers.caption_metrics import bleu, cider_d, lcs_length, rouge_l
from mcit_bench.scorers.caption_tokenize import ptb_like_tokenize
from scorer_records import rec


def test_bleu_hand_computed():
    cands = ["a b c", "x y"]
    refs = [["a b d"], ["x y z w", "x"]]
    # image 1: unigram matches a,b = 2 of 3; bigram "a b" 1 of 2; trigram 0 of 1; no 4-grams.
    # image 2: unigrams 2 of 2; bigram "x y" 1 of 1; no trigrams.
    # corpus: matches [4, 2, 0, 0], totals [5, 3, 1, 0].
    # lengths: c = 3 + 2 = 5; closest refs: 3 and 1 (|1-2| < |4-2|) -> r = 4; c > r: no penalty.
    b = bleu(cands, refs)
    assert b[0] == pytest.approx(4 / 5)
    assert b[1] == pytest.approx(math.sqrt(4 / 5 * 2 / 3))
    # zero matches only leave coco's 1e-15 smoothing: BLEU-3 = (0.8 * 2/3 * 1e-15) ** (1/3)
    assert b[2] == pytest.approx((0.8 * 2 / 3 * 1e-15) ** (1 / 3), rel=1e-6)
    assert b[3] < 1e-4


def test_bleu_brevity_penalty_and_closest_tie():
    # candidate 2 words, refs 4 and 6 words: closest 4 -> ratio 2/4, BP = exp(1 - 4/2) = e^-1.
    # unigrams "a b" both match, bigram "a b" matches: p1 = p2 = 1.
    b = bleu(["a b"], [["a b c d", "a b c d e f"]])
    assert b[0] == pytest.approx(math.exp(-1))
    assert b[1] == pytest.approx(math.exp(-1))
    # tie |3-4| == |5-4|: the shorter (3) is taken, so c = 4 > r = 3 -> no penalty, BLEU-1 = 1.
    assert bleu(["a b c d"], [["a b c", "a b c d e"]])[0] == pytest.approx(1.0)


def test_rouge_l_hand_computed():
    # image 1: LCS("a b c", "a b d") = 2 -> P = R = 2/3 -> F = 2/3.
    # image 2: vs "x y z w": P = 2/2, R = 2/4; vs "x": P = 1/2, R = 1/1.
    #   P and R are maximised separately -> P = R = 1 -> F = 1.
    mean, per = rouge_l(["a b c", "x y"], [["a b d"], ["x y z w", "x"]])
    assert per == pytest.approx([2 / 3, 1.0])
    assert mean == pytest.approx(5 / 6)
    # beta = 1.2, P = 1, R = 0.5: F = 2.44 * 0.5 / (0.5 + 1.44) = 0.628866
    assert rouge_l(["a b"], [["a b c d"]])[0] == pytest.approx(2.44 * 0.5 / 1.94)
    assert lcs_length("a b c d e".split(), "x b d y e".split()) == 3


def test_cider_d_hand_computed():
    # N = 2 images. df of a, b, "a b", e, f, "e f" = 1, so every weight is tf * ln 2.
    # image 1: candidate = reference "a b": cosine 1 for unigrams and bigrams, 0 for 3/4-grams
    #   (empty vectors); both have one bigram -> no length penalty; 10 * mean(1, 1, 0, 0) = 5.
    # image 2: "c d" shares nothing with "e f" -> 0.       CIDEr = (5 + 0) / 2 = 2.5
    mean, per = cider_d(["a b", "c d"], [["a b"], ["e f"]])
    assert per == pytest.approx([5.0, 0.0])
    assert mean == pytest.approx(2.5)


def test_cider_d_length_penalty_and_single_image():
    # Image 1 "a b c" vs "a b c d": lengths are bigram counts 2 and 3 -> penalty exp(-1/72).
    # With one image log N = 0 and every idf weight is 0 -> CIDEr 0 (coco behaves the same).
    assert cider_d(["a b"], [["a b"]])[0] == 0.0
    mean, _ = cider_d(["a b c", "z"], [["a b c d"], ["y"]])
    # unigrams: cand {a,b,c}, ref {a,b,c,d}, equal weights w: dot 3w^2 / (sqrt(3) w * 2 w) = sqrt(3)/2
    # bigrams: {ab, bc} vs {ab, bc, cd}: 2 / (sqrt(2) sqrt(3)) = sqrt(2/3); trigrams: 1/sqrt(2)
    # 4-grams: cand has none -> 0.  image 1 = 10 * penalty * mean(...); image 2 = 0.
    img1 = 10 * math.exp(-1 / 72) * (math.sqrt(3) / 2 + math.sqrt(2 / 3) + 1 / math.sqrt(2) + 0) / 4
    assert mean == pytest.approx(img1 / 2)


@pytest.mark.parametrize("raw, tokens", [
    ("A man's dog, running (fast) on the U.S. road.", "a man 's dog running -lrb- fast -rrb- on the u.s. road"),
    ('He doesn\'t like "quotes" -- or dashes - really!', "he does n't like quotes or dashes really"),
    ("It's 10:30 a.m. ... wait?!", "it 's 10:30 a.m. wait ?!"),
    ("can't won't they'll", "ca n't wo n't they 'll"),
    ("5,000 people, 3.5 cats & 50% off", "5,000 people 3.5 cats & 50 % off"),
    ("the dog\u2019s \u201cbone\u201d", "the dog 's bone"),
    ("", ""),
])
def test_python_tokenizer(raw, tokens):
    # expectations = Stanford PTBTokenizer -lowerCase output with coco's punctuation filter
    assert ptb_like_tokenize(raw) == tokens


PERFECT = [rec("", references=["a b c d"]), rec("", references=["e f g h"])]


def test_caption_python_backend_six_metrics_and_warning():
    res = get_scorer("caption", "python").score(["a b c d", "e f g h"], PERFECT)
    d = res.details
    # every candidate equals its reference: BLEU-1..4 = 1 (up to 1e-9 smoothing), ROUGE-L = 1,
    # CIDEr: all weights ln 2, cosine 1 for n = 1..4 -> 10 per image -> 10 (x100 = 1000).
    # METEOR missing: (4 * 100 + 100 + 1000) / 6 = 250. CIDEr makes the caption score unbounded.
    for m in ("bleu_1", "bleu_2", "bleu_3", "bleu_4", "rouge_l"):
        assert d[m] == pytest.approx(100.0)
    assert d["cider"] == pytest.approx(1000.0)
    assert d["meteor"] is None and d["n_metrics"] == 6
    assert "METEOR unavailable" in d["warning"]
    assert d["backend"] == "python" and d["tokenizer"] == "ptb_like_python"
    assert res.score == pytest.approx(250.0)
    assert res.per_sample is None


def test_caption_python_backend_tokenises_and_counts_missing():
    # "A B C D." tokenises to "a b c d"; None is scored as an empty caption and counted.
    res = get_scorer("caption", "python").score(["A B C D.", None], PERFECT)
    assert res.details["n_missing"] == 1
    assert res.details["rouge_l"] == pytest.approx(50.0)  # (1 + 0) / 2


def test_caption_auto_falls_back_without_java(monkeypatch):
    monkeypatch.setattr(caption_coco, "coco_available", lambda: False)
    res = get_scorer("caption").score(["a b c d", "e f g h"], PERFECT)
    assert res.details["backend"] == "python" and res.details["n_metrics"] == 6
    assert res.details["meteor"] is None and "warning" in res.details


def test_caption_coco_variant_without_java_is_user_error(monkeypatch):
    monkeypatch.setattr(caption_coco, "coco_available", lambda: False)
    with pytest.raises(UserError, match="pycocoevalcap"):
        get_scorer("caption", "coco").score(["a b c d", "e f g h"], PERFECT)


def test_caption_needs_references():
    with pytest.raises(UserError, match="references"):
        get_scorer("caption", "python").score(["a"], [rec("a")])


def test_synthetic_variant_is_bounded_mean_of_six_metrics():
    """caption/synthetic = mean(BLEU-1..4, ROUGE-L, CIDEr-D/10) x 100, always within 0-100."""
    from mcit_bench.scorers import get_scorer

    refs = [["a red circle above a blue square", "a blue square below a red circle"],
            ["a green cross to the left of a yellow triangle", "a yellow triangle to the right of a green cross"],
            ["a purple circle above a red cross", "a red cross below a purple circle"]]
    records = [{"uid": str(i), "target": r[0], "references": r, "choices": []} for i, r in enumerate(refs)]
    scorer = get_scorer("caption", "synthetic")
    perfect = scorer.score([r[0] for r in refs], records)
    d = perfect.details
    expected = (d["bleu_1"] + d["bleu_2"] + d["bleu_3"] + d["bleu_4"] + d["rouge_l"] + d["cider"] / 10) / 6
    assert abs(perfect.score - expected) < 1e-9
    assert d["bleu_4"] == pytest.approx(100.0) and d["rouge_l"] == pytest.approx(100.0)
    assert 0 < d["cider"] / 10 <= 100 and perfect.score <= 100
    wrong = scorer.score(["a blue square", "a red circle", "nothing"], records)
    assert wrong.score < perfect.score
