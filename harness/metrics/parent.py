"""PARENT (Dhingra et al., 2019, "Handling Divergent Reference Texts when Evaluating
Table-to-Text Generation"): n-gram overlap of a review with both the product table and the
reference review, so a review is not penalised for stating a listing fact the reference left
out. No model; words are harness.metrics.text.tokens (lower-cased, alphanumeric).

The table is the product JSON as the model sees it (harness.prompts.product_for_prompt),
flattened to (attribute, value) entries: title, brand, one entry per category level, price
amount, list price, discount percent, rating, one entry per feature bullet, one per detail.

For the n-grams g of order n = 1..4 of the text G and of the reference R (#X(g): count of g in X),
with the word-overlap entailment model w(g) = share of g's words found among the table's values:

    P_n  = sum_g #G(g) [p(g) + (1 - p(g)) w(g)] / sum_g #G(g),  p(g) = min(1, #R(g) / #G(g))
    Rr_n = sum_g #R(g) w(g) min(1, #G(g) / #R(g)) / sum_g #R(g) w(g)   (g over R's n-grams)
    Rt   = mean over table entries of LCS(value, G) / len(value)
    precision = geometric mean of P_1..P_4;  recall = Rr^(1 - lambda) * Rt^lambda,
    Rr = geometric mean of Rr_1..Rr_4;  F1 = 2 P R / (P + R)

Edge cases as in the paper's released implementation (google-research/language,
table_text_eval.py): an order with no text n-grams has precision 0, one whose reference n-grams
are all unentailed has recall 1; a zero precision / recall of order 2..4 becomes SMOOTHING
(a short text with no 4-gram in common is not zeroed); a zero unigram precision makes the
precision 0; a zero reference recall of any order or a zero table recall becomes SMOOTHING.

lambda = 0.5 (LAMBDA), the paper's default, rather than its per-example variant
lambda = 1 - (mean mention probability of the table entries in the reference): real reviews
mention few listing entries, so that variant puts lambda near 1 and scores recall almost only
against the table, rewarding a review that copies the listing.
"""
from __future__ import annotations

import math
from collections import Counter

from .text import _lcs, tokens

MAX_ORDER = 4
LAMBDA = 0.5
SMOOTHING = 1e-5


def product_table(product: dict) -> list[tuple[str, str]]:
    """(attribute, value) entries of the product as shown in the prompt."""
    from ..prompts import product_for_prompt

    shown = product_for_prompt(product)
    out: list[tuple[str, str]] = []
    for key in ("title", "brand"):
        if shown.get(key):
            out.append((key, str(shown[key])))
    if "category" in shown:
        out += [("category", str(c)) for c in product["category"] if c]
    price = shown.get("price") or {}
    if isinstance(price, dict):
        for key in ("amount", "list_price", "discount_percent"):
            if isinstance(price.get(key), (int, float)):
                out.append(("price" if key == "amount" else key, f"{price[key]:g}"))
    if isinstance(shown.get("rating"), (int, float)):
        out.append(("rating", f"{shown['rating']:g}"))
    out += [("feature", str(f)) for f in shown.get("features") or [] if f]
    out += [(str(k), str(v)) for k, v in (shown.get("details") or {}).items() if v]
    return out


def _ngrams(words: list[str], n: int) -> Counter:
    return Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))


def _geometric_mean(values: list[float]) -> float:
    return math.exp(math.fsum(math.log(v) for v in values) / len(values))


def parent_tokens(table: list[list[str]], text: list[str], reference: list[str],
                  max_order: int = MAX_ORDER, lam: float = LAMBDA) -> dict:
    """PARENT of tokenised inputs; `table` is the list of tokenised values (see module doc)."""
    table = [v for v in table if v]
    values = {w for value in table for w in value}

    def entailed(g: tuple[str, ...]) -> float:
        return sum(w in values for w in g) / len(g)

    precisions, recalls = [], []
    for n in range(1, max_order + 1):
        got, ref = _ngrams(text, n), _ngrams(reference, n)
        num = 0.0
        for g, c in got.items():
            in_ref = min(1.0, ref[g] / c)
            num += c * (in_ref + (1 - in_ref) * entailed(g))
        den = sum(got.values())
        precisions.append(num / den if den else 0.0)
        weights = {g: entailed(g) for g in ref}
        num = sum(c * weights[g] * min(1.0, got[g] / c) for g, c in ref.items())
        den = sum(c * weights[g] for g, c in ref.items())
        recalls.append(num / den if den else 1.0)
    for i in range(1, max_order):
        precisions[i] = precisions[i] or SMOOTHING
        recalls[i] = recalls[i] or SMOOTHING
    precision = 0.0 if 0.0 in precisions else _geometric_mean(precisions)
    ref_recall = SMOOTHING if 0.0 in recalls else _geometric_mean(recalls)
    table_recall = (sum(_lcs(v, text) / len(v) for v in table) / len(table)
                    if table else 0.0) or SMOOTHING
    recall = math.exp((1 - lam) * math.log(ref_recall) + lam * math.log(table_recall))
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"parent_precision": precision, "parent_recall": recall, "parent_f1": f1}


def parent(product: dict, text: str, reference: str) -> dict:
    """{"parent_precision", "parent_recall", "parent_f1"} of `text` against the product table
    and the reference review."""
    table = [tokens(v) for _, v in product_table(product)]
    return parent_tokens(table, tokens(text or ""), tokens(reference or ""))


def parent_scorer(records: list[dict], texts: list[str]) -> list[dict]:
    return [parent(r.get("product") or {}, t, r.get("review") or "")
            for r, t in zip(records, texts)]
