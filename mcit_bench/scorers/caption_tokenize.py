"""A pure-Python approximation of coco-caption's tokenisation (Stanford PTBTokenizer, lower-cased,
then punctuation tokens removed), for machines without Java.

What it reproduces: lower-casing; curly quotes read as straight ones; quotes, . , ; : ! ? - --
and ... removed as tokens (a run like "?!" stays, as PTB keeps it whole); brackets become
-lrb- -rrb- -lsb- -rsb- -lcb- -rcb- (coco's filter lists them upper-case, so after -lowerCase
they survive); & % $ # \\ split off and kept; clitics split ("doesn't" -> "does n't",
"can't" -> "ca n't", "dog's" -> "dog 's"); numbers keep their inner , . : ("5,000", "3.5",
"10:30"); abbreviations with inner periods ("u.s.", "a.m.", "e.g.") and a few common ones
("mr.", "etc.") keep their period. PTB's rarer rules (e.g. "'tis" -> "'t is") are not copied,
so scores can differ slightly from the Java path; never compare across backends.
"""
from __future__ import annotations

import re

# coco-caption's filter (its upper-case -LRB- style entries can never match after -lowerCase).
_REMOVED = {"''", "'", "``", "`", ".", "?", "!", ",", ":", "-", "--", "...", ";"}
_BRACKETS = {"(": "-lrb-", ")": "-rrb-", "[": "-lsb-", "]": "-rsb-", "{": "-lcb-", "}": "-rcb-"}
_BRACKET_TOKENS = set(_BRACKETS.values())
_ABBREVIATIONS = {"mr.", "mrs.", "ms.", "dr.", "st.", "jr.", "sr.", "vs.", "etc.", "inc.",
                  "co.", "ltd.", "mt.", "ft."}
_CLITIC = re.compile(r"(.+?)('s|'m|'d|'ll|'re|'ve)")
_INNER_PERIOD_ABBREV = re.compile(r"(?:[a-z]\.){2,}|(?:[a-z]\.)+[a-z]")


def _split_word(word: str) -> list[str]:
    """Split one whitespace-free chunk into PTB-like tokens (punctuation still included)."""
    if word in _BRACKET_TOKENS:
        return [word]
    head: list[str] = []
    tail: list[str] = []
    # Opening quotes and hyphens glued to the front.
    while word and word[0] in "'`-":
        head.append(word[0])
        word = word[1:]
    # Closing quotes, hyphens and a sentence period glued to the back.
    while word:
        if word[-1] in "'`-":
            tail.insert(0, word[-1])
            word = word[:-1]
        elif word.endswith(".") and len(word) > 1 and word not in _ABBREVIATIONS \
                and not _INNER_PERIOD_ABBREV.fullmatch(word):
            tail.insert(0, ".")
            word = word[:-1]
        else:
            break
    if not word:
        return head + tail
    if word.endswith("n't") and len(word) > 3:
        body = [word[:-3], "n't"]
    else:
        m = _CLITIC.fullmatch(word)
        body = [m.group(1), m.group(2)] if m else [word]
    return head + body + tail


def ptb_like_tokenize(text: str) -> str:
    """Tokenise one caption: lower-case tokens joined by single spaces, punctuation removed."""
    s = text.lower()
    s = s.replace("\u2019", "'").replace("\u2018", "'").replace("\u201c", '"').replace("\u201d", '"')
    s = s.replace('"', " ")
    for mark, name in _BRACKETS.items():
        s = s.replace(mark, f" {name} ")
    s = re.sub(r"\.{3,}", " ", s)                 # ellipsis: a removed token
    s = re.sub(r"-{2,}", " ", s)                  # dashes: a removed token
    s = re.sub(r"(?<!\d)[,:]|[,:](?!\d)", " ", s)  # , and : except inside numbers
    s = s.replace(";", " ")
    s = re.sub(r"[?!]+", lambda m: " " if len(m.group()) == 1 else f" {m.group()} ", s)
    s = re.sub(r"([&%$#\\])", r" \1 ", s)
    tokens: list[str] = []
    for chunk in s.split():
        tokens.extend(_split_word(chunk))
    return " ".join(t for t in tokens if t and t not in _REMOVED)
