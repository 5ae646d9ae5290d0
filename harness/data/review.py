"""product_review data: raw public review dumps -> normalised task JSONL.

Readers (one per raw format, all yielding (product_id, product, review) or a skip reason):
  * Amazon.in listing CSV (Kaggle "Amazon Sales Dataset"): one review per row.
  * Amazon Review Data 2018: meta_*.json(l) + reviews *.json(l), joined on asin.
  * Amazon Reviews 2023: the same two files with the 2023 field names (parent_asin, store, ...).
  * A hub dataset id through `datasets.load_dataset` (online only); its rows go through the
    same row converters as local files.

Output record:  {"id", "source", "product": {normalised schema}, "review": str,
                 "review_title": str, "review_rating": float, "reviews": [...]}
"""
from __future__ import annotations

import csv
import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Iterable, Iterator

from ..errors import HarnessError
from .product import as_list, clean_text, make_product, raw_problem
from .sources import Skips, json_lines, open_raw

MIN_REVIEW_WORDS = 4
MAX_REVIEW_WORDS = 220

AMAZON_IN_COLUMNS = {"product_id", "product_name", "category", "discounted_price", "actual_price",
                     "about_product", "review_content"}
# The field types each row converter can use (harness.data.product.raw_problem); a row with
# another type is skipped and counted by field, never coerced into a wrong value.
AMAZON_IN_KINDS = {**{c: "text" for c in AMAZON_IN_COLUMNS}, "review_title": "text",
                   "discount_percentage": "text", "rating": "number", "rating_count": "text"}
META_KINDS = {"asin": "text", "parent_asin": "text", "title": "text", "brand": "text",
              "store": "text", "feature": "texts", "features": "texts", "description": "texts",
              "category": "texts", "categories": "texts", "main_category": "text",
              "price": "number", "average_rating": "number", "rating_number": "number",
              "details": "mapping"}
REVIEW_KINDS = {"asin": "text", "parent_asin": "text", "reviewText": "text", "text": "text",
                "summary": "text", "title": "text", "overall": "number", "rating": "number"}


def _review_entry(text, title=None, rating=None, skips: Skips | None = None) -> dict | None:
    text = clean_text(text)
    words = text.split()
    if len(words) < MIN_REVIEW_WORDS:
        if skips is not None:
            skips.skip("review too short" if text else "empty review")
        return None
    if len(words) > MAX_REVIEW_WORDS:
        text = " ".join(words[:MAX_REVIEW_WORDS])
        # end on a sentence boundary when one is near
        cut = max(text.rfind(". "), text.rfind("! "), text.rfind("? "))
        text = text[: cut + 1] if cut > len(text) // 2 else text
    entry = {"text": text}
    if title:
        entry["title"] = clean_text(title)
    try:
        if rating not in (None, ""):
            entry["rating"] = float(rating)
    except (TypeError, ValueError):
        pass
    return entry


# --- Amazon.in CSV -----------------------------------------------------------------------

def brand_from_title(title) -> str | None:
    """Amazon.in listings have no brand column; their titles start with the brand
    ("Wayona Nylon Braided ...", "boAt Rockerz ..."). Take that first word when it looks like
    a name (has a letter, no generic lead word)."""
    words = clean_text(title).split()
    if not words:
        return None
    w = words[0].strip(",.()")
    if not any(c.isalpha() for c in w) or w.lower() in {"the", "a", "an", "new", "for", "pack",
                                                         "set", "combo", "original", "premium"}:
        return None
    return w

def amazon_in_row(row: dict, skips: Skips) -> tuple[str, dict, dict] | None:
    if (bad := raw_problem(row, AMAZON_IN_KINDS)):
        skips.skip(bad)
        return None
    pid = str(row.get("product_id") or "").strip()
    if not pid:
        skips.skip("missing product_id")
        return None
    try:
        product = make_product(
            title=row.get("product_name"), brand=brand_from_title(row.get("product_name")), category=row.get("category"),
            price=row.get("discounted_price"), list_price=row.get("actual_price"),
            discount_percent=row.get("discount_percentage"), rating=row.get("rating"),
            rating_count=row.get("rating_count"),
            features=str(row.get("about_product") or "").split("|"), default_currency="INR")
    except ValueError as e:
        skips.skip(str(e))
        return None
    review = _review_entry(row.get("review_content"), row.get("review_title"), None, skips)
    if review is None:
        return None
    return f"amazon_in:{pid}", product, review


def read_amazon_in_csv(path: Path, skips: Skips) -> Iterator[tuple[str, dict, dict]]:
    with open_raw(path, newline="") as f:
        reader = csv.DictReader(f)
        try:
            fieldnames = reader.fieldnames or []
            missing = AMAZON_IN_COLUMNS - set(fieldnames)
            if missing:
                raise HarnessError(f"{path}:1: missing column(s) {', '.join(sorted(missing))} "
                                   f"(header has: {', '.join(fieldnames)})")
            for row in reader:
                if None in row or any(v is None for v in row.values()):
                    skips.skip("wrong number of fields")
                    continue
                got = amazon_in_row(row, skips)
                if got:
                    yield got
        except csv.Error as e:
            raise HarnessError(f"{path}:{reader.line_num}: unreadable CSV ({e})") from e
        except UnicodeDecodeError as e:
            # the decoder reads ahead in blocks: the line is where reading stopped
            raise HarnessError(f"{path}:{reader.line_num + 1}: not UTF-8 text ({e.reason} at "
                               f"byte {e.start} of the block being read)") from e


# --- Amazon 2018 / 2023 JSON lines ------------------------------------------------------

