"""The pycocoevalcap backend: its PTBTokenizer, Bleu(4), Meteor(), Rouge() and Cider().

Never touches Spice nor COCOEvalCap.evaluate: SPICE downloads Stanford CoreNLP on first use and
fails offline. pycocoevalcap is imported lazily so that importing mcit_bench.scorers stays cheap.
"""
from __future__ import annotations

import importlib.util
import re
import shutil
from typing import Sequence

# Characters Java (or PTBTokenizer -preserveLines) may treat as line breaks: one inside a caption
# would shift every later caption onto the wrong image.
_LINE_BREAKS = re.compile(r"[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")


def coco_available() -> bool:
    """True when pycocoevalcap is importable and `java` is on PATH."""
    try:
        found = importlib.util.find_spec("pycocoevalcap.bleu.bleu") is not None
    except ImportError:  # a missing or broken parent package
        found = False
    return found and shutil.which("java") is not None


def ptb_tokenize(texts: Sequence[str]) -> list[str]:
    """Tokenise captions with coco's PTBTokenizer (one JVM start for all of them)."""
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    clean = []
    for text in texts:
        text = _LINE_BREAKS.sub(" ", text)
        # An empty line at the end of the batch is dropped by the tokenizer and would leave its
        # key missing; "." tokenises to nothing after coco's punctuation filter, so it is safe.
        clean.append(text if text.strip() else ".")
    out = PTBTokenizer().tokenize({i: [{"caption": t}] for i, t in enumerate(clean)})
    if len(out) != len(clean):
        raise RuntimeError(f"PTBTokenizer returned {len(out)} captions for {len(clean)}")
    return [out[i][0] for i in range(len(clean))]


def _as_dicts(candidates: Sequence[str], references: Sequence[Sequence[str]]):
    res = {i: [c] for i, c in enumerate(candidates)}
    gts = {i: list(refs) for i, refs in enumerate(references)}
    return gts, res


def coco_bleu_rouge_cider(candidates: Sequence[str], references: Sequence[Sequence[str]]) -> dict:
    """BLEU-1..4, ROUGE-L and CIDEr from pycocoevalcap on pre-tokenised captions (0-1 / 0-10)."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    gts, res = _as_dicts(candidates, references)
    bleus, _ = Bleu(4).compute_score(gts, res, verbose=0)
    rouge, _ = Rouge().compute_score(gts, res)
    cider, _ = Cider().compute_score(gts, res)
    return {
        "bleu_1": float(bleus[0]), "bleu_2": float(bleus[1]),
        "bleu_3": float(bleus[2]), "bleu_4": float(bleus[3]),
        "rouge_l": float(rouge), "cider": float(cider),
    }


def coco_meteor(candidates: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Corpus METEOR 1.5 (coco's Meteor wrapper, Java) on pre-tokenised captions (0-1)."""
    from pycocoevalcap.meteor.meteor import Meteor

    gts, res = _as_dicts(candidates, references)
    # "|||" is the wrapper's field separator; the wrapper cleans it from candidates only.
    gts = {k: [r.replace("|||", " ") for r in v] for k, v in gts.items()}
    meteor = Meteor()
    try:
        score, _ = meteor.compute_score(gts, res)
    finally:
        # Stop the JVM now instead of whenever the garbage collector runs __del__.
        proc = meteor.meteor_p
        if proc.stdin is not None:
            proc.stdin.close()
        proc.kill()
        proc.wait()
        # The wrapper keeps its lock when compute_score raises; its __del__ would then block.
        if meteor.lock.locked():
            meteor.lock.release()
    return float(score)
