"""`harness metrics validate`: proof that each metric measures what it claims, on planted
cases built from real reviews (harness/metrics/validation/planted.py), with a fixed seed.

  hallucination  recall on injected wrong facts (the injected claim itself must be flagged)
                 and false-flag rate on clean real reviews (reviews with >= 1 flagged claim)
  fluency        real review vs its word-shuffled, span-repeated and truncated versions:
                 share of pairs where the real one has the higher fluency_score
  relevance      a product's own review vs a review of a product from another top-level
                 category: share of pairs where relevance_product ranks its own review higher

Thresholds (the tests assert them): recall >= 0.95, false flags <= 0.05, fluency >= 0.95,
relevance >= 0.90.
"""
from __future__ import annotations

import random
import time
from collections import defaultdict
from pathlib import Path
from typing import Callable

from ...errors import HarnessError
from .planted import PERTURBATIONS, is_clean, planted_hallucinations

THRESHOLDS = {"hallucination_recall": (">=", 0.95), "hallucination_false_flag_rate": ("<=", 0.05),
              "fluency_rank_accuracy": (">=", 0.95), "relevance_rank_accuracy": (">=", 0.90)}
MIN_FLUENCY_WORDS = 8


def load_records(raw_dir: Path | None = None, data: Path | None = None) -> list[dict]:
    """All prepared product_review records: from `data` (a prepared folder) or prepared now
    from `raw_dir` into a temporary folder."""
    from ...data import SPLITS
    from ...tasks.records import read_records

    if data is not None:
        return [r for s in SPLITS for r in read_records("product_review", s, data)]
    if raw_dir is None:
        raise HarnessError("give --raw-dir RAW (e.g. ../shared/data) or --data PREPARED_DIR")
    import tempfile

    from ...data.prepare import prepare
    with tempfile.TemporaryDirectory(prefix="harness-validate-") as tmp:
        prepare(Path(raw_dir), Path(tmp), ["product_review"])
        return [r for s in SPLITS for r in read_records("product_review", s, tmp)]


def _rate(hits: int, n: int) -> float | None:
    return hits / n if n else None


def validate_hallucination(records: list[dict], seed: int = 0,
                           progress: Callable[[int], None] | None = None) -> dict:
    from ..hallucination import SUPPORTED, check_claims

    by_id = {r["id"]: r for r in records}
    cases = planted_hallucinations(records, seed)
    per_kind: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    misses = []
    for c in cases:
        claims = check_claims(by_id[c.record_id]["product"], c.text)
        hit = any(x["status"] != SUPPORTED and s < c.span[1] and e > c.span[0]
                  for x in claims for s, e in x["spans"])
        for key in (c.kind, f"{c.kind}/{c.mode}"):
            per_kind[key][0] += 1
            per_kind[key][1] += hit
        if not hit and len(misses) < 50:
            misses.append({"kind": c.kind, "mode": c.mode, "injected": c.injected,
                           "record_id": c.record_id,
                           "context": c.text[max(0, c.span[0] - 60):c.span[1] + 40]})
        if progress:
            progress(1)
    # clean set: every review text of every record that passes the verbatim rule
    clean_n = clean_flagged = clean_claims = 0
    all_n = all_flagged = 0
    false_flags = []
    for r in records:
        for rv in r.get("reviews") or [{"text": r["review"]}]:
            claims = check_claims(r["product"], rv["text"])
            flagged = [x for x in claims if x["status"] != SUPPORTED]
            all_n += 1
            all_flagged += bool(flagged)
            if is_clean(r["product"], rv["text"]):
                clean_n += 1
                clean_claims += len(claims)
                clean_flagged += bool(flagged)
                if flagged and len(false_flags) < 50:
                    false_flags.append({"record_id": r["id"], "text": rv["text"][:300],
                                        "flagged": [{k: x[k] for k in ("text", "kind", "status",
                                                                       "evidence")}
                                                    for x in flagged]})
    total = sum(v[0] for k, v in per_kind.items() if "/" not in k)
    hits = sum(v[1] for k, v in per_kind.items() if "/" not in k)
    return {"hallucination_recall": _rate(hits, total),
            "hallucination_false_flag_rate": _rate(clean_flagged, clean_n),
            "hallucination_cases": total, "clean_reviews": clean_n,
            "clean_claims_checked": clean_claims,
            "all_real_reviews": all_n, "all_real_reviews_flagged_rate": _rate(all_flagged, all_n),
            "hallucination_by_kind": {k: {"n": v[0], "hit_rate": _rate(v[1], v[0])}
                                      for k, v in sorted(per_kind.items())},
            "hallucination_misses": misses, "clean_false_flags": false_flags}


def _eligible_fluency(records: list[dict]) -> list[dict]:
    return [r for r in records if len(r["review"].split()) >= MIN_FLUENCY_WORDS]


