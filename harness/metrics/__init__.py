"""Metrics stage. `score_review(record, text)` returns the per-sample metric dict of the
product_review task; `score_reviews(records, texts)` does the same for many texts at once
(batched reference LM and embeddings). Every scorer in SCORERS contributes its keys; lm-eval
aggregates them as listed in tasks/product_review/product_review.yaml, `aggregate()` does the
same for `harness score`.

Per-sample keys (stable; the compare report reads them):
  hallucination  hallucination_rate, contradiction, claims_found, unsupported, contradicted,
                 hallucination_claims (per-claim detail; run level: pooled unsupported/claims)
  fluency        bits_per_byte (absent for empty text), end_bits, fluency_score, distinct_2,
                 repeated_3gram_rate, length_words, degenerate, degenerate_empty,
                 degenerate_cutoff, degenerate_echo, degenerate_loop
  relevance      relevance_product, relevance_reference, attribute_coverage (absent when the
                 product has no key attributes), rouge_l
  parent         parent_precision, parent_recall, parent_f1 (PARENT: n-gram overlap with the
                 product table and the reference review, see parent.py)
  nli (optional) nli_entailment, nli_unsupported_rate, nli_contradiction
"""
from __future__ import annotations

from typing import Callable

from . import config as _config


def _hallucination(records, texts, cfg, shared):
    from .hallucination import hallucination_scores
    out = [hallucination_scores(r["product"], t) for r, t in zip(records, texts)]
    shared["claims"] = [d["hallucination_claims"] for d in out]
    return out


def _fluency(records, texts, cfg, shared):
    from .fluency import fluency_scorer
    ref = _config.reference_for(cfg.model_under_test, cfg.fluency_reference)
    return fluency_scorer(records, texts, ref)


def _relevance(records, texts, cfg, shared):
    from .relevance import relevance_scorer
    return relevance_scorer(records, texts, shared.get("claims"))


def _parent(records, texts, cfg, shared):
    from .parent import parent_scorer
    return parent_scorer(records, texts)


def _nli(records, texts, cfg, shared):
    if not cfg.nli_model:
        return [{} for _ in texts]
    from .nli import nli_scorer
    return nli_scorer(records, texts, cfg.nli_model)


# name -> fn(records, texts, config, shared) -> [per-sample dict]; run in this order, `shared`
# passes intermediate results on (relevance reuses the checked claims).
SCORERS: dict[str, Callable] = {"hallucination": _hallucination, "fluency": _fluency,
                                "relevance": _relevance, "parent": _parent, "nli": _nli}


def score_reviews(records: list[dict], texts: list[str],
                  config: _config.ScoringConfig | None = None) -> list[dict]:
    cfg = config or _config.current()
    names = cfg.scorers or tuple(SCORERS)
    unknown = [n for n in names if n not in SCORERS]
    if unknown:
        from ..errors import HarnessError
        raise HarnessError(f"unknown scorer(s) {', '.join(unknown)}; known: {', '.join(SCORERS)}")
    texts = [t if isinstance(t, str) else "" for t in texts]
    out: list[dict] = [{} for _ in texts]
    shared: dict = {}
    for name in SCORERS:
        if name in names:
            for d, part in zip(out, SCORERS[name](records, texts, cfg, shared)):
                d.update(part)
    return out


_PREFETCHED: dict = {}


def _prefetch_key(record: dict, text, cfg) -> tuple:
    import json
    text = text if isinstance(text, str) else ""
    return json.dumps(record, sort_keys=True, default=str), text, cfg


def prefetch(records: list[dict], texts: list[str]) -> None:
    """Score many texts in one batch and keep the results for the score_review calls that
    follow (lm-eval calls process_results once per document; the product_review task calls
    this from its filter with every document)."""
    cfg = _config.current()
    _PREFETCHED.clear()
    for r, t, d in zip(records, texts, score_reviews(records, texts, cfg)):
        _PREFETCHED[_prefetch_key(r, t, cfg)] = d


def score_review(record: dict, text: str) -> dict:
    cfg = _config.current()
    hit = _PREFETCHED.pop(_prefetch_key(record, text, cfg), None)
    return hit if hit is not None else score_reviews([record], [text], cfg)[0]


# Keys that score a text against the record's own reference review: empty when the text scored
# is that reference (the human reference row of `harness compare`).
REFERENCE_BASED = ("relevance_reference", "rouge_l", "parent_precision", "parent_recall",
                   "parent_f1")
