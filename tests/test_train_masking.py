"""Span-level loss masking: the target tokens of a sentence whose claim the product JSON does
not support get no loss (label -100), exactly that sentence's tokens, with SmolLM2's real
tokenizer; training.json records the masked share; `--no-mask-unsupported` turns it off."""
from __future__ import annotations

import json
import os
import types

import pytest
import torch
from _cli import run_cli
from _train_models import build_tiny

from harness.files import write_jsonl
from harness.metrics.hallucination import check_claims
from harness.train.examples import IGNORE, collate, token_offsets, tokenize_examples
from harness.train.loss import ResponseLoss
from harness.train.recipe import train

# A product with a capacity, a weight and a colour; one sentence of each target states a fact
# the JSON does not support (a wrong capacity / colour / weight, or a feature it never names).
PRODUCT = {"title": "Voltra PowerCell 10000 mAh Power Bank", "brand": "Voltra",
           "category": ["Electronics", "Mobile Accessories", "Power Banks"],
           "price": {"amount": 1299.0, "currency": "INR"}, "rating": 4.2,
           "features": ["10000 mAh lithium-polymer cell", "18 W fast charging over USB-C",
                        "Weighs 210 g", "1 year warranty"],
           "details": {"Colour": "Black", "Material": "Plastic"}}
CASES = {   # target sentences, index of the bad one, the claim status that makes it bad
    "capacity in the middle": (["Good power bank for the price.",
                                "The 20000 mAh cell charges my phone four times.",
                                "It is light enough for my bag."], 1, "contradicted"),
    "colour first": (["The red finish looks smart.",
                      "The 10000 mAh cell charges my phone twice.",
                      "Fast charging over USB-C works well."], 0, "contradicted"),
    "weight last": (["Charges my phone twice and the 18 W fast charging works well!",
                     "It weighs 350 g, too heavy for a pocket."], 1, "contradicted"),
    "invented feature": (["Great value.", "It has a built-in LED torch and wireless charging.",
                          "The black body is plastic."], 1, "unsupported"),
}


@pytest.fixture(scope="module")
def smol_tokenizer():
    from harness.models import resolve_hf
    from harness.train.engines import load_tokenizer

    return load_tokenizer(resolve_hf("smollm2-135m-instruct"))


def record(review: str, rid: str = "t:0", product: dict = PRODUCT) -> dict:
    return {"id": rid, "source": "test", "product": product, "review": review,
            "reviews": [{"text": review}]}


@pytest.mark.parametrize("case", sorted(CASES))
def test_exactly_the_unsupported_sentence_gets_no_loss(smol_tokenizer, case):
    sentences, bad, status = CASES[case]
    review = " ".join(sentences)
    # the checker's verdicts this test relies on: only the bad sentence has a bad claim
    lo = review.find(sentences[bad])
    hi = lo + len(sentences[bad])
    claims = check_claims(PRODUCT, review)
    assert {c["status"] for c in claims if lo <= c["start"] < hi} == {status}
    assert all(c["status"] == "supported" for c in claims if not lo <= c["start"] < hi)

    (ex,), stats = tokenize_examples(smol_tokenizer, "product_review", [record(review)], True,
                                     1024, mask_unsupported=True)
    labels = ex.labels
    response = range(ex.n_prompt, len(ex.ids))
    masked = [i for i in response if labels[i] == IGNORE]
    assert masked == list(ex.masked) and masked == list(range(masked[0], masked[-1] + 1))
    # the masked tokens spell the bad sentence, no more and no less (a word's leading space
    # belongs to its token, so a sentence after another starts with its space)
    lead = " " if bad > 0 else ""
    assert smol_tokenizer.decode([ex.ids[i] for i in masked]) == lead + sentences[bad]
    # every other response token keeps its label: the good sentences and the end of turn
    kept = [i for i in response if i not in set(masked)]
    assert all(labels[i] == ex.ids[i] for i in kept)
    rest = " ".join(s for k, s in enumerate(sentences) if k != bad)
    assert smol_tokenizer.decode([ex.ids[i] for i in kept]).lstrip() == rest + "<|im_end|>\n"
    assert stats["masked_sentences"] == 1 and stats["masked_tokens"] == len(masked)
    assert stats["masked_share"] == pytest.approx(len(masked) / len(response), abs=1e-6)

    # off: the whole response is trained
    (ex_off,), st_off = tokenize_examples(smol_tokenizer, "product_review", [record(review)],
                                          True, 1024, mask_unsupported=False)
    assert ex_off.ids == ex.ids and not ex_off.masked and st_off["masked_tokens"] == 0


def test_supported_review_and_truncation(smol_tokenizer):
    good = "The 10000 mAh cell charges my phone twice. The black body is plastic."
    (ex,), st = tokenize_examples(smol_tokenizer, "product_review", [record(good)], True, 1024,
                                  mask_unsupported=True)
    assert not ex.masked and st["masked_sentences"] == 0
    # a response cut by max_seq_len keeps only the masked positions still inside it
    review = ("Great value for the price, and it looks good on my desk. It has a built-in "
              "LED torch and wireless charging. Black and sturdy.")
    (full,), _ = tokenize_examples(smol_tokenizer, "product_review", [record(review)], True,
                                   1024, mask_unsupported=True)
    cut_at = full.masked[2]
    assert cut_at - full.n_prompt >= 8   # the trainer keeps a response of 8 tokens at least
    (cut,), st = tokenize_examples(smol_tokenizer, "product_review", [record(review)], True,
                                   cut_at, mask_unsupported=True)
    assert st["truncated"] == 1 and len(cut.ids) == cut_at
    assert cut.masked == full.masked[:2] and st["masked_sentences"] == 1


