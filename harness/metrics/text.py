"""Cheap reference-free and reference-based text statistics: ROUGE-L, distinct-n, length."""
from __future__ import annotations

import re

_TOKEN_RE = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def tokens(text: str) -> list[str]:
    return _TOKEN_RE.findall(text.lower())


def _lcs(a: list[str], b: list[str]) -> int:
    if not a or not b:
        return 0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b, 1):
            cur.append(prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1]))
        prev = cur
    return prev[-1]


def rouge_l(candidate: str, reference: str) -> float:
    """ROUGE-L F1 on lower-cased word tokens (same definition as rouge-score's rougeL)."""
    c, r = tokens(candidate), tokens(reference)
    lcs = _lcs(c, r)
    if lcs == 0:
        return 0.0
    p, rec = lcs / len(c), lcs / len(r)
    return 2 * p * rec / (p + rec)


def distinct_n(text: str, n: int = 2) -> float:
    """Unique n-grams / n-grams; 0 for texts shorter than n tokens."""
    t = tokens(text)
    grams = [tuple(t[i:i + n]) for i in range(len(t) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def repeated_ngram_rate(text: str, n: int = 3) -> float:
    """Share of n-grams that occurred earlier in the same text."""
    t = tokens(text)
    grams = [tuple(t[i:i + n]) for i in range(len(t) - n + 1)]
    if not grams:
        return 0.0
    seen, rep = set(), 0
    for g in grams:
        rep += g in seen
        seen.add(g)
    return rep / len(grams)


def first_paragraph(text: str) -> str:
    """The first non-empty paragraph of a generation (base models often open with blank lines
    and run on into a new 'Product:' block)."""
    text = (text or "").strip()
    return text.split("\n\n", 1)[0].strip()


def product_text(product: dict) -> str:
    """Flat text of everything the product JSON says: for embeddings and claim checks."""
    parts = [product.get("title", ""), product.get("brand", "")]
    parts += product.get("category", [])
    price = product.get("price") or {}
    for k in ("amount", "list_price"):
        if price.get(k) is not None:
            parts.append(f"{price.get('currency', '')} {price[k]:g}")
    if price.get("discount_percent") is not None:
        parts.append(f"{price['discount_percent']:g}% off")
    if product.get("rating") is not None:
        parts.append(f"rated {product['rating']:g} out of 5")
    parts += product.get("features", [])
    parts += [f"{k}: {v}" for k, v in (product.get("details") or {}).items()]
    return "\n".join(p for p in parts if p)
