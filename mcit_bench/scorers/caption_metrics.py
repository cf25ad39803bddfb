"""Pure-Python BLEU-1..4, ROUGE-L and CIDEr-D with coco-caption's exact definitions.

All functions take PRE-TOKENISED captions (tokens joined by single spaces), one candidate and a
non-empty list of references per image, and return values on coco's 0-1 scale (CIDEr 0-10).
They agree with pycocoevalcap to floating-point rounding on identical input.
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Sequence

# coco-caption's smoothing: a zero n-gram match gives a tiny BLEU, not a zero division.
_TINY = 1e-15
_SMALL = 1e-9


def ngram_counts(tokens: Sequence[str], n: int) -> Counter:
    """Counts of every 1..n-gram (as tuples) in `tokens`."""
    counts: Counter = Counter()
    for k in range(1, n + 1):
        for i in range(len(tokens) - k + 1):
            counts[tuple(tokens[i:i + k])] += 1
    return counts


def bleu(candidates: Sequence[str], references: Sequence[Sequence[str]], n: int = 4) -> list[float]:
    """Corpus BLEU-1..n, coco-caption style.

    Clipped n-gram matches (each n-gram counted at most its max count in any single reference)
    and candidate n-gram totals are summed over the corpus; p_k = (matches_k + 1e-15) /
    (total_k + 1e-9); BLEU-k = (p_1 ... p_k) ** (1/k). Brevity penalty, corpus-level: c = total
    candidate length, r = sum over images of the reference length CLOSEST to the candidate's (ties
    -> the shorter); ratio = (c + 1e-15) / (r + 1e-9); when ratio < 1 every BLEU-k is multiplied by
    exp(1 - 1/ratio).
    """
    matches = [0] * n
    totals = [0] * n
    cand_len = 0
    ref_len = 0
    for cand, refs in zip(candidates, references):
        tokens = cand.split()
        length = len(tokens)
        max_ref: dict[tuple, int] = {}
        ref_lengths = []
        for ref in refs:
            ref_tokens = ref.split()
            ref_lengths.append(len(ref_tokens))
            for gram, count in ngram_counts(ref_tokens, n).items():
                if count > max_ref.get(gram, 0):
                    max_ref[gram] = count
        cand_len += length
        ref_len += min(ref_lengths, key=lambda r: (abs(r - length), r))
        for k in range(n):
            totals[k] += max(0, length - k)
        for gram, count in ngram_counts(tokens, n).items():
            matches[len(gram) - 1] += min(count, max_ref.get(gram, 0))

    scores = []
    product = 1.0
    for k in range(n):
        product *= (matches[k] + _TINY) / (totals[k] + _SMALL)
        scores.append(product ** (1.0 / (k + 1)))
    ratio = (cand_len + _TINY) / (ref_len + _SMALL)
    if ratio < 1:
        penalty = math.exp(1 - 1 / ratio)
        scores = [s * penalty for s in scores]
    return scores


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence of two token lists (O(len(a)*len(b)) time)."""
    if len(a) < len(b):
        a, b = b, a
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l(candidates: Sequence[str], references: Sequence[Sequence[str]],
            beta: float = 1.2) -> tuple[float, list[float]]:
    """ROUGE-L, coco-caption style: per image, P = max over refs of LCS/len(cand) and R = max over
    refs of LCS/len(ref) (maximised SEPARATELY), F = (1 + beta^2) P R / (R + beta^2 P) (0 when P or R
    is 0); returns (mean F over images, per-image F). Tokens come from split(" ") as in coco, so
    an empty caption is one empty token."""
    per_image = []
    b2 = beta * beta
    for cand, refs in zip(candidates, references):
        c_tokens = cand.split(" ")
        best_p = 0.0
        best_r = 0.0
        for ref in refs:
            r_tokens = ref.split(" ")
            lcs = lcs_length(r_tokens, c_tokens)
            best_p = max(best_p, lcs / len(c_tokens))
            best_r = max(best_r, lcs / len(r_tokens))
        if best_p != 0 and best_r != 0:
            per_image.append((1 + b2) * best_p * best_r / (best_r + b2 * best_p))
        else:
            per_image.append(0.0)
    return sum(per_image) / len(per_image), per_image


def cider_d(candidates: Sequence[str], references: Sequence[Sequence[str]], n: int = 4,
            sigma: float = 6.0) -> tuple[float, list[float]]:
    """CIDEr-D as coco-caption's `Cider` computes it; returns (mean over images, per-image).

    Document frequency df(g) = number of images whose reference set contains n-gram g, over THE
    SCORED SET ONLY. A caption becomes, per order k = 1..n, a vector of tf(g) * (log N - log max(1,
    df(g))), N = number of images. Per reference: for each k, sum over candidate n-grams of
    min(w_cand, w_ref) * w_ref (clipping), divided by the two vector norms when both are non-zero,
    times the length penalty exp(-(l_cand - l_ref)^2 / (2 sigma^2)), where a caption's length l is
    its number of BIGRAMS (coco's quirk: max(0, words - 1)). Image score = 10 * mean over k of the
    sum over references / number of references.
    """
    cand_counts = [ngram_counts(c.split(), n) for c in candidates]
    ref_counts = [[ngram_counts(r.split(), n) for r in refs] for refs in references]
    df: Counter = Counter()
    for refs in ref_counts:
        df.update(set().union(*(r.keys() for r in refs)))
    log_n = math.log(float(len(candidates)))

    def vectorise(counts: Counter) -> tuple[list[dict], list[float], int]:
        vec: list[dict] = [{} for _ in range(n)]
        sq = [0.0] * n
        length = 0
        for gram, tf in counts.items():
            k = len(gram) - 1
            w = float(tf) * (log_n - math.log(max(1.0, df.get(gram, 0.0))))
            vec[k][gram] = w
            sq[k] += w * w
            if k == 1:
                length += tf
        return vec, [math.sqrt(s) for s in sq], length

    per_image = []
    for counts, refs in zip(cand_counts, ref_counts):
        c_vec, c_norm, c_len = vectorise(counts)
        total = [0.0] * n
        for ref in refs:
            r_vec, r_norm, r_len = vectorise(ref)
            penalty = math.exp(-((c_len - r_len) ** 2) / (2 * sigma ** 2))
            for k in range(n):
                dot = 0.0
                for gram, w in c_vec[k].items():
                    w_ref = r_vec[k].get(gram, 0.0)
                    dot += min(w, w_ref) * w_ref
                if c_norm[k] != 0 and r_norm[k] != 0:
                    dot /= c_norm[k] * r_norm[k]
                total[k] += dot * penalty
        per_image.append(10.0 * (sum(total) / n) / len(refs))
    return sum(per_image) / len(per_image), per_image
