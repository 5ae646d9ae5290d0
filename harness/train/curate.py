"""`harness data curate`: the product_review train split -> one training example per kept real
review, so a model learns from the informative reviews, not from the templates.

Every real review of every train product (the record's `reviews`) is scored:

  * words                length in words
  * attribute_mentions   key product attributes it names (harness.metrics.relevance:
                         brand, product type, colour, material, title amounts, features)
  * claims               the hallucination checker's verdicts against the product JSON
                         (harness.metrics.hallucination.check_claims): supported /
                         unsupported / contradicted
  * generic_share        share of its word n-grams that are templates: n-grams found in
                         reviews of at least `template_min_products` different products
                         (a text repeated verbatim under several products counts once)

and dropped for the first reason that applies, in this order:
  contradicted (any contradicted claim), duplicate (the same words as a review of an earlier
  product), generic (generic_share >= generic_share), short (< min_words words),
  no_fact (fewer than min_facts product facts named: attribute mentions + supported claims),
  rank (not among the
  `per_product` best of its product by the informativeness score).
A product may keep no review at all; it is counted. Validation and test are copied unchanged.

    from harness.train.curate import CurateConfig, curate
    report = curate(CurateConfig(out="data/curated"))   # -> data/curated/product_review/...
"""
from __future__ import annotations

import shutil
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from ..errors import HarnessError
from ..files import atomic_path, read_json, read_jsonl, write_json, write_jsonl

TASK = "product_review"
REASONS = ("contradicted", "duplicate", "generic", "short", "no_fact", "rank")
CURATION_FILE = "curation.json"
QUANTILES = (10, 25, 50, 75, 90)


@dataclass
class CurateConfig:
    data: str | None = None          # source: None (data/prepared, else demo), "demo", a dir
    out: str | None = None           # default: data/curated, beside data/prepared
    per_product: int = 3             # k: at most this many reviews of one product, best first
    min_words: int = 15              # shorter reviews are dropped ("short")
    min_facts: int = 1               # attribute mentions + supported claims, at least
    ngram: int = 3                   # word n-grams for template detection
    template_min_products: int = 5   # an n-gram in reviews of >= this many products: a template
    generic_share: float = 0.5       # a review whose n-grams are >= this share templates: generic
    min_examples: int = 8            # fewer kept reviews than this cannot train: an error
    # informativeness score (ranks a product's reviews): weight_attribute * attribute mentions
    # + weight_supported * supported claims - weight_unsupported * unsupported claims
    # + min(words, length_cap_words) / length_cap_words - generic_share
    weight_attribute: float = 1.0
    weight_supported: float = 0.5
    weight_unsupported: float = 1.0
    length_cap_words: int = 60


RANGES = {"per_product": (1, 1000), "min_words": (0, 10_000),
          "min_facts": (0, 100), "ngram": (1, 10),
          "template_min_products": (2, 10_000_000), "generic_share": (0.0, 1.0),
          "min_examples": (1, 10_000_000), "weight_attribute": (0.0, 100.0),
          "weight_supported": (0.0, 100.0), "weight_unsupported": (0.0, 100.0),
          "length_cap_words": (1, 10_000)}
INTS = {f.name for f in fields(CurateConfig) if f.type == "int"}


def check_config(cfg: CurateConfig) -> None:
    bad = []
    for name, (lo, hi) in RANGES.items():
        v = getattr(cfg, name)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or \
                (name in INTS and not float(v).is_integer()):
            bad.append(f"{name}={v!r} is not a {'whole ' if name in INTS else ''}number")
        elif not lo <= v <= hi:
            bad.append(f"{name}={v} is out of range [{lo}, {hi}]")
    if bad:
        raise HarnessError("bad curation settings: " + "; ".join(bad))


# --- scoring -------------------------------------------------------------------------------

