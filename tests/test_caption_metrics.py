"""Our pure-Python BLEU-1..4, ROUGE-L and CIDEr-D equal pycocoevalcap's on identical tokens.

Skipped when pycocoevalcap is not importable. The PTBTokenizer / METEOR tests also need `java`
and skip cleanly without it. pycocoevalcap is reference only here: the package never needs it.
"""
from __future__ import annotations

import random
import shutil
import sys

import pytest

pytest.importorskip("pycocoevalcap.bleu.bleu")

from mcit_bench.scorers import caption_coco, get_scorer  # noqa: E402
from mcit_bench.scorers.caption import python_metrics  # noqa: E402
from mcit_bench.scorers.caption_tokenize import ptb_like_tokenize  # noqa: E402
from scorer_records import rec  # noqa: E402

needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="needs java on PATH")

# Pre-tokenised (lower-case, no punctuation) candidate / references groups; each one stresses
# a different part of the definitions.
GROUPS = [
    # several references of different lengths
    ("a man riding a horse on a beach",
     ["a man rides a horse along the beach", "a person on a horse near the ocean",
      "man riding horse on sand", "a horse and rider on the shore",
      "someone is riding a brown horse on a beach"]),
    # repeated n-grams: clipping in BLEU and CIDEr
    ("a dog a dog a dog", ["a dog runs in the grass", "the dog is playing", "a brown dog"]),
    # empty candidate
    ("", ["an empty plate on a table", "a white plate"]),
    # short candidate: brevity penalty, CIDEr length penalty
    ("two people", ["two people walking down a street in the rain",
                    "a couple walks in the rain with an umbrella"]),
    # long candidate
    ("a red bus parked on the side of a busy city street next to a tall building with many windows",
     ["a red bus on a street", "a double decker bus parked by a building"]),
    # candidate equal to one reference
    ("a cat sitting on a laptop keyboard",
     ["a cat sitting on a laptop keyboard", "a cat on a keyboard", "a cat lying on a computer"]),
    # closest-reference-length tie (3 and 5 around 4): the shorter wins
    ("a b c d", ["a b c", "a b c d e"]),
]


def _random_corpus(seed: int, n_images: int = 40) -> tuple[list[str], list[list[str]]]:
    rng = random.Random(seed)
    vocab = "a the dog cat man woman red blue sits runs on in near table street ball".split()

    def sentence() -> str:
        return " ".join(rng.choice(vocab) for _ in range(rng.randint(1, 12)))

    cands = [sentence() for _ in range(n_images)]
    refs = [[sentence() for _ in range(rng.randint(1, 5))] for _ in range(n_images)]
    return cands, refs


CORPORA = {
    "groups": ([c for c, _ in GROUPS], [r for _, r in GROUPS]),
    "one_image": ([GROUPS[0][0]], [GROUPS[0][1]]),
    "random": _random_corpus(0),
}


@pytest.mark.parametrize("corpus", sorted(CORPORA))
def test_python_metrics_equal_pycocoevalcap(corpus):
    cands, refs = CORPORA[corpus]
    ours = python_metrics(cands, refs)
    theirs = caption_coco.coco_bleu_rouge_cider(cands, refs)
    assert set(ours) == set(theirs)
    for metric in theirs:
        assert ours[metric] == pytest.approx(theirs[metric], abs=1e-6), metric


@pytest.mark.parametrize("corpus", sorted(CORPORA))
def test_per_image_rouge_and_cider_equal_pycocoevalcap(corpus):
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    from mcit_bench.scorers.caption_metrics import cider_d, rouge_l

    cands, refs = CORPORA[corpus]
    gts = {i: list(r) for i, r in enumerate(refs)}
    res = {i: [c] for i, c in enumerate(cands)}
    _, coco_rouge = Rouge().compute_score(gts, res)
    _, coco_cider = Cider().compute_score(gts, res)
    assert rouge_l(cands, refs)[1] == pytest.approx(list(coco_rouge), abs=1e-6)
    assert cider_d(cands, refs)[1] == pytest.approx(list(coco_cider), abs=1e-6)


# Typical captions; on these our tokenizer must reproduce PTBTokenizer exactly.
RAW_CAPTIONS = [
    "A man's dog, running (fast) on the U.S. road.",
    'He doesn\'t like "quotes" -- or dashes - really!',
    "It's 10:30 a.m. ... wait?!",
    "can't won't I'm they'll we've",
    "black-and-white photo of 3.5 cats & 2 dogs; [bracket] 50% off $5",
    "the dog\u2019s bone \u201cquoted\u201d text",
    "Mr. Smith went to the store, etc.",
    "A white plate topped with a sandwich and a cup of coffee.",
    "Two men are standing next to each other, one is holding a phone.",
    "The image shows a blurry photo of a can of soup; it's red.",
    "",
    "   ",
]


@needs_java
def test_python_tokenizer_matches_ptbtokenizer():
    java = caption_coco.ptb_tokenize(RAW_CAPTIONS)
    assert [ptb_like_tokenize(c) for c in RAW_CAPTIONS] == java


@needs_java
def test_ptb_tokenize_keeps_alignment_with_line_breaks_and_trailing_empties():
    texts = ["first one", "x\ry", "a\u2028b", "end.", "", ""]
    assert caption_coco.ptb_tokenize(texts) == ["first one", "x y", "a b", "end", "", ""]


@needs_java
def test_caption_auto_uses_coco_with_meteor_and_never_spice():
    preds = ["A man riding a horse on a beach.", "A dog, a dog.", "Two people."]
    refs = [GROUPS[0][1], GROUPS[1][1], GROUPS[3][1]]
    records = [rec("", references=r) for r in refs]
    res = get_scorer("caption").score(preds, records)  # one METEOR JVM start, ~10 s
    d = res.details
    assert d["backend"] == "coco" and d["tokenizer"] == "ptb_java"
    assert d["n_metrics"] == 7 and "warning" not in d
    assert 0.0 < d["meteor"] <= 100.0
    values = [d[m] for m in ("bleu_1", "bleu_2", "bleu_3", "bleu_4", "meteor", "rouge_l", "cider")]
    assert res.score == pytest.approx(sum(values) / 7)
    # the python path differs only by METEOR here (both tokenizers agree on these captions)
    py = get_scorer("caption", "python").score(preds, records).details
    for m in ("bleu_1", "bleu_2", "bleu_3", "bleu_4", "rouge_l", "cider"):
        assert py[m] == pytest.approx(d[m], abs=1e-4), m
    assert "pycocoevalcap.spice.spice" not in sys.modules
    assert "pycocoevalcap.eval" not in sys.modules