def test_offsets_without_a_fast_tokenizer_match_the_offset_mapping(smol_tokenizer):
    """The fallback for tokenizers without an offset mapping: decoded prefixes."""
    text = "The 20000 mAh cell charges my phone four times. It is light!<|im_end|>\n"
    ids = smol_tokenizer.encode(text, add_special_tokens=False)
    slow = types.SimpleNamespace(is_fast=False, decode=smol_tokenizer.decode)
    assert token_offsets(slow, text, ids) == token_offsets(smol_tokenizer, text, ids)
    assert token_offsets(smol_tokenizer, text, ids)[-1][1] == len(text)


def test_loss_counts_no_masked_token(smol_tokenizer, tmp_path):
    from transformers import AutoModelForCausalLM

    tiny = build_tiny(tmp_path / "tiny", "llama", smol_tokenizer)
    model = AutoModelForCausalLM.from_pretrained(tiny, dtype=torch.float32)
    review = " ".join(CASES["capacity in the middle"][0])
    examples, _ = tokenize_examples(smol_tokenizer, "product_review", [record(review)], True,
                                    1024, mask_unsupported=True)
    batch = collate(examples, smol_tokenizer.pad_token_id)
    with torch.no_grad():
        _, n = ResponseLoss(model)(**batch)
    ex = examples[0]
    assert int(n) == len(ex.ids) - ex.n_prompt - len(ex.masked) > 0
    assert (batch["labels"][0, list(ex.masked)] == IGNORE).all()


def test_training_records_the_masked_share_and_the_flag_turns_it_off(smol_tokenizer, tmp_path):
    from harness.tasks.records import read_records

    tiny = build_tiny(tmp_path / "tiny", "llama", smol_tokenizer)
    demo = read_records("product_review", "train", "demo")
    # every train review gets one sentence the product JSON does not back: a red colour
    bad = [dict(r, review=r["review"].strip() + " It comes in a bright red colour.")
           for r in demo[:6]]
    assert all(any(c["value"] == "red" and c["status"] != "supported"
                   for c in check_claims(r["product"], r["review"])) for r in bad)
    data = tmp_path / "data"
    write_jsonl(data / "product_review" / "train.jsonl", bad)
    write_jsonl(data / "product_review" / "validation.jsonl", demo[6:10])
    _, expected = tokenize_examples(smol_tokenizer, "product_review", bad, True, 1024, True)
    assert expected["masked_sentences"] == 6

    rec = train(model=str(tiny), data=str(data), max_steps=1, batch_size=2, eval_examples=4,
                output=str(tmp_path / "on"), progress=False)
    lm = rec["loss_masking"]
    assert lm["enabled"] and "unsupported or contradicted" in lm["rule"]
    assert lm["train"]["masked_sentences"] == 6
    assert lm["train"]["masked_share"] == expected["masked_share"] > 0
    assert lm["validation"]["masked_tokens"] == 0
    assert rec["hyperparameters"]["mask_unsupported"] is True and rec["curation"] is None

    r = run_cli(["train", "--model", str(tiny), "--data", str(data), "--max-steps", "1",
                 "--batch-size", "2", "--eval-examples", "4", "--output", str(tmp_path / "off"),
                 "--no-mask-unsupported", "--quiet"], dict(os.environ), timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    off = json.loads((tmp_path / "off" / "training.json").read_text())
    assert off["loss_masking"]["enabled"] is False
    assert off["loss_masking"]["train"]["masked_tokens"] == 0
    assert off["hyperparameters"]["mask_unsupported"] is False

    # other tasks ignore the setting
    dep = train(model=str(tiny), task="product_department", data="demo", max_steps=1,
                batch_size=2, eval_examples=4, output=str(tmp_path / "dep"), progress=False)
    assert dep["loss_masking"]["enabled"] is False


def test_harness_train_takes_a_curated_directory(smol_tokenizer, tmp_path):
    """`harness data curate` output is a data directory for `harness train`; training.json
    names the curation it came from."""
    from harness.train.curate import curate
    from harness.compare.demo import demo_splits

    tiny = build_tiny(tmp_path / "tiny", "llama", smol_tokenizer)
    cur = tmp_path / "curated"
    rep = curate(data=str(demo_splits(tmp_path / "demo")), out=str(cur))
    rec = train(model=str(tiny), data=str(cur), max_steps=1, batch_size=2, eval_examples=4,
                output=str(tmp_path / "ad"), progress=False)
    assert rec["split_sizes"]["train"] == rep["kept"]
    assert rec["data"]["train"]["path"] == str(cur / "product_review" / "train.jsonl")
    assert rec["curation"]["kept"] == rep["kept"]
    assert rec["curation"]["config"]["per_product"] == rep["config"]["per_product"]
