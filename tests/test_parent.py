"""PARENT (harness/metrics/parent.py): hand-computed values on tiny tables, the product table,
the paper's key property (a listing fact the reference left out is not penalised like an
invented one), its registration as per-sample metrics of product_review, and real reviews."""
from __future__ import annotations

import json
import math
import random

import pytest
import yaml

from harness.metrics import score_review
from harness.metrics.config import ScoringConfig
from harness.metrics.parent import SMOOTHING, parent, parent_tokens, product_table
from harness.metrics.text import rouge_l, tokens
from harness.paths import TASKS_DIR

KEYS = ("parent_precision", "parent_recall", "parent_f1")


def _demo() -> list[dict]:
    return [json.loads(line) for line in
            (TASKS_DIR / "product_review" / "demo.jsonl").read_text().splitlines() if line]


def test_text_equal_to_the_reference_in_table_words_scores_one():
    """Table {title: Acme Red Steel Mug}; text = reference = "Acme red steel mug" (four
    words, so every order 1..4 has n-grams): every n-gram of the text is in the reference
    (P_n = 1), every reference n-gram is in the text (Rr_n = 1) and the only table value is a
    subsequence of the text (Rt = 4/4), so P = R = F1 = 1."""
    out = parent({"title": "Acme Red Steel Mug"}, "Acme red steel mug", "Acme red steel mug")
    assert out == pytest.approx({k: 1.0 for k in KEYS})


def test_words_in_neither_table_nor_reference_score_zero():
    """No text word is in the reference or the table: P_1 = 0, so precision 0 and F1 0;
    reference and table recall are 0, each replaced by SMOOTHING, so recall = SMOOTHING."""
    product = {"title": "Acme Red Mug", "brand": "Acme"}
    out = parent(product, "zebra quantum waltz", "A sturdy mug, I like it.")
    assert out["parent_precision"] == 0.0 and out["parent_f1"] == 0.0
    assert out["parent_recall"] == pytest.approx(SMOOTHING)
    assert parent(product, "", "A sturdy mug.")["parent_f1"] == 0.0


def test_unigram_value_computed_by_hand():
    """Table values {acme}, {red}, {steel}; text G = "acme red cup", reference R = "acme mug",
    unigrams only, lambda 0.5.
    Precision: acme is in R (1), red is not in R but entailed by the table (w = 1), cup is in
    neither (0): P = 2/3.
    Reference recall: R's unigrams weighted by entailment: acme (w 1, in G), mug (w 0):
    Rr = 1 * 1 / 1 = 1. Table recall: acme and red appear in G, steel does not: Rt = 2/3.
    Recall = Rr^0.5 * Rt^0.5 = sqrt(2/3) = 0.8165; F1 = 2 P R / (P + R) = 0.7340."""
    out = parent_tokens([["acme"], ["red"], ["steel"]], "acme red cup".split(),
                        "acme mug".split(), max_order=1)
    p, r = 2 / 3, math.sqrt(2 / 3)
    assert out["parent_precision"] == pytest.approx(p)
    assert out["parent_recall"] == pytest.approx(r)
    assert out["parent_f1"] == pytest.approx(2 * p * r / (p + r))
    assert out["parent_f1"] == pytest.approx(0.7340, abs=1e-4)


def test_four_gram_value_computed_by_hand():
    """Table values {acme}, {red}; G = "acme red mug", R = "acme blue mug", orders 1..4.
    P_1: acme, mug in R; red entailed -> 3/3 = 1.
    P_2: "acme red" not in R, w = 2/2 -> 1; "red mug" not in R, w = 1/2 -> 0.5: 1.5/2 = 3/4.
    P_3: "acme red mug" not in R, w = 2/3 -> 2/3.  P_4: no 4-gram -> 0 -> SMOOTHING.
    Rr_1: acme (w 1, in G), blue, mug (w 0) -> 1.  Rr_2: "acme blue" (w 1/2) not in G,
    "blue mug" (w 0) -> 0 -> SMOOTHING.  Rr_3: "acme blue mug" (w 1/3) not in G -> SMOOTHING.
    Rr_4: no 4-gram, nothing to recall -> 1.  Rt: acme, red both in G -> 1.
    precision = (1 * 3/4 * 2/3 * 1e-5)^(1/4) = 0.04729, recall = ((1e-5)^2)^(1/4) ^ 0.5
    = 0.05623."""
    out = parent_tokens([["acme"], ["red"]], "acme red mug".split(), "acme blue mug".split())
    p = (1 * 0.75 * (2 / 3) * 1e-5) ** 0.25
    r = math.sqrt((1e-5 * 1e-5) ** 0.25)
    assert out["parent_precision"] == pytest.approx(p) == pytest.approx(0.04729, abs=1e-5)
    assert out["parent_recall"] == pytest.approx(r) == pytest.approx(0.05623, abs=1e-5)
    assert out["parent_f1"] == pytest.approx(2 * p * r / (p + r))


