"""The EvalAI / official VQA answer normaliser used by TextVQA's soft accuracy (m4c evaluator).

Steps, in order (each reproduces the reference behaviour, quirks included):
  1. lower-case; delete "," and "?"; "'s" -> " 's"; strip.
  2. punctuation: for each mark in PUNCTUATION, delete it when the text has it next to a space
     (or has a digit,digit comma, which step 1 already removed), else replace it by a space.
     Then delete every "." not followed by a digit; the reference passes re.UNICODE (= 32) as
     the `count` argument of re.sub, so at most 32 periods go.
  3. words: number words zero..ten and "none" -> digits; drop articles a/an/the; expand
     apostrophe-less contractions ("dont" -> "don't").
"""
from __future__ import annotations

import re

_PUNCTUATION = [";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<",
                "@", "`", ",", "?", "!"]
_COMMA_BETWEEN_DIGITS = re.compile(r"(?<=\d)(\,)+(?=\d)")
# The reference pattern starts with "(?!<=\d)", a look-AHEAD that never fires (a typo for a
# look-behind), so in effect: a period not followed by a digit.
_PERIOD_NOT_BEFORE_DIGIT = re.compile(r"\.(?!\d)")
_PERIOD_SUB_COUNT = int(re.UNICODE)  # 32, see the module docstring

_NUMBER_WORDS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4",
                 "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
_ARTICLES = {"a", "an", "the"}

# Contracted forms known to the reference table. Its keys are these forms with exactly ONE
# apostrophe removed (all choices of which one), e.g. "couldn't've" <- "couldnt've", "couldn'tve".
# Capitalised (I'm, I've...) and identity (let's, she's) entries of the reference table are left
# out: after lower-casing they can never change a word.
_CONTRACTED = """
ain't aren't can't could've couldn't couldn't've didn't doesn't don't hadn't hadn't've hasn't
haven't he'd he'd've he's how'd how'll how's isn't it'd it'd've it'll ma'am mightn't
mightn't've might've mustn't must've needn't not've o'clock oughtn't 'ow's'at shan't she'd've
should've shouldn't shouldn't've somebody'd've somebody'll somebody's someone'd someone'd've
someone'll someone's something'd something'd've something'll that's there'd there'd've there're
there's they'd they'd've they'll they're they've 'twas wasn't we'd've we've weren't what'll
what're what's what've when's where'd where's where've who'd who'd've who'll who's who've why'll
why're why's won't would've wouldn't wouldn't've y'all y'all'll y'all'd've you'd you'd've
you'll you're you've
""".split()


def _contraction_table() -> dict[str, str]:
    table: dict[str, str] = {}
    for form in _CONTRACTED:
        for i, ch in enumerate(form):
            if ch == "'":
                table[form[:i] + form[i + 1:]] = form
    # The reference maps this one backwards; kept for fidelity.
    table["somebody'd"] = "somebodyd"
    return table


_CONTRACTIONS = _contraction_table()


def _punctuation(text: str) -> str:
    out = text
    comma_digits = _COMMA_BETWEEN_DIGITS.search(text) is not None
    for p in _PUNCTUATION:
        # The test looks at the ORIGINAL text, the replacement acts on the running output.
        if (p + " " in text or " " + p in text) or comma_digits:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return _PERIOD_NOT_BEFORE_DIGIT.sub("", out, count=_PERIOD_SUB_COUNT)


def _digits_articles_contractions(text: str) -> str:
    words = []
    for word in text.lower().split():
        word = _NUMBER_WORDS.get(word, word)
        if word not in _ARTICLES:
            words.append(word)
    return " ".join(_CONTRACTIONS.get(w, w) for w in words)


def normalize_vqa_answer(answer: str) -> str:
    """Normalise one answer (prediction or reference) as EvalAI does."""
    text = answer.lower().replace(",", "").replace("?", "").replace("'s", " 's").strip()
    text = text.replace("\n", " ").replace("\t", " ").strip()
    return _digits_articles_contractions(_punctuation(text))
