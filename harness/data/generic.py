"""A reader for a user's own product_review source: a CSV or JSON-lines file and a field
mapping, so a new source needs no code.

    harness data prepare --from my_reviews.jsonl --map title=name,review=reviews.text,price=price.value

The mapping names, for each field of ours, where it is in a row: a column (CSV) or a key, with
dots for nested keys (JSON lines: "reviews.text" takes "text" of every object in the "reviews"
list, one review each). Fields: id, title, review (required: title and review), brand,
category, price, list_price, discount_percent, rating, rating_count, features, details,
review_title, review_rating. Without an id the title groups the rows of one product. In a CSV,
category and features may hold several values separated by "|".

Rows go through the same normalisation (harness.data.product.make_product) and checks as the
built-in readers: a value of a type a field cannot take, a row without a title or a review, a
malformed JSON line are skipped and counted by reason; an unreadable file, or a mapped column
missing from a CSV header, is one error naming the file.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Iterator

from ..errors import HarnessError
from .product import as_list, make_product, raw_problem
from .sources import json_lines, open_raw

# our field -> the kind of raw value it takes (harness.data.product.RAW_KINDS)
MAP_FIELDS = {"id": "text", "title": "text", "review": "texts", "brand": "text",
              "category": "texts", "price": "number", "list_price": "number",
              "discount_percent": "number", "rating": "number", "rating_count": "number",
              "features": "texts", "details": "mapping", "review_title": "text",
              "review_rating": "number"}
REQUIRED = ("title", "review")


def parse_map(items: str | list[str] | None) -> dict[str, str]:
    """["title=name,review=reviews.text", "price=price.value"] -> {field: path}."""
    out: dict[str, str] = {}
    for item in [items] if isinstance(items, str) else items or []:
        for part in filter(None, (p.strip() for p in item.split(","))):
            field, sep, path = part.partition("=")
            field, path = field.strip(), path.strip()
            if not sep or not path:
                raise HarnessError(f"--map {part!r}: expected FIELD=COLUMN (e.g. title=name)")
            if field not in MAP_FIELDS:
                raise HarnessError(f"--map {part!r}: unknown field {field!r}; fields: "
                                   f"{', '.join(MAP_FIELDS)}")
            out[field] = path
    missing = [f for f in REQUIRED if f not in out]
    if missing:
        raise HarnessError(f"--map: give {' and '.join(missing)} (e.g. --map "
                           f"title=COLUMN,review=COLUMN)")
    return out


def lookup(row: Any, path: str) -> Any:
    """A value by column name or dotted key path; through a list, the value of each item."""
    if isinstance(row, dict) and path in row:
        return row[path]
    head, _, rest = path.partition(".")
    if isinstance(row, list):
        vals = [lookup(x, path) for x in row]
        return [v for v in vals if v is not None] or None
    if not isinstance(row, dict) or head not in row:
        return None
    return lookup(row[head], rest) if rest else row[head]


def generic_row(row: dict, mapping: dict[str, str], skips, csv_lists: bool = False
                ) -> tuple[str, dict, list[dict]] | None:
    """(product id, product, review entries) of one row, or None (counted in skips)."""
    from .review import _review_entry

    vals = {f: lookup(row, p) for f, p in mapping.items()}
    if csv_lists:
        for f in ("category", "features"):
            if isinstance(vals.get(f), str):
                vals[f] = vals[f].split("|")
    if (bad := raw_problem(vals, MAP_FIELDS)):
        skips.skip(bad)
        return None
    try:
        product = make_product(
            title=vals.get("title"), brand=vals.get("brand"), category=vals.get("category"),
            price=vals.get("price"), list_price=vals.get("list_price"),
            discount_percent=vals.get("discount_percent"), rating=vals.get("rating"),
            rating_count=vals.get("rating_count"), features=vals.get("features"),
            details=vals.get("details"))
    except ValueError as e:
        skips.skip(str(e))
        return None
    reviews = [e for e in (_review_entry(t, vals.get("review_title"), vals.get("review_rating"),
                                         skips) for t in as_list(vals.get("review"))) if e]
    if not reviews:
        if not as_list(vals.get("review")):
            skips.skip("missing review")
        return None
    pid = str(vals.get("id") if vals.get("id") not in (None, "") else product["title"])
    return pid, product, reviews


def read_generic(path: Path, mapping: dict[str, str], skips) -> Iterator[tuple[str, dict, dict]]:
    """(product id, product, review) rows of a CSV (.csv) or JSON-lines file."""
    path = Path(path)
    if path.suffix.lower() == ".csv":
        rows, csv_lists = _csv_rows(path, mapping), True
    else:
        rows, csv_lists = json_lines(path, skips), False
    for row in rows:
        got = generic_row(row, mapping, skips, csv_lists)
        if got:
            pid, product, reviews = got
            for review in reviews:
                yield f"custom:{pid}", product, review


def _csv_rows(path: Path, mapping: dict[str, str]) -> Iterator[dict]:
    with open_raw(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        try:
            header = reader.fieldnames or []
            missing = {fld: col for fld, col in mapping.items() if col not in header}
            if missing:
                fld, col = next(iter(missing.items()))
                raise HarnessError(f"{path}:1: column {col!r} (for {fld}) not in the header "
                                   f"(has: {', '.join(header)})")
            yield from reader
        except csv.Error as e:
            raise HarnessError(f"{path}:{reader.line_num}: unreadable CSV ({e})") from e
        except UnicodeDecodeError as e:
            raise HarnessError(f"{path}:{reader.line_num + 1}: not UTF-8 text ({e.reason})") from e
