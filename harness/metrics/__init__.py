"""Metrics stage. `score_review(record, text)` returns the per-sample metric dict of the
product_review task; every scorer in SCORERS contributes its keys. lm-eval aggregates them
(mean) as listed in tasks/product_review/product_review.yaml."""
from __future__ import annotations

from typing import Callable

from .text import distinct_n, rouge_l, tokens


def _basic(record: dict, text: str) -> dict:
    return {"rouge_l": rouge_l(text, record.get("review", "")),
            "distinct_2": distinct_n(text, 2),
            "length_words": float(len(tokens(text)))}


# name -> fn(record, generated_text) -> {metric: value}
SCORERS: dict[str, Callable[[dict, str], dict]] = {"basic": _basic}


def score_review(record: dict, text: str) -> dict:
    out: dict = {}
    for fn in SCORERS.values():
        out.update(fn(record, text))
    return out
