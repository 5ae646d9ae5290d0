"""`harness data prepare` on data that is not ours (issue #16): wrong field types are skipped
and counted by field, never stored wrong; markup-only titles drop the product with a reason;
camel-case splitting keeps brand-style words; a user's own CSV / JSONL through --map; a failed
prepare leaves the output folder as it was. No mocks: the real readers on small files."""
from __future__ import annotations

import csv
import json
import os

import pytest

from harness.data.product import clean_text, split_category
from harness.data.review import amazon_meta_row, amazon_review_row
from harness.data.sources import Skips
from harness.errors import HarnessError

from _cli import run_cli

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def meta(**kw):
    return {"asin": "B1", "title": "Steel Kettle 1.5 L", **kw}


@pytest.mark.parametrize("row, reason", [
    (meta(price=["$1", "$2"]), "meta: bad field price (list"),
    (meta(feature=5), "meta: bad field feature (integer"),
    (meta(feature=["ok", None]), "meta: bad field feature (list"),
    (meta(details=["a"]), "meta: bad field details (list"),
    (meta(title={"en": "Kettle"}), "meta: bad field title (object"),
])
def test_wrongly_typed_meta_fields_are_skipped_and_counted(row, reason):
    skips = Skips()
    assert amazon_meta_row(row, skips) is None
    [(got, n)] = skips.items()
    assert got.startswith(reason) and n == 1


def test_a_dict_review_summary_is_not_stored_as_its_repr():
    skips = Skips()
    r = {"asin": "B1", "reviewText": "Boils water quickly and looks good on the counter.",
         "summary": {"text": "Great"}, "overall": 5.0}
    assert amazon_review_row(r, skips) is None
    assert list(skips) == ["review: bad field summary (object, expected a string)"]


def test_description_string_is_one_feature_and_nested_details_are_left_out():
    skips = Skips()
    _, product = amazon_meta_row(meta(description="Keeps water hot for hours.",
                                      details={"Colour": "Steel", "Rank": {"Kitchen": 5}}),
                                 skips)
    assert product["features"] == ["Keeps water hot for hours."]
    assert product["details"] == {"Colour": "Steel"}


@pytest.mark.parametrize("raw, clean", [
    ('<span class="a-size-large" id="productTitle"', ""),
    ('<div><span class=x', ""),
    ('Steel kettle <span class="a-color"', "Steel kettle"),
    ('class="a-size-large" id="productTitle">Steel Kettle', "Steel Kettle"),
    ("Good <b>kettle</b>", "Good kettle"),
    ("Kettle < 2 L, price <= 500", "Kettle < 2 L, price <= 500"),
    ("Voltage=220V", "Voltage=220V"),
])
def test_html_cleaning_survives_unclosed_tags_and_attribute_junk(raw, clean):
    assert clean_text(raw) == clean


def test_a_title_that_is_only_markup_drops_the_product_with_a_reason():
    skips = Skips()
    assert amazon_meta_row(meta(title='<span class="a-size-large" id="productTitle"'),
                           skips) is None
    assert list(skips) == ["title empty after cleaning (markup only)"]


def test_camel_case_splitting_keeps_brand_style_words():
    assert split_category("HomeTheater|SmartWatches|Pop-upToasters|iPad Cases|eBook Readers|"
                          "MacBook Sleeves|USBCables") == [
        "Home Theater", "Smart Watches", "Pop-up Toasters", "iPad Cases", "eBook Readers",
        "MacBook Sleeves", "USBCables"]


def test_own_jsonl_with_a_field_map(tmp_path):
    src = tmp_path / "own.jsonl"
    rows = [{"sku": "A1", "name": "Steel Kettle 1.5 L", "cost": {"value": "$19.99"},
             "tags": ["Kitchen", "Kettles"],
             "reviews": [{"text": "Boils water fast and the handle stays cool, very happy."},
                         {"text": "Nice kettle but the lid is a bit stiff to open at first."}]},
            {"sku": "A3", "name": "Mug", "cost": {"value": ["$1", "$2"]},
             "reviews": [{"text": "A mug that is fine for coffee and tea every day."}]}]
    src.write_text("".join(json.dumps(r) + "\n" for r in rows) + "not json\n")
    out = tmp_path / "out"
    res = run_cli(["data", "prepare", "--from", str(src), "--map",
                   "id=sku,title=name,review=reviews.text", "--map",
                   "price=cost.value,category=tags", "--output", str(out)], ENV)
    assert res.returncode == 0, res.stderr
    recs = [json.loads(ln) for f in sorted((out / "product_review").glob("*.jsonl"))
            for ln in f.read_text().splitlines()]
    [rec] = recs
    assert rec["id"] == "custom:A1" and len(rec["reviews"]) == 2
    assert rec["product"] == {"title": "Steel Kettle 1.5 L", "category": ["Kitchen", "Kettles"],
                              "price": {"amount": 19.99, "currency": "USD"}}
    skipped = json.loads((out / "product_review" / "prepare.json").read_text())["skipped"]
    assert skipped == {"bad field price (list, expected a number or a numeric string)": 1,
                       "malformed JSON line": 1}


def test_own_csv_missing_mapped_column_is_one_line(tmp_path):
    src = tmp_path / "own.csv"
    with open(src, "w", newline="") as f:
        csv.writer(f).writerows([["name", "text"], ["Kettle", "Boils water fast, good."]])
    res = run_cli(["data", "prepare", "--from", str(src), "--map", "title=name,review=body",
                   "--output", str(tmp_path / "out")], ENV)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines() == [
        f"error: {src}:1: column 'body' (for review) not in the header (has: name, text)"]


def test_a_failed_prepare_replaces_nothing(tmp_path, shared_data):
    """All tasks (no --task) from a folder with the Amazon.in CSV but no Instacart files:
    product_review would succeed, product_department fails; the old output stays whole."""
    from harness.data.prepare import prepare

    raw = tmp_path / "raw"
    (raw / "amazon_in").mkdir(parents=True)
    (raw / "amazon_in" / "amazon.csv").symlink_to(shared_data / "amazon_in" / "amazon.csv")
    out = tmp_path / "prepared"
    (out / "product_review").mkdir(parents=True)
    (out / "product_review" / "test.jsonl").write_text('{"old": 1}\n')
    with pytest.raises(HarnessError, match="no Instacart data found"):
        prepare(raw, out)
    assert sorted(p.name for p in out.iterdir()) == ["product_review"]
    assert sorted(p.name for p in (out / "product_review").iterdir()) == ["test.jsonl"]
    assert (out / "product_review" / "test.jsonl").read_text() == '{"old": 1}\n'