def validate_fluency(records: list[dict], n: int, seed: int, reference: str,
                     progress: Callable[[int], None] | None = None) -> dict:
    from ..fluency import fluency_scorer

    rng = random.Random(seed)
    pool = _eligible_fluency(records)
    rng.shuffle(pool)
    pool = pool[:n]
    recs, texts, kinds = [], [], []
    for r in pool:
        recs.append(r)
        texts.append(r["review"])
        kinds.append("real")
        for kind, fn in PERTURBATIONS.items():
            recs.append(r)
            texts.append(fn(rng, r["review"]))
            kinds.append(kind)
    scores = []
    step = 32
    for i in range(0, len(texts), step):
        scores += fluency_scorer(recs[i:i + step], texts[i:i + step], reference)
        if progress:
            progress(len(texts[i:i + step]))
    per_kind: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    examples = []
    block = 1 + len(PERTURBATIONS)
    for j in range(len(pool)):
        real = scores[j * block]
        for k, kind in enumerate(PERTURBATIONS, 1):
            other = scores[j * block + k]
            win = real["fluency_score"] > other["fluency_score"]
            per_kind[kind][0] += 1
            per_kind[kind][1] += win
            if not win and len(examples) < 30:
                examples.append({"kind": kind, "real": texts[j * block][:200],
                                 "perturbed": texts[j * block + k][:200],
                                 "real_score": real["fluency_score"],
                                 "perturbed_score": other["fluency_score"]})
    total = sum(v[0] for v in per_kind.values())
    wins = sum(v[1] for v in per_kind.values())
    reals = [scores[j * block] for j in range(len(pool))]
    return {"fluency_rank_accuracy": _rate(wins, total), "fluency_pairs": total,
            "fluency_reference": reference,
            "fluency_by_kind": {k: {"n": v[0], "hit_rate": _rate(v[1], v[0])}
                                for k, v in per_kind.items()},
            "real_reviews_flagged_degenerate": _rate(sum(s["degenerate"] > 0 for s in reals),
                                                     len(reals)),
            "fluency_losses": examples}


def _top_category(r: dict) -> str:
    cats = r["product"].get("category") or []
    return cats[0] if cats else ""


def validate_relevance(records: list[dict], n: int, seed: int,
                       progress: Callable[[int], None] | None = None) -> dict:
    from ..relevance import embed, product_embedding_text, product_relevance

    rng = random.Random(seed)
    pool = [r for r in records if _top_category(r)]
    rng.shuffle(pool)
    pairs = []
    for r in pool:
        others = [o for o in records if _top_category(o) and _top_category(o) != _top_category(r)]
        if others:
            pairs.append((r, rng.choice(others)))
        if len(pairs) >= n:
            break
    per_kind: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    raw_wins = 0
    losses = []
    step = 64
    for i in range(0, len(pairs), step):
        chunk = pairs[i:i + step]
        ev = embed([product_embedding_text(r["product"]) for r, _ in chunk]
                   + [r["review"] for r, _ in chunk] + [o["review"] for _, o in chunk])
        m = len(chunk)
        for j, (r, o) in enumerate(chunk):
            own, own_cos = product_relevance(ev[m + j], ev[j], r["product"], r["review"])
            other, other_cos = product_relevance(ev[2 * m + j], ev[j], r["product"],
                                                 o["review"])
            win = own > other
            raw_wins += own_cos > other_cos
            key = r["source"]
            for k in ("all", key):
                per_kind[k][0] += 1
                per_kind[k][1] += win
            if not win and len(losses) < 30:
                losses.append({"product": r["product"].get("title", "")[:120],
                               "own_review": r["review"][:160], "other_review": o["review"][:160],
                               "other_category": _top_category(o), "own": own, "other": other})
        if progress:
            progress(len(chunk))
    return {"relevance_rank_accuracy": _rate(per_kind["all"][1], per_kind["all"][0]),
            "relevance_pairs": per_kind["all"][0],
            "relevance_cosine_rank_accuracy": _rate(raw_wins, per_kind["all"][0]),
            "relevance_by_source": {k: {"n": v[0], "hit_rate": _rate(v[1], v[0])}
                                    for k, v in per_kind.items() if k != "all"},
            "relevance_losses": losses}


def passed(report: dict) -> dict[str, bool]:
    out = {}
    for key, (op, thr) in THRESHOLDS.items():
        v = report.get(key)
        out[key] = v is not None and (v >= thr if op == ">=" else v <= thr)
    return out


def run_validation(records: list[dict], *, seed: int = 0, n_fluency: int = 200,
                   n_relevance: int = 500, reference: str | None = None,
                   parts: tuple[str, ...] = ("hallucination", "fluency", "relevance"),
                   progress: Callable[[str, int, int], None] | None = None) -> dict:
    """The validation report. `progress(part, advance, total)` for a progress bar."""
    from ..config import reference_for

    from ..catalogue import register_catalogue
    register_catalogue(records, "validation records")
    reference = reference or reference_for(None)
    report: dict = {"seed": seed, "records": len(records), "thresholds": {
        k: f"{op} {v}" for k, (op, v) in THRESHOLDS.items()}}
    timings = {}

    def bar(part, total):
        return (lambda k: progress(part, k, total)) if progress else None

    if "hallucination" in parts:
        t = time.perf_counter()
        report.update(validate_hallucination(records, seed, bar("hallucination", 6 * len(records))))
        timings["hallucination_s"] = time.perf_counter() - t
    if "fluency" in parts:
        t = time.perf_counter()
        m = min(n_fluency, len(_eligible_fluency(records)))
        report.update(validate_fluency(records, n_fluency, seed, reference,
                                       bar("fluency", m * (1 + len(PERTURBATIONS)))))
        timings["fluency_s"] = time.perf_counter() - t
    if "relevance" in parts:
        t = time.perf_counter()
        report.update(validate_relevance(records, n_relevance, seed,
                                         bar("relevance", min(n_relevance, len(records)))))
        timings["relevance_s"] = time.perf_counter() - t
    report["timings"] = timings
    report["passed"] = {k: v for k, v in passed(report).items() if report.get(k) is not None}
    return report