def _ngrams(words: list[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]


def reviews_of(rec: dict) -> list[dict]:
    """The record's real reviews; a record without a `reviews` list has its one review."""
    if rec.get("reviews"):
        return [r for r in rec["reviews"] if isinstance(r, dict) and str(r.get("text", "")).strip()]
    return [{"text": rec["review"]}] if str(rec.get("review", "")).strip() else []


def template_ngrams(records: list[dict], n: int, min_products: int) -> dict[tuple, int]:
    """n-gram -> number of products whose reviews use it, for the n-grams used by at least
    `min_products` products. A review text found under several products (the same review
    filed under product variants) counts for the first of them only."""
    from ..metrics.text import tokens

    seen: set[tuple] = set()
    products: dict[tuple, set] = defaultdict(set)
    for rec in records:
        for r in reviews_of(rec):
            words = tuple(tokens(r["text"]))
            if words in seen:
                continue
            seen.add(words)
            for g in _ngrams(list(words), n):
                products[g].add(rec["id"])
    return {g: len(p) for g, p in products.items() if len(p) >= min_products}


def score_review(product: dict, text: str, templates: dict, cfg: CurateConfig) -> dict:
    """A review's curation figures and informativeness score."""
    from ..metrics.hallucination import CONTRADICTED, SUPPORTED, UNSUPPORTED, check_claims
    from ..metrics.relevance import attribute_coverage, key_attributes
    from ..metrics.text import tokens

    words = tokens(text)
    covered = [False] * len(words)
    for i, g in enumerate(_ngrams(words, cfg.ngram)):
        if g in templates:
            covered[i:i + cfg.ngram] = [True] * cfg.ngram
    claims = check_claims(product, text)
    n_attr = len(key_attributes(product))
    cov = attribute_coverage(product, text, claims) if n_attr else None
    status = Counter(c["status"] for c in claims)
    d = {"words": len(text.split()),
         "attribute_mentions": round((cov or 0.0) * n_attr), "attributes": n_attr,
         "supported": status[SUPPORTED], "unsupported": status[UNSUPPORTED],
         "contradicted": status[CONTRADICTED],
         "generic_share": round(sum(covered) / len(words), 4) if words else 1.0}
    d["score"] = round(cfg.weight_attribute * d["attribute_mentions"]
                       + cfg.weight_supported * d["supported"]
                       - cfg.weight_unsupported * d["unsupported"]
                       + min(d["words"], cfg.length_cap_words) / cfg.length_cap_words
                       - d["generic_share"], 4)
    return d


def drop_reasons(s: dict, cfg: CurateConfig) -> list[str]:
    """Every reason (but duplicate and rank, decided across reviews) to drop a scored review."""
    out = []
    if s["contradicted"]:
        out.append("contradicted")
    if s["generic_share"] >= cfg.generic_share:
        out.append("generic")
    if s["words"] < cfg.min_words:
        out.append("short")
    if s["attribute_mentions"] + s["supported"] < cfg.min_facts:
        out.append("no_fact")
    return out


def distribution(values: list[float]) -> dict:
    import numpy as np

    if not values:
        return {"n": 0}
    q = np.percentile(np.asarray(values, dtype=float), QUANTILES)
    return {"n": len(values), "mean": round(float(np.mean(values)), 2),
            **{f"p{p}": round(float(v), 2) for p, v in zip(QUANTILES, q)}}


# --- the curation --------------------------------------------------------------------------

def curate_records(records: list[dict], cfg: CurateConfig | None = None) -> tuple[list, dict]:
    """(kept examples, report) for a list of prepared train records. A kept example is its
    product's record with that review as `review` (and a unique id PRODUCT_ID#INDEX)."""
    from ..metrics.text import tokens

    cfg = cfg or CurateConfig()
    check_config(cfg)
    templates = template_ngrams(records, cfg.ngram, cfg.template_min_products)
    seen_text: dict[tuple, str] = {}
    kept, detail = [], []
    by_source: dict[str, Counter] = defaultdict(Counter)
    targets: list[dict] = []
    for rec in records:
        src = rec.get("source", "")
        by_source[src]["products"] += 1
        scored = []
        for j, r in enumerate(reviews_of(rec)):
            s = score_review(rec["product"], r["text"], templates, cfg)
            reasons = drop_reasons(s, cfg)
            words = tuple(tokens(r["text"]))
            first = seen_text.setdefault(words, rec["id"])
            if first != rec["id"]:
                reasons = sorted(reasons + ["duplicate"], key=REASONS.index)
            scored.append((j, r, s, reasons))
            if r["text"] == rec.get("review"):
                targets.append(s)
        by_source[src]["reviews"] += len(scored)
        ok = sorted((x for x in scored if not x[3]), key=lambda x: (-x[2]["score"], x[0]))
        best = {x[0] for x in ok[:cfg.per_product]}
        for j, r, s, reasons in scored:
            if not reasons and j not in best:
                reasons.append("rank")
            detail.append({"id": rec["id"], "review_index": j, "source": src,
                           "kept": not reasons, "reason": reasons[0] if reasons else None,
                           "reasons": reasons, **s, "text": r["text"]})
        for j, r, s, _ in sorted((x for x in scored if x[0] in best),
                                 key=lambda x: (-x[2]["score"], x[0])):
            ex = {k: v for k, v in rec.items() if k not in ("review_title", "review_rating")}
            ex.update(id=f"{rec['id']}#{j}", product_id=rec["id"], review=r["text"],
                      review_title=r.get("title", ""),
                      curation={k: s[k] for k in ("score", "words", "attribute_mentions",
                                                  "supported", "unsupported",
                                                  "generic_share")})
            if r.get("rating") is not None:
                ex["review_rating"] = r["rating"]
            kept.append(ex)
        by_source[src]["kept"] += len(best)
        by_source[src]["products_with_kept"] += bool(best)

    kept_detail = [d for d in detail if d["kept"]]
    dist = {}
    for key in ("words", "attribute_mentions", "unsupported", "generic_share"):
        dist[key] = {"targets": distribution([s[key] for s in targets]),
                     "all_reviews": distribution([d[key] for d in detail]),
                     "kept": distribution([d[key] for d in kept_detail])}
    n_with = sum(c["products_with_kept"] for c in by_source.values())
    report = {
        "config": asdict(cfg),
        "generic_rule": f"a review is generic when >= {cfg.generic_share:.0%} of its word "
                        f"{cfg.ngram}-grams are templates: {cfg.ngram}-grams found in "
                        f"reviews of >= {cfg.template_min_products} different products",
        "template_ngrams": len(templates),
        "top_templates": [[" ".join(g), n] for g, n in
                          sorted(templates.items(), key=lambda kv: (-kv[1], kv[0]))[:25]],
        "products": len(records), "reviews": len(detail), "kept": len(kept),
        "products_with_kept": n_with, "products_without_kept": len(records) - n_with,
        "dropped": {r: sum(d["reason"] == r for d in detail) for r in REASONS},
        "flagged": {r: sum(r in d["reasons"] for d in detail) for r in REASONS},
        "by_source": {s: dict(c) for s, c in sorted(by_source.items())},
        "distributions": dist,
        "reviews_detail": detail,
    }
    return kept, report


def default_out() -> Path:
    from ..data import data_dir
    return data_dir().with_name("curated")


def curate(cfg: CurateConfig | None = None, **overrides) -> dict:
    """Curate the train split of `cfg.data` into `cfg.out`/product_review/ (train.jsonl: the
    kept reviews; validation.jsonl, test.jsonl: copies; curation.json: the report). Returns
    the report (without the per-review detail) plus "out" and "files"."""
    from ..data import resolve_data_file

    cfg = CurateConfig(**{**(asdict(cfg) if cfg else {}), **overrides})
    check_config(cfg)
    src = {s: resolve_data_file(TASK, s, cfg.data) for s in ("train", "validation", "test")}
    records = list(read_jsonl(src["train"]))
    if not records:
        raise HarnessError(f"{src['train']}: no train records to curate")
    for i, rec in enumerate(records, 1):
        if not isinstance(rec.get("product"), dict) or "id" not in rec:
            raise HarnessError(f"{src['train']}: record {i} has no 'id' or no 'product' object "
                               f"(not a product_review record)")
    kept, report = curate_records(records, cfg)
    if len(kept) < cfg.min_examples:
        raise HarnessError(
            f"{src['train']}: curation kept {len(kept)} of {report['reviews']} reviews, fewer "
            f"than min_examples={cfg.min_examples} needed to train (dropped: " +
            ", ".join(f"{r} {n}" for r, n in report["dropped"].items() if n) + ")")
    out = Path(cfg.out).expanduser() if cfg.out else default_out()
    dest = out / TASK
    if dest.resolve() == src["train"].parent.resolve():
        raise HarnessError(f"{dest}: the curated output would overwrite its source data; "
                           f"choose another --output")
    write_jsonl(dest / "train.jsonl", kept)
    for split in ("validation", "test"):
        with atomic_path(dest / f"{split}.jsonl") as tmp:
            shutil.copyfile(src[split], tmp)
    report.update(source={s: str(p) for s, p in src.items()}, out=str(out))
    write_json(dest / CURATION_FILE, report)
    summary = {k: v for k, v in report.items() if k != "reviews_detail"}
    return {**summary, "files": {s: str(dest / f"{s}.jsonl") for s in src}}


def curation_of(train_file: str | Path) -> dict | None:
    """The curation summary of a curated train file (config, counts), or None when the file
    was not made by `harness data curate`."""
    f = Path(train_file).with_name(CURATION_FILE)
    if not f.is_file():
        return None
    rep = read_json(f)
    return {k: rep.get(k) for k in ("config", "generic_rule", "products", "reviews", "kept",
                                    "products_without_kept", "dropped", "source")}


def print_report(rep: dict, console) -> None:
    """Rich tables: kept / dropped by reason, per source, and distributions before / after."""
    from rich.table import Table

    t = Table(title=f"curation of {rep['source']['train']} → {rep['out']}")
    t.add_column("")
    t.add_column("count", justify="right")
    t.add_row("products", str(rep["products"]))
    t.add_row("reviews", str(rep["reviews"]))
    t.add_row("kept (training examples)", str(rep["kept"]), style="bold")
    t.add_row("products with a kept review", str(rep["products_with_kept"]))
    t.add_row("products with none kept", str(rep["products_without_kept"]))
    for r in REASONS:
        t.add_row(f"dropped: {r}", f"{rep['dropped'][r]} (flagged {rep['flagged'][r]})")
    console.print(t)
    s = Table(title="per source")
    for c in ("source", "products", "reviews", "kept", "products with a kept review"):
        s.add_column(c, justify="right" if c != "source" else "left")
    for src, c in rep["by_source"].items():
        s.add_row(src, *(str(c.get(k, 0)) for k in ("products", "reviews", "kept",
                                                    "products_with_kept")))
    console.print(s)
    d = Table(title="distributions: targets = the prepared train targets (one per product), "
                    "all = every review, kept = the curated examples")
    d.add_column("figure")
    d.add_column("set")
    for c in ("n", "mean", *(f"p{p}" for p in QUANTILES)):
        d.add_column(c, justify="right")
    for key, sets in rep["distributions"].items():
        for name, q in sets.items():
            d.add_row(key, name, *(str(q.get(c, "")) for c in
                                   ("n", "mean", *(f"p{p}" for p in QUANTILES))))
    console.print(d)
    console.print(f"generic rule: {rep['generic_rule']} ({rep['template_ngrams']} template "
                  f"n-grams; most used: " + ", ".join(f"'{g}' {n}" for g, n in
                                                       rep["top_templates"][:8]) + ")",
                  highlight=False)
