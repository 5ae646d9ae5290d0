"""Property-based tests (hypothesis, issue #16): malformed products and raw rows, 500 generated
per test and run, each give either a clean record or one HarnessError (a raw row: a skip
counted by reason), never another exception. Covers the product schema, the raw row readers
(Amazon.in, Amazon 2018/2023 metadata and reviews, the --map reader) and `generate`'s input
parser, with the prompt built from every product that passes."""
from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.data.generic import generic_row, parse_map
from harness.data.review import amazon_in_row, amazon_meta_row, amazon_review_row
from harness.data.sources import Skips
from harness.export.generate import parse_products
from harness.errors import HarnessError
from harness.prompts import review_prompt
from harness.data.schema import Product, validate_product

N = 500
SETTINGS = settings(max_examples=N, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

scalars = (st.none() | st.booleans() | st.integers(-10**6, 10**12) | st.floats() |
           st.text(max_size=30) | st.sampled_from(["", " ", "$1,299", "4.5", "₹99", "nan",
                                                    "<span class=\"x\"", "a|b|c", "Kitchen > Pots",
                                                    "1e400", "-3"]))
json_values = st.recursive(scalars, lambda c: st.lists(c, max_size=4) |
                           st.dictionaries(st.text(max_size=8), c, max_size=4), max_leaves=8)


def near(valid):
    """A valid-looking value or anything at all."""
    return valid | json_values


products = st.fixed_dictionaries({}, optional={
    "title": near(st.text(min_size=1, max_size=60)),
    "brand": near(st.text(max_size=20)),
    "category": near(st.lists(st.text(max_size=15), max_size=4)),
    "price": near(st.fixed_dictionaries({"amount": near(st.floats(0, 1e5))}, optional={
        "currency": near(st.sampled_from(["USD", "INR"])),
        "list_price": near(st.floats(0, 1e5)),
        "discount_percent": near(st.floats(0, 100))})),
    "rating": near(st.floats(0, 5)),
    "rating_count": near(st.integers(0, 10**6)),
    "features": near(st.lists(st.text(max_size=40), max_size=6)),
    "details": near(st.dictionaries(st.text(max_size=10), st.text(max_size=20), max_size=4)),
    "id": json_values,
})


def check_clean(product: dict) -> None:
    """A product that passed: valid again, unchanged, and it makes a prompt."""
    assert Product.model_validate(product).model_dump(exclude_none=True) == product
    assert product["title"].strip()
    assert review_prompt(product).startswith("Write a short customer review")


@SETTINGS
@given(products)
def test_schema_gives_a_clean_product_or_one_error(product):
    try:
        got = validate_product(product, "x.jsonl:1")
    except HarnessError as e:
        assert str(e).startswith("x.jsonl:1: ") and "\n" not in str(e)
        return
    check_clean(got)


def _raw_row_result(fn, row, *args):
    skips = Skips()
    got = fn(row, *args, skips) if args else fn(row, skips)
    if got is None:
        assert sum(skips.values()) >= 1          # skipped, and counted by reason
    return got


META_KEYS = ["asin", "parent_asin", "title", "brand", "store", "feature", "features",
             "description", "category", "categories", "main_category", "price",
             "average_rating", "rating_number", "details"]
meta_rows = st.dictionaries(st.sampled_from(META_KEYS), json_values, max_size=10) | \
    st.fixed_dictionaries({"asin": st.text(min_size=1, max_size=10),
                           "title": near(st.text(min_size=1, max_size=40))},
                          optional={k: json_values for k in META_KEYS[3:]})


@SETTINGS
@given(meta_rows)
def test_amazon_meta_rows_give_a_clean_product_or_a_counted_skip(row):
    got = _raw_row_result(amazon_meta_row, row)
    if got is not None:
        check_clean(got[1])


REVIEW_KEYS = ["asin", "parent_asin", "reviewText", "text", "summary", "title", "overall",
               "rating"]


@SETTINGS
@given(st.dictionaries(st.sampled_from(REVIEW_KEYS), json_values, max_size=8),
       st.dictionaries(st.sampled_from(["product_id", "product_name", "category",
                                        "discounted_price", "actual_price", "about_product",
                                        "review_content", "review_title", "rating",
                                        "rating_count", "discount_percentage"]),
                       json_values, max_size=11))
def test_review_and_amazon_in_rows_give_a_clean_record_or_a_counted_skip(review, listing):
    got = _raw_row_result(amazon_review_row, review)
    if got is not None:
        assert isinstance(got[1]["text"], str) and got[1]["text"]
        assert isinstance(got[1].get("title", ""), str)
    got = _raw_row_result(amazon_in_row, listing)
    if got is not None:
        check_clean(got[1])


MAPPING = parse_map("id=sku,title=name,review=reviews.text,price=cost.value,category=tags,"
                    "features=bullets,details=specs,rating=stars")


@SETTINGS
@given(st.dictionaries(st.sampled_from(["sku", "name", "reviews", "cost", "tags", "bullets",
                                        "specs", "stars"]), json_values, max_size=8))
def test_own_rows_through_a_field_map_give_a_clean_record_or_a_counted_skip(row):
    got = _raw_row_result(generic_row, row, MAPPING)
    if got is not None:
        check_clean(got[1])
        assert got[2] and all(isinstance(r["text"], str) for r in got[2])


@SETTINGS
@given(st.lists(products, min_size=1, max_size=3), st.sampled_from(["array", "lines",
                                                                    "object", "garbage"]),
       st.text(max_size=20))
def test_generate_input_gives_clean_products_or_one_error(items, form, junk):
    text = {"array": json.dumps(items), "object": json.dumps(items[0]),
            "lines": "\n".join(json.dumps(p) for p in items),
            "garbage": json.dumps(items[0]) + "\n" + junk}[form]
    try:
        got = parse_products(text, "p.jsonl")
    except HarnessError as e:
        assert str(e).startswith("p.jsonl") and "\n" not in str(e)
        return
    for pid, product in got:
        assert isinstance(pid, str)
        check_clean(product)


HEADER = "product_id,product_name,category,discounted_price,actual_price,about_product," \
         "review_content,rating"
csv_cells = st.text(max_size=25) | st.sampled_from(['"', '""', '"a,b"', "\r", "\n", "₹1,099",
                                                     "<b>x", "|", "\x00", "\ufeff"])


@SETTINGS
@given(st.lists(st.lists(csv_cells, min_size=0, max_size=10), max_size=5),
       st.sampled_from(["csv", "generic-csv", "jsonl"]), st.binary(max_size=8))
def test_raw_files_give_records_or_one_error(rows, kind, tail):
    """Whole files (a header, then malformed lines, stray quotes, NULs, bad UTF-8 at the end)
    through the file readers: records, counted skips, or one HarnessError naming the file."""
    import tempfile
    from pathlib import Path

    from harness.data.generic import read_generic
    from harness.data.review import read_amazon_in_csv
    from harness.data.sources import json_lines

    body = "\n".join(",".join(r) for r in rows)
    if kind == "jsonl":
        body = "\n".join(json.dumps(dict(zip(["sku", "name", "reviews"], r))) if i % 2
                         else ",".join(r) for i, r in enumerate(rows))
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / ("raw.jsonl" if kind == "jsonl" else "raw.csv")
        path.write_bytes(((HEADER + "\n") if kind != "jsonl" else "").encode() +
                         body.encode("utf-8", "surrogatepass") + tail)
        skips = Skips()
        try:
            if kind == "csv":
                got = list(read_amazon_in_csv(path, skips))
            elif kind == "generic-csv":
                got = list(read_generic(path, parse_map("title=product_name,review="
                                                        "review_content,price=actual_price"),
                                        skips))
            else:
                got = [r for r in json_lines(path, skips)]
                got = [g for r in got if (g := generic_row(r, parse_map(
                    "id=sku,title=name,review=reviews"), skips))]
        except HarnessError as e:
            assert str(e).startswith(str(path)) and "\n" not in str(e)
            return
    for rec in got:
        check_clean(rec[1])
