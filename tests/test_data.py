"""Data preparation: real raw files, bad rows, bad files, split determinism, the demo set."""
from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from harness.data import SPLITS, resolve_data_file, split_of
from harness.data.prepare import prepare
from harness.data.product import make_product, parse_price
from harness.errors import HarnessError
from harness.files import read_jsonl
from harness.paths import ROOT, TASKS_DIR

AMAZON_IN_HEADER = ("product_id,product_name,category,discounted_price,actual_price,"
                    "discount_percentage,rating,rating_count,about_product,user_id,user_name,"
                    "review_id,review_title,review_content,img_link,product_link\n")


def _row(pid, name="Acme Kettle 1.5 L", review="Boils water fast and looks good on the counter"):
    return (f'{pid},"{name}",Home&Kitchen|Kettles,"₹1,099","₹2,000",45%,4.1,"1,234",'
            f'"1.5 L capacity|<b>1500 W</b> element|",U1,Ann,R1,Nice,"{review}",x,y\n')


def test_prepare_real_data_counts_and_schema(prepared_dir):
    report = json.loads((prepared_dir / "product_review" / "prepare.json").read_text())
    total = report["counts"]["total"]
    assert set(total) == set(SPLITS)
    assert total["train"] > 5 * total["test"] > 0
    sources = [s for s in report["counts"] if s != "total"]
    assert any(s.startswith("amazon_in") for s in sources)
    assert any(s.startswith("amazon2018_gift_cards") for s in sources)
    ids = {}
    for split in SPLITS:
        for rec in read_jsonl(prepared_dir / "product_review" / f"{split}.jsonl"):
            assert rec["id"] not in ids, "a product is in two splits"
            ids[rec["id"]] = split
            p = rec["product"]
            assert p["title"] and len(rec["review"].split()) >= 4
            for v in p.values():  # empty fields are dropped, never stored empty
                assert v not in ("", [], {}, None)
            assert not re.search(r"</?[a-zA-Z][^>]*>", json.dumps(p)), "HTML left in product"
    assert len(ids) == sum(total.values())
    # Amazon.in prices are parsed with currency and thousands separators
    rec = next(r for r in read_jsonl(prepared_dir / "product_review" / "train.jsonl")
               if r["source"] == "amazon_in" and "list_price" in r["product"].get("price", {}))
    assert rec["product"]["price"]["currency"] == "INR"
    assert rec["product"]["price"]["list_price"] > rec["product"]["price"]["amount"]


def test_split_is_deterministic_and_stable():
    keys = [f"p{i}" for i in range(2000)]
    a = [split_of(k) for k in keys]
    assert a == [split_of(k) for k in keys]
    share = a.count("test") / len(a)
    assert 0.07 < share < 0.13


def test_bad_rows_are_counted_by_reason(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "listing.csv").write_text(
        AMAZON_IN_HEADER + _row("P1") + _row("P2", review="ok") + _row("P3", name="")
        + "P4,too,few,fields\n" + _row("P5"), encoding="utf-8")
    report = prepare(raw, tmp_path / "out", ["product_review"])[0]
    assert report["counts"]["total"] == {s: n for s, n in report["counts"]["total"].items()}
    assert sum(report["counts"]["total"].values()) == 2  # P1 and P5
    assert report["skipped"] == {"review too short": 1, "missing title": 1,
                                 "wrong number of fields": 1}
    rec = next(r for s in SPLITS for r in read_jsonl(tmp_path / "out" / "product_review" / f"{s}.jsonl"))
    assert rec["product"]["features"] == ["1.5 L capacity", "1500 W element"]
    assert rec["product"]["brand"] == "Acme"


def test_missing_column_names_file_and_line(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    bad = raw / "listing.csv"
    bad.write_text("product_id,review_content,rating\nP1,fine product really good,4\n")
    with pytest.raises(HarnessError, match=r"listing\.csv:1: missing column\(s\) about_product"):
        prepare(raw, tmp_path / "out", ["product_review"])


def test_unreadable_file_is_a_clear_error(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "listing.csv").write_bytes(AMAZON_IN_HEADER.encode() + b"\xff\xfe\xfa broken bytes\n")
    with pytest.raises(HarnessError, match=r"listing\.csv:\d+: not UTF-8"):
        prepare(raw, tmp_path / "out", ["product_review"])


def test_amazon_2023_field_names(tmp_path):
    raw = tmp_path / "raw" / "amazon2023_toys"
    raw.mkdir(parents=True)
    meta = {"parent_asin": "B1", "title": "Blocko Building Bricks 500 pieces", "store": "Blocko",
            "categories": ["Toys", "Building Sets"], "features": ["500 pieces", "Ages 4+"],
            "price": 24.99, "average_rating": 4.6, "rating_number": 321,
            "details": {"Material": "Plastic", "ASIN": "B1"}}
    reviews = [{"rating": 5.0, "title": "Great", "text": "My son built a castle in one afternoon.",
                "asin": "B1x", "parent_asin": "B1", "user_id": "U", "timestamp": 1}]
    (raw / "meta_Toys.jsonl").write_text(json.dumps(meta) + "\n{not json\n")
    (raw / "Toys.jsonl").write_text("\n".join(json.dumps(r) for r in reviews) + "\n")
    report = prepare(tmp_path / "raw", tmp_path / "out", ["product_review"])[0]
    assert sum(report["counts"]["total"].values()) == 1
    assert report["skipped"] == {"malformed JSON line": 1}
    rec = next(r for s in SPLITS for r in read_jsonl(tmp_path / "out" / "product_review" / f"{s}.jsonl"))
    assert rec["product"]["brand"] == "Blocko"
    assert rec["product"]["price"] == {"amount": 24.99, "currency": "USD"}
    assert rec["product"]["details"] == {"Material": "Plastic"}  # ASIN boilerplate dropped


def test_price_parsing():
    assert parse_price("₹1,099") == (1099.0, "INR")
    assert parse_price("$14.99") == (14.99, "USD")
    assert parse_price("$10.00 - $50.00") == (None, None)
    with pytest.raises(ValueError, match="missing title"):
        make_product(title="  ")


def test_demo_set_is_labelled_and_resolvable():
    demo = TASKS_DIR / "product_review" / "demo.jsonl"
    rows = list(read_jsonl(demo))
    assert 20 <= len(rows) <= 40
    assert all(r["source"].startswith("demo") for r in rows)
    assert resolve_data_file("product_review", "test", "demo") == demo
    with pytest.raises(HarnessError, match="no product_review data"):
        resolve_data_file("product_review", "test", ROOT / "nonexistent-dir")


def test_cli_prepare_prints_counts_and_errors_cleanly(shared_data, tmp_path):
    exe = [sys.executable, "-m", "harness.cli"]
    ok = subprocess.run(exe + ["data", "prepare", "--raw-dir", str(shared_data), "--out",
                               str(tmp_path), "--task", "product_review"],
                        capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr
    assert "amazon_in" in ok.stdout and "total" in ok.stdout and "skipped" in ok.stdout
    bad = subprocess.run(exe + ["data", "prepare", "--raw-dir", str(tmp_path / "nope")],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2
    assert "nope: not a directory" in bad.stderr and "Traceback" not in bad.stderr