def test_product_table_is_the_prompt_product_flattened():
    product = {"title": "Kettlo Kettle 1.5 L", "brand": "Kettlo",
               "category": ["Home & Kitchen", "Kettles"],
               "price": {"amount": 899.0, "currency": "INR", "list_price": 1599.0,
                         "discount_percent": 44.0},
               "rating": 4.0, "rating_count": 120, "features": [f"f{i}" for i in range(8)],
               "details": {"Colour": "Silver"}}
    assert product_table(product) == [
        ("title", "Kettlo Kettle 1.5 L"), ("brand", "Kettlo"), ("category", "Home & Kitchen"),
        ("category", "Kettles"), ("price", "899"), ("list_price", "1599"),
        ("discount_percent", "44"), ("rating", "4"),
        *[("feature", f"f{i}") for i in range(6)],     # the prompt shows six features
        ("Colour", "Silver")]


def test_a_listing_fact_the_reference_left_out_beats_an_invented_one():
    """The point of PARENT: the demo power bank is black; its reference review does not say so.
    Adding "It is black." keeps more precision than adding "It is purple.", while ROUGE-style
    overlap with the reference alone cannot tell them apart."""
    rec = _demo()[0]
    ref = rec["review"]
    own = parent(rec["product"], ref, ref)
    assert own["parent_precision"] == pytest.approx(1.0)
    assert 0 < own["parent_recall"] < 1       # the review does not restate the whole listing
    black = parent(rec["product"], ref + " It is black.", ref)
    purple = parent(rec["product"], ref + " It is purple.", ref)
    assert black["parent_precision"] > purple["parent_precision"]
    assert black["parent_recall"] > purple["parent_recall"]     # table recall: Colour: Black


def test_parent_is_a_registered_per_sample_metric_of_product_review():
    rec = _demo()[1]
    text = "Boils water fast. The kettle is stainless steel."
    scored = score_review(rec, text)
    expected = parent(rec["product"], text, rec["review"])
    assert {k: scored[k] for k in KEYS} == expected
    from harness.metrics import score_reviews
    only = score_reviews([rec], [text], ScoringConfig(scorers=("parent",)))[0]
    assert only == expected

    class Loader(yaml.SafeLoader):
        pass
    Loader.add_constructor("!function", lambda loader, node: loader.construct_scalar(node))
    conf = yaml.load((TASKS_DIR / "product_review" / "product_review.yaml").read_text(),
                     Loader=Loader)
    metrics = {m["metric"]: m for m in conf["metric_list"]}
    for k in KEYS:
        assert metrics[k]["aggregation"] == "mean" and metrics[k]["higher_is_better"] is True


def test_real_reviews_credit_a_listing_fact_over_another_products(prepared_dir):
    """Real test split: each reference review with one sentence appended, the product's own
    first feature bullet or another product's. PARENT F1 prefers the own listing fact (the
    reference does not contain either, so ROUGE-L against the reference is near chance)."""
    recs = [json.loads(line) for line in
            (prepared_dir / "product_review" / "test.jsonl").read_text().splitlines() if line]
    rng = random.Random(0)
    n = parent_wins = rouge_wins = 0
    for r in recs:
        feats = [f for f in r["product"].get("features", [])[:6] if len(tokens(f)) >= 3]
        if not feats:
            continue
        other = rng.choice([o for o in recs if o["id"] != r["id"] and
                            o["product"].get("features")])["product"]["features"][0]
        own_text, other_text = r["review"] + " " + feats[0], r["review"] + " " + other
        n += 1
        parent_wins += parent(r["product"], own_text, r["review"])["parent_f1"] > \
            parent(r["product"], other_text, r["review"])["parent_f1"]
        rouge_wins += rouge_l(own_text, r["review"]) > rouge_l(other_text, r["review"])
    assert n >= 50
    assert parent_wins / n >= 0.95 and parent_wins > rouge_wins, (parent_wins, rouge_wins, n)
