"""`harness data curate`: every real review of every train product scored and kept or dropped
by reason; validation and test untouched; a curation too small to train is one error line."""
from __future__ import annotations

import json
import os

import pytest
from _cli import run_cli

from harness.train.curate import REASONS, CurateConfig, curate, curate_records
from harness.errors import HarnessError
from harness.files import read_jsonl
from harness.metrics.hallucination import check_claims
from harness.metrics.text import tokens

TASK = "product_review"


@pytest.fixture(scope="module")
def curated(prepared_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("curated")
    rep = curate(data=str(prepared_dir), out=str(out))
    detail = json.loads((out / TASK / "curation.json").read_text())["reviews_detail"]
    return prepared_dir, out, rep, detail


def test_real_curation_counts_add_up_and_keep_at_most_k_per_product(curated):
    prepared, out, rep, detail = curated
    cfg = CurateConfig()
    train = list(read_jsonl(prepared / TASK / "train.jsonl"))
    kept = list(read_jsonl(out / TASK / "train.jsonl"))
    assert rep["products"] == len(train)
    assert rep["reviews"] == len(detail) == sum(len(r["reviews"]) for r in train)
    assert rep["kept"] == len(kept) == sum(d["kept"] for d in detail)
    assert rep["kept"] + sum(rep["dropped"].values()) == rep["reviews"]
    assert set(rep["dropped"]) == set(REASONS) and all(rep["dropped"].values())
    per_product = {}
    for ex in kept:
        per_product[ex["product_id"]] = per_product.get(ex["product_id"], 0) + 1
    assert max(per_product.values()) <= cfg.per_product
    assert rep["products_with_kept"] == len(per_product)
    # products whose every review was dropped are counted, not lost
    dropped_all = {d["id"] for d in detail} - set(per_product)
    assert rep["products_without_kept"] == len(dropped_all) > 0
    assert rep["products_with_kept"] + rep["products_without_kept"] == rep["products"]
    assert len({ex["id"] for ex in kept}) == len(kept)   # one record per kept review
    # the kept review is the training target, on its own product
    by_id = {r["id"]: r for r in train}
    for ex in kept:
        assert ex["product"] == by_id[ex["product_id"]]["product"]
        assert ex["review"] in {r["text"] for r in by_id[ex["product_id"]]["reviews"]}


def test_kept_reviews_have_no_contradicted_claim_and_pass_every_threshold(curated):
    _, out, rep, _ = curated
    cfg = CurateConfig()
    kept = list(read_jsonl(out / TASK / "train.jsonl"))
    for ex in kept:
        claims = check_claims(ex["product"], ex["review"])
        assert not [c for c in claims if c["status"] == "contradicted"], ex["review"]
        assert len(ex["review"].split()) >= cfg.min_words
        assert ex["curation"]["generic_share"] < cfg.generic_share
    # kept examples are longer and name more product facts than the prepared targets
    d = rep["distributions"]
    assert d["words"]["kept"]["p50"] > d["words"]["targets"]["p50"]
    assert d["attribute_mentions"]["kept"]["mean"] > d["attribute_mentions"]["targets"]["mean"]


def test_generic_template_reviews_are_dropped_as_generic(curated):
    _, _, rep, detail = curated
    cfg = CurateConfig()
    assert rep["template_ngrams"] > 0 and f">= {cfg.template_min_products} different " \
        f"products" in rep["generic_rule"]
    templ = [d for d in detail if "value for money" in " ".join(tokens(d["text"]))
             and len(tokens(d["text"])) <= 5]
    assert len(templ) >= 3
    for d in templ:   # contradicted and duplicate come first in the order of reasons
        assert "generic" in d["reasons"], d["text"]
        assert d["reason"] in ("contradicted", "duplicate", "generic"), d
    # a review copied verbatim under other products is kept once at most
    texts = [tuple(tokens(d["text"])) for d in detail if d["kept"]]
    assert len(texts) == len(set(texts))


def test_validation_and_test_are_copied_unchanged(curated):
    prepared, out, _, _ = curated
    for split in ("validation", "test"):
        assert (out / TASK / f"{split}.jsonl").read_bytes() == \
            (prepared / TASK / f"{split}.jsonl").read_bytes()


def test_a_product_with_no_review_left_is_counted(prepared_dir):
    train = list(read_jsonl(prepared_dir / TASK / "train.jsonl"))[:40]
    empty = dict(train[0], reviews=[], review="")
    kept, rep = curate_records([empty] + train[1:], CurateConfig())
    assert rep["products"] == 40 and rep["products_without_kept"] >= 1
    assert not [k for k in kept if k["product_id"] == empty["id"]]
    assert rep["reviews"] == sum(len(r["reviews"]) for r in train[1:])


def test_too_few_examples_is_one_error_line(tmp_path):
    from harness.compare.demo import demo_splits

    data = demo_splits(tmp_path / "demo")
    with pytest.raises(HarnessError, match=r"train\.jsonl: curation kept 12 of 12 reviews, "
                                           r"fewer than min_examples=50"):
        curate(data=str(data), out=str(tmp_path / "cur"), min_examples=50)
    assert not (tmp_path / "cur").exists()
    with pytest.raises(HarnessError, match="generic_share=1.5 is out of range"):
        curate(data=str(data), out=str(tmp_path / "cur"), generic_share=1.5)
    r = run_cli(["data", "curate", "--data", str(data), "--out", str(tmp_path / "cur"),
                 "--min-words", "30"], dict(os.environ))
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "fewer than min_examples=8" in lines[0], r.stderr


def test_demo_train_split_survives_curation_whole(tmp_path):
    """`make demo` trains on the curated demo split: curation must keep all 12 products."""
    from harness.compare.demo import demo_splits

    data = demo_splits(tmp_path / "demo")
    r = run_cli(["data", "curate", "--data", str(data), "--out", str(tmp_path / "cur")],
                dict(os.environ))
    assert r.returncode == 0, r.stderr
    assert "kept (training examples)" in r.stdout and "generic rule" in r.stdout
    kept = list(read_jsonl(tmp_path / "cur" / TASK / "train.jsonl"))
    assert len(kept) == 12 and {k["product_id"] for k in kept} == \
        {r["id"] for r in read_jsonl(data / TASK / "train.jsonl")}
    again = curate(data=str(data), out=str(tmp_path / "cur2"))
    assert (tmp_path / "cur2" / TASK / "train.jsonl").read_bytes() == \
        (tmp_path / "cur" / TASK / "train.jsonl").read_bytes()
    assert again["kept"] == 12
