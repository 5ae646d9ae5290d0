"""Classification metrics: accuracy, macro-F1, and reading a class name out of generated text.

`macro_f1(pairs)` is an lm-eval aggregation: it gets every doc's (gold, pred) pair at once.
Classes are those seen as gold or as a (valid) prediction, as in scikit-learn's default; an
unparsable output (pred None) counts against the gold class's recall only."""
from __future__ import annotations

import re
from collections import Counter

_PUNCT = re.compile(r"[^\w&+%' ]+")


def norm_label(text: str) -> str:
    return " ".join(_PUNCT.sub(" ", text.lower()).split())


def parse_choice(text: str, labels: list[str]) -> str | None:
    """The class a generated answer names: an exact (normalised) match of the first line, else
    the class name that appears first in it as whole words (the longest one at that place);
    None when none does."""
    first = next((ln for ln in text.strip().splitlines() if ln.strip()), "")
    by_norm = {norm_label(x): x for x in labels}
    answer = norm_label(first)
    if answer in by_norm:
        return by_norm[answer]
    padded = f" {answer} "
    hits = [(padded.find(f" {n} "), -len(n), n) for n in by_norm if n and f" {n} " in padded]
    return by_norm[min(hits)[2]] if hits else None


def macro_f1(pairs) -> float:
    pairs = [(g, p) for g, p in pairs]
    if not pairs:
        return 0.0
    classes = {g for g, _ in pairs} | {p for _, p in pairs if p is not None}
    tp, fp, fn = Counter(), Counter(), Counter()
    for g, p in pairs:
        if g == p:
            tp[g] += 1
        else:
            fn[g] += 1
            if p is not None:
                fp[p] += 1
    f1 = [2 * tp[c] / (2 * tp[c] + fp[c] + fn[c]) for c in classes]
    return sum(f1) / len(f1)


def accuracy(pairs) -> float:
    pairs = list(pairs)
    return sum(g == p for g, p in pairs) / len(pairs) if pairs else 0.0