def amazon_meta_row(m: dict, skips: Skips) -> tuple[str, dict] | None:
    """A metadata row in the 2018 (asin, brand, feature, ...) or 2023 (parent_asin, store,
    features, ...) field names."""
    if (bad := raw_problem(m, META_KINDS)):
        skips.skip(f"meta: {bad}")
        return None
    pid = m.get("parent_asin") or m.get("asin")
    if not pid:
        skips.skip("meta without asin")
        return None
    features = as_list(m.get("feature") or m.get("features"))
    features += as_list(m.get("description"))
    category = m.get("category") or m.get("categories") or []
    if isinstance(category, list) and m.get("main_category") and not category:
        category = [m["main_category"]]
    try:
        product = make_product(
            title=m.get("title"), brand=m.get("brand") or m.get("store"), category=category,
            price=m.get("price"), rating=m.get("average_rating"),
            rating_count=m.get("rating_number"), features=features, details=m.get("details"),
            default_currency="USD")
    except ValueError as e:
        skips.skip(str(e))
        return None
    return str(pid), product


def amazon_review_row(r: dict, skips: Skips) -> tuple[str, dict] | None:
    if (bad := raw_problem(r, REVIEW_KINDS)):
        skips.skip(f"review: {bad}")
        return None
    pid = r.get("parent_asin") or r.get("asin")
    if not pid:
        skips.skip("review without asin")
        return None
    entry = _review_entry(r.get("reviewText", r.get("text")), r.get("summary", r.get("title")),
                          r.get("overall", r.get("rating")), skips)
    return (str(pid), entry) if entry else None


def read_amazon_json(meta_path: Path, reviews_path: Path, source: str,
                     skips: Skips) -> Iterator[tuple[str, dict, dict]]:
    products: dict[str, dict] = {}
    for m in json_lines(meta_path, skips):
        got = amazon_meta_row(m, skips)
        if got:
            products.setdefault(got[0], got[1])
    if not products:
        raise HarnessError(f"{meta_path}: no usable product metadata rows "
                           f"(expected JSON lines with asin/parent_asin and title)")
    for r in json_lines(reviews_path, skips):
        got = amazon_review_row(r, skips)
        if not got:
            continue
        pid, entry = got
        if pid not in products:
            skips.skip("review for product without metadata")
            continue
        yield f"{source}:{pid}", products[pid], entry


# --- discovery ---------------------------------------------------------------------------

def _csv_header(path: Path) -> set[str]:
    try:
        with open_raw(path, "rb") as f:
            first = f.readline().decode("utf-8-sig")
    except UnicodeDecodeError:
        return set()  # not a text CSV of ours
    return set(next(csv.reader([first]), []))


def discover(raw_dir: Path) -> list[tuple[str, callable]]:
    """Find every raw file this module can read below raw_dir. Returns (label, reader)."""
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        raise HarnessError(f"{raw_dir}: not a directory")
    found = []
    for path in sorted(raw_dir.rglob("*.csv")):
        header = _csv_header(path)
        if {"product_id", "review_content"} <= header:
            found.append((f"amazon_in ({path.name})",
                          lambda s, p=path: read_amazon_in_csv(p, s), "amazon_in"))
    for meta in sorted(list(raw_dir.rglob("meta_*.json")) + list(raw_dir.rglob("meta_*.jsonl"))):
        stem = meta.name[len("meta_"):].rsplit(".", 1)[0]
        candidates = [p for p in meta.parent.iterdir()
                      if p.suffix in (".json", ".jsonl") and p != meta
                      and p.name.startswith(stem)]
        if not candidates:
            continue
        source = meta.parent.name
        found.append((f"{source} ({meta.name} + {candidates[0].name})",
                      lambda s, m=meta, r=candidates[0], src=source: read_amazon_json(m, r, src, s),
                      source))
    return found


def load_hub(dataset_id: str, skips: Skips, split: str = "train") -> Iterator[tuple[str, dict, dict]]:
    """Rows of a hub dataset in either the Amazon.in or the Amazon 2018/2023 field names.
    Each row must hold both product and review fields (a joined dataset)."""
    import datasets  # heavy; only for this path

    try:
        ds = datasets.load_dataset(dataset_id, split=split)
    except Exception as e:  # offline, unknown id, ...
        raise HarnessError(f"dataset {dataset_id!r}: cannot load ({type(e).__name__}: {e})") from e
    for row in ds:
        if AMAZON_IN_COLUMNS <= set(row):
            got = amazon_in_row(row, skips)
            if got:
                yield got
        else:
            meta = amazon_meta_row(row, skips)
            review = amazon_review_row(row, skips)
            if meta and review:
                yield f"{dataset_id}:{meta[0]}", meta[1], review[1]


def group_records(rows: Iterable[tuple[str, dict, dict]], source: str) -> list[dict]:
    """Merge rows of the same product into one record with all its reviews."""
    products: dict[str, dict] = {}
    reviews: dict[str, list[dict]] = defaultdict(list)
    for pid, product, review in rows:
        products.setdefault(pid, product)
        if review["text"] not in {r["text"] for r in reviews[pid]}:
            reviews[pid].append(review)
    records = []
    for pid in sorted(products):
        revs = reviews[pid]
        if not revs:
            continue
        # Reference review: the most informative one (most words), ties by text for stability.
        best = max(revs, key=lambda r: (len(r["text"].split()), r["text"]))
        rec = {"id": pid, "source": source, "product": products[pid], "review": best["text"],
               "review_title": best.get("title", ""), "reviews": revs}
        if "rating" in best:
            rec["review_rating"] = best["rating"]
        records.append(rec)
    return records
